"""The container's one entrypoint: `python -m portal.entrypoint ROLE [ARGS…]`.

Roles: `web` and `gateway` (the ASGI server), `worker` and `beat` (Celery), `migrate` (apply
database migrations, then exit) and `manage` (any `manage.py` command, e.g. `audit_verify`).

Every role runs exactly one server process per container and replaces this process with it
(exec), so the orchestrator's signals reach the server directly and a server that cannot start
exits non-zero: Kubernetes shows a crash loop with back-off. No supervisor ever respawns a
worker that fails at start-up (one that did burned a core for 25 minutes while its database
was gone). Scale with replicas, not with workers inside a container.

Settings are loaded before the exec, so a wrong or missing value stops the container at once
with the one-line message that names the variable (exit code 78, EX_CONFIG).

The role is passed on as PORTAL_ROLE (logs, traces and metrics say which role they come from).
With METRICS_PORT set, PROMETHEUS_MULTIPROC_DIR (default /tmp/portal-metrics) is emptied
before the server starts, as prometheus_client's multiprocess mode requires: counts a
previous run of the container left there (an emptyDir survives a container restart) would
otherwise be added to the new ones.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"

EX_USAGE = 64
EX_CONFIG = 78
DEFAULT_METRICS_DIR = "/tmp/portal-metrics"

# Seconds a server waits for requests in flight after SIGTERM. The gateway's streams may run
# long (up to GATEWAY_UPSTREAM_TIMEOUT); the chart's terminationGracePeriodSeconds is larger.
_GRACEFUL_SECONDS = {"web": 25, "gateway": 120}


def _asgi_server(role: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "portal.asgi:application",
        "--host", os.environ.get("HOST", "0.0.0.0"),
        "--port", os.environ.get("PORT", "8000"),
        "--lifespan", "on", "--loop", "uvloop", "--http", "portal.server:HttpProtocol",
        "--no-access-log", "--no-proxy-headers",
        "--timeout-graceful-shutdown", str(_GRACEFUL_SECONDS[role]),
        *extra,
    ]


def _celery(command: str, extra: list[str]) -> list[str]:
    args = [sys.executable, "-m", "celery", "-A", "portal", command,
            "--loglevel", os.environ.get("LOG_LEVEL", "INFO")]
    if command == "worker":
        args += ["--concurrency", os.environ.get("CELERY_CONCURRENCY", "2"),
                 "--hostname", "worker@%h"]
    return [*args, *extra]


def _manage(extra: list[str]) -> list[str]:
    return [sys.executable, str(MANAGE_PY), *extra]


def command_for(role: str, extra: list[str]) -> list[str]:
    if role in ("web", "gateway"):
        return _asgi_server(role, extra)
    if role in ("worker", "beat"):
        return _celery(role, extra)
    if role == "migrate":
        return _manage(["migrate", "--no-input", *extra])
    if role == "manage":
        return _manage(extra)
    raise KeyError(role)


ROLES = ("web", "gateway", "worker", "beat", "migrate", "manage")


def _fresh_metrics_dir() -> None:
    """An empty PROMETHEUS_MULTIPROC_DIR for this run of the server."""
    path = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_METRICS_DIR))
    if path.is_dir():
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ROLES:
        print(f"usage: python -m portal.entrypoint {{{','.join(ROLES)}}} [ARGS…]",
              file=sys.stderr)
        return EX_USAGE
    role, extra = argv[0], argv[1:]
    if role == "manage" and not extra:
        print("usage: python -m portal.entrypoint manage COMMAND [ARGS…]", file=sys.stderr)
        return EX_USAGE
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if role in ("web", "gateway", "worker", "beat"):
        os.environ["PORTAL_ROLE"] = role
    if os.environ.get("METRICS_PORT", "0").strip() not in ("", "0"):
        _fresh_metrics_dir()
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 (loads and checks every setting)
    except ImproperlyConfigured as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    command = command_for(role, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached: execv replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
