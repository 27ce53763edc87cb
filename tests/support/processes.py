"""Start real server processes for tests (the portal's ASGI server, test upstreams)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


def start_upstream(*args: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """An OpenAI-compatible upstream (on `port`, else a free one); returns the process and
    its /v1 base URL."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/support/openai_upstream.py"), "--port", str(port),
         *args], cwd=ROOT)
    base = f"http://127.0.0.1:{port}/v1"
    wait_until_up(base + "/models", process)
    return process, base


def portal_env(database: dict, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a portal process that uses the test database and Redis, and decrypts
    stored secrets with the test process's keys (unless `extra` says otherwise)."""
    from django.conf import settings

    password = database["PASSWORD"] or ""
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}:{password}@{database['HOST']}:"
                        f"{database['PORT']}/{database['NAME']}",
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "PORTAL_IGNORE_DOTENV": "1",
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        **extra,
    }


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    try:  # what it left in its own process group (uvicorn's workers), if it has one
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
