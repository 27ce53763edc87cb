"""`make run` defaults to SQLite, where usage rollups, dashboards and budget counters take
code paths of their own. This runs tests/sqlite in a second pytest session on SQLite (a fresh
database file and a private Redis), as part of the PostgreSQL suite."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own (the session it serves empties its database)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/ensure-services.sh installs it"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_the_sqlite_code_paths_pass_on_sqlite(tmp_path, private_redis):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
           "REDIS_URL": private_redis}
    env.pop("CELERY_BROKER_URL", None)
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "tests/sqlite", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        output, _ = session.communicate(timeout=600)
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
            session.wait()

    assert session.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, output[-3000:]
