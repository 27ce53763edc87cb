"""Real Celery worker processes for fault tests: each in a process group of its own, so a test
can SIGKILL one mid-task (as the OOM killer or a node drain would) and every one still running
is stopped when the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.support.processes import ROOT


class Workers:
    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[subprocess.Popen] = []

    def start(self, **env: str) -> subprocess.Popen:
        db = connection.settings_dict
        log = (self.directory / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
             "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
             "--without-mingle", "--queues", "celery"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ,
                 "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@"
                                 f"{db['HOST']}:{db['PORT']}/{db['NAME']}",
                 "REDIS_URL": settings.REDIS_URL, **env})
        log.close()
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL: no shutdown, no acknowledgement, nothing cleaned up."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def log(self, process: subprocess.Popen) -> str:
        index = self.processes.index(process)
        return (self.directory / f"worker-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def workers(transactional_db, tmp_path):
    started = Workers(tmp_path)
    yield started
    started.stop_all()
