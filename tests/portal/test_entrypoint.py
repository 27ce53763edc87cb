"""The container entrypoint: one server process per role, and a start-up that fails ends the
process with a non-zero status (Kubernetes shows a crash loop) instead of a supervisor that
keeps respawning workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from portal.entrypoint import EX_CONFIG, EX_USAGE, command_for
from tests.support.processes import free_port, portal_env

ROOT = Path(__file__).resolve().parents[2]


def run_entrypoint(*args: str, env: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portal.entrypoint", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def test_servers_run_one_process_per_container():
    for role in ("web", "gateway"):
        command = command_for(role, [])
        assert "--workers" not in command
        assert command[1:4] == ["-m", "uvicorn", "portal.asgi:application"]
    assert command_for("worker", [])[3:6] == ["-A", "portal", "worker"]
    assert command_for("beat", [])[3:6] == ["-A", "portal", "beat"]
    assert command_for("migrate", [])[-2:] == ["migrate", "--no-input"]


def test_unknown_role_is_a_usage_error():
    completed = run_entrypoint("frontend", env=portal_env(settings.DATABASES["default"],
                                                          settings.REDIS_URL))
    assert completed.returncode == EX_USAGE
    assert "web,gateway,worker,beat,migrate,manage" in completed.stderr


@pytest.mark.parametrize("role", ["web", "gateway", "worker", "beat", "migrate"])
def test_a_wrong_setting_stops_every_role_at_once_naming_the_variable(role):
    env = portal_env(settings.DATABASES["default"], settings.REDIS_URL)
    env.pop("SECRET_KEY", None)
    env.pop("SECRET_KEY_FILE", None)
    completed = run_entrypoint(role, env=env)
    assert completed.returncode == EX_CONFIG
    assert "SECRET_KEY is not set" in completed.stderr


def test_a_gateway_whose_database_is_gone_exits_instead_of_respawning():
    """The gateway loads its routing table from the database at start-up: without one, the
    process must end (non-zero) — not sit in a supervisor that restarts it forever."""
    database = {**settings.DATABASES["default"], "HOST": "127.0.0.1", "PORT": free_port()}
    env = portal_env(database, settings.REDIS_URL, PORT=str(free_port()))
    started = time.monotonic()
    completed = run_entrypoint("gateway", env=env, timeout=120)
    assert completed.returncode != 0, completed.stderr[-2000:]
    assert completed.stderr.count("Application startup failed") == 1, completed.stderr[-2000:]
    assert time.monotonic() - started < 120
