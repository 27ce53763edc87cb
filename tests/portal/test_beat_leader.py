"""Two Celery beats never send a periodic task twice: one holds the leader lock in Redis, the
other stands by and takes over — continuing the schedule — when the holder stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings

from portal.beat_scheduler import LAST_RUN_KEY, LOCK_KEY, LeaderScheduler
from portal.celery import app as celery_app
from tests.support.processes import portal_env

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "celery"  # the default queue, where beat's messages wait for a worker


@pytest.fixture
def beat_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(LOCK_KEY, LAST_RUN_KEY, QUEUE)
    yield client
    client.delete(LOCK_KEY, LAST_RUN_KEY, QUEUE)


def sent_tasks(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in client.lrange(QUEUE, 0, -1)]


def tick_until_idle(scheduler: LeaderScheduler) -> float:
    """Tick until nothing is due now; return the delay beat would sleep."""
    for _ in range(100):
        delay = scheduler.tick()
        if delay > 0:
            return delay
    raise AssertionError("the scheduler kept sending tasks")


def test_only_the_lock_holder_sends_and_a_successor_continues_its_schedule(beat_redis):
    now = datetime.now(UTC)
    # The daily report was last sent more than a day ago (it fell due during a hand-over).
    beat_redis.hset(LAST_RUN_KEY, "compliance-reports-daily",
                    (now - timedelta(days=1, minutes=1)).isoformat())

    first = LeaderScheduler(app=celery_app)
    second = LeaderScheduler(app=celery_app)
    # The second has stood by for two days: by its own clock the daily report is due.
    second.schedule["compliance-reports-daily"].last_run_at = now - timedelta(days=2)
    try:
        tick_until_idle(first)
        assert first.leader
        assert sent_tasks(beat_redis) == ["audit.tasks.schedule_reports"]

        # While the first holds the lock, the second sends nothing.
        assert tick_until_idle(second) == pytest.approx(second.renew_seconds)
        assert not second.leader
        assert sent_tasks(beat_redis) == ["audit.tasks.schedule_reports"]
    finally:
        first.close()  # a clean stop releases the lock at once

    tick_until_idle(second)
    assert second.leader
    # It continues where the first left off: the report that was just sent is not due again.
    assert sent_tasks(beat_redis) == ["audit.tasks.schedule_reports"]
    stored = beat_redis.hget(LAST_RUN_KEY, "compliance-reports-daily").decode()
    assert datetime.fromisoformat(stored) > now - timedelta(minutes=1)
    second.close()
    assert beat_redis.get(LOCK_KEY) is None


def test_a_beat_without_redis_sends_nothing(beat_redis, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    scheduler = LeaderScheduler(app=celery_app)
    beat_redis.hset(LAST_RUN_KEY, "compliance-reports-daily",
                    (datetime.now(UTC) - timedelta(days=2)).isoformat())
    assert scheduler.tick() == pytest.approx(scheduler.renew_seconds)
    assert not scheduler.leader
    assert sent_tasks(beat_redis) == []


def _count(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text)


def test_two_beat_processes_send_each_task_once_and_fail_over(beat_redis, tmp_path):
    env = portal_env(settings.DATABASES["default"], settings.REDIS_URL,
                     BEAT_LEADER_LOCK_SECONDS="3", LOG_LEVEL="INFO")
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    processes = []
    try:
        for log in logs:
            with log.open("w") as handle:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel",
                     "INFO", "--schedule", str(tmp_path / f"{log.stem}-schedule")],
                    cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                    start_new_session=True))
        sending = "Sending due task gateway-drain-usage"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(_count(log, sending) for log in logs) < 5:
            assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
            time.sleep(0.5)
        counts = [_count(log, sending) for log in logs]
        # The usage drain runs every 2 s: one process sends it, the other never does.
        assert sorted(counts)[0] == 0 and sorted(counts)[1] >= 5, counts
        queued = sent_tasks(beat_redis).count("gateway.tasks.drain_usage")
        assert queued == max(counts)

        leader = counts.index(max(counts))
        standby = 1 - leader
        os.killpg(processes[leader].pid, signal.SIGKILL)  # dies without releasing the lock
        processes[leader].wait(timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _count(logs[standby], sending) < 2:
            assert processes[standby].poll() is None, logs[standby].read_text()
            time.sleep(0.5)
        assert _count(logs[standby], sending) >= 2, logs[standby].read_text()
        assert "holding the leader lock" in logs[standby].read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
