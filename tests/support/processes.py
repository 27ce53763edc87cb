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


def start_celery(command: str, database: dict, redis_url: str, log: Path, *args: str,
                 **env: str) -> subprocess.Popen:
    """A real Celery `worker` or `beat` process (its own process group, output in `log`);
    stop it with `stop()`, which ends the whole group (a prefork worker's pool too)."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", command, "--loglevel", "INFO",
             *args], cwd=ROOT, env=portal_env(database, redis_url, **env), stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True)


def scrape(url: str) -> dict[str, list]:
    """Prometheus text from `url`, as {family name: [(sample name, labels, value), …]}."""
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return {family.name: [(s.name, s.labels, s.value) for s in family.samples]
            for family in text_string_to_metric_families(response.text)}


def sample(families: dict[str, list], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    family = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count") \
        .removesuffix("_sum")
    return sum(value for sample_name, sample_labels, value in families.get(family, [])
               if sample_name == name and all(sample_labels.get(k) == v
                                              for k, v in labels.items()))
