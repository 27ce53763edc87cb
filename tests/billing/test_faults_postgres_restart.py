"""PostgreSQL restarted under load: the usage drain resumes and loses nothing.

A private PostgreSQL server (never the machine's own) is migrated and seeded; usage events
stream into Redis while a drain process moves them into usage records; the server crashes
(`pg_ctl stop -m immediate`, sessions die mid-transaction) and comes back mid-drain. Every event
must become exactly one usage record, the hourly and daily rollups and the batch seals must
count each exactly once, and `usage_verify` must pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import psycopg
import pytest
import redis
from django.conf import settings

from audit.models import AuditEvent
from billing.models import UsageRecord
from billing.usage.drain import GROUP
from billing.usage.models import UsageRollup
from billing.usage.seals import SEAL_ACTION
from gateway.usage import STREAM
from tests.support.private_postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3000
BATCH = 100


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    try:
        server.init().start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def stream():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(STREAM)
    yield client
    client.delete(STREAM)


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _scalar(url: str, sql: str, *params):
    """One value from the private server; None while it is down."""
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            return connection.execute(sql, params).fetchone()[0]
    except psycopg.OperationalError:
        return None


def _produce(client: redis.Redis, ids: dict, started: threading.Event) -> None:
    """The gateway's side: EVENTS usage events in pipelined batches, ~40 batches a second."""
    for start in range(0, EVENTS, BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, start + BATCH):
            event = {"request_id": f"req_pg_{n:05d}", "ts": time.time(),
                     "tenant_id": ids["tenant"], "key_id": None, "model_id": ids["model"],
                     "model": "chat-small", "deployment_id": None,
                     "endpoint": "chat/completions", "status": 200 if n % 10 else 502,
                     "streamed": False, "input_tokens": 10 + n % 7, "output_tokens": 5,
                     "estimated": False, "latency_ms": 3 + n % 50, "ttft_ms": 2}
            pipe.xadd(STREAM, {"e": orjson.dumps(event)})
        pipe.execute()
        started.set()
        time.sleep(0.025)


def test_the_drain_resumes_after_a_postgres_crash_and_loses_nothing(private_postgres, stream,
                                                                    tmp_path):
    env = {**os.environ, "DATABASE_URL": private_postgres.url, "REDIS_URL": settings.REDIS_URL,
           "DEBUG": "false", "PORTAL_IGNORE_DOTENV": "1"}
    migrated = _manage(env, "migrate", "--no-input", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    seeded = subprocess.run([sys.executable, "tests/support/usage_drain_loop.py", "seed"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=True)
    ids = json.loads(seeded.stdout.strip().splitlines()[-1])

    url, records = private_postgres.url, UsageRecord._meta.db_table
    stop_file, log = tmp_path / "stop", tmp_path / "drain.log"
    with log.open("w") as out:
        drainer = subprocess.Popen(
            [sys.executable, "tests/support/usage_drain_loop.py", "drain", str(stop_file)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = threading.Event()
        producer = threading.Thread(target=_produce, args=(stream, ids, started), daemon=True)
        producer.start()
        started.wait(30)
        deadline = time.monotonic() + 60
        while (_scalar(url, f"SELECT count(*) FROM {records}") or 0) < EVENTS // 4:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            assert drainer.poll() is None, log.read_text()[-2000:]
            time.sleep(0.02)
        stored_before_crash = _scalar(url, f"SELECT count(*) FROM {records}")
        private_postgres.stop("immediate")  # mid-drain, with events still arriving
        time.sleep(1.5)
        private_postgres.start()
        producer.join(60)

        def settled() -> bool:
            drained = stream.xlen(STREAM) == 0 and stream.xpending(STREAM, GROUP)["pending"] == 0
            return drained and _scalar(url, f"SELECT count(*) FROM {records}") == EVENTS

        deadline = time.monotonic() + 45
        while not settled():
            assert time.monotonic() < deadline, (
                f"{_scalar(url, f'SELECT count(*) FROM {records}')} of {EVENTS} records, "
                f"{stream.xlen(STREAM)} events in the stream\n{log.read_text()[-2000:]}")
            assert drainer.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        stop_file.touch()
        try:
            drainer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(drainer.pid, 9)
            drainer.wait()

    failures = log.read_text().count("drain failed:")
    assert failures >= 1, "the crash never reached the drain"
    assert 0 < stored_before_crash < EVENTS
    assert _scalar(url, f"SELECT count(DISTINCT request_id) FROM {records}") == EVENTS
    expected = {f"req_pg_{n:05d}" for n in range(EVENTS)}
    with psycopg.connect(url) as connection:
        stored = [row[0] for row in connection.execute(f"SELECT request_id FROM {records}")]
        rollups = dict(connection.execute(
            f"SELECT granularity, SUM(requests) FROM {UsageRollup._meta.db_table} "
            "GROUP BY granularity").fetchall())
        errors = connection.execute(
            f"SELECT SUM(errors) FROM {UsageRollup._meta.db_table} "
            "WHERE granularity = 'day'").fetchone()[0]
        seals, sealed = connection.execute(
            f"SELECT count(*), SUM((details->>'records')::int) FROM {AuditEvent._meta.db_table} "
            "WHERE action = %s", [SEAL_ACTION]).fetchone()
        unsealed = connection.execute(
            f"SELECT count(*) FROM {records} WHERE sealed_by IS NULL").fetchone()[0]
    assert len(stored) == EVENTS and set(stored) == expected  # none lost, none twice
    assert rollups == {"hour": EVENTS, "day": EVENTS}
    assert errors == EVENTS // 10
    assert sealed == EVENTS and unsealed == 0
    verified = _manage(env, "usage_verify")
    assert verified.returncode == 0, verified.stderr
    assert f"{seals} sealed usage batches verified" in verified.stdout
    chain = _manage(env, "audit_verify")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    print(f"\n{EVENTS} events → {len(stored)} records ({len(stored) - len(set(stored))} "
          f"duplicates), {seals} sealed batches, {failures} drain runs failed during the "
          f"crash, {stored_before_crash} stored before it")
