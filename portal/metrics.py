"""Prometheus metrics: a separate port per server (METRICS_PORT), never the public one.

What each process serves at `http://METRICS_HOST:METRICS_PORT/metrics`:

- web and gateway (the ASGI server): the gateway's request metrics of every worker of the
  server (`gateway.metrics`); the web role (or a server running both) adds the platform's
  gauges, read at scrape time (`PlatformCollector`);
- Celery worker: task outcomes of every pool process (prometheus_client's multiprocess mode:
  the pool's children write to PROMETHEUS_MULTIPROC_DIR, the worker's main process serves).

Nothing is public: the Ingress and the Route send only the HTTP port to the portal, the
chart's NetworkPolicy admits only the monitoring namespace to the metrics port, and the
port is off unless METRICS_PORT is set. Several worker processes of one server may each
listen on the port (SO_REUSEPORT): each serves the same merged figures.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Task outcomes, written by Celery's pool processes (portal.celery connects the signals).
CELERY_TASKS = Counter("portal_celery_tasks", "Celery tasks run, by outcome (succeeded, "
                       "failed, retried).", ["task", "outcome"], registry=None)

# Seconds a scrape's database and Redis figures are reused: several Prometheus servers (or
# replicas of web) scraping at once cost one set of queries.
PLATFORM_CACHE_SECONDS = 5
# Each query of a scrape may take at most this long (it is killed, and its gauge left out).
PLATFORM_QUERY_TIMEOUT_MS = 2000


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = True  # every worker process of one server listens; any may answer


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # a scrape is not worth a log line
        pass


def _only_metrics(app):
    def metrics_app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Metrics are at /metrics.\n"]
        return app(environ, start_response)

    return metrics_app


def start_server(registry: CollectorRegistry) -> WSGIServer:
    """Serve `registry` on METRICS_HOST:METRICS_PORT from a daemon thread."""
    host, port = settings.METRICS_HOST, settings.METRICS_PORT
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # IPv4 or IPv6
    server = make_server(host, port, _only_metrics(make_wsgi_app(registry)),
                         type("MetricsServer", (_Server,), {"address_family": family}),
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    logger.info("Metrics on http://%s:%d/metrics", settings.METRICS_HOST,
                settings.METRICS_PORT)
    return server


def metrics_dir() -> Path | None:
    return Path(settings.PROMETHEUS_MULTIPROC_DIR) if settings.PROMETHEUS_MULTIPROC_DIR else None


def asgi_registry() -> CollectorRegistry:
    """What the web and gateway servers expose."""
    from gateway.metrics import GatewayCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(metrics_dir()))
    if settings.PORTAL_ROLE in ("", "web"):
        registry.register(PlatformCollector())
    return registry


def celery_registry() -> CollectorRegistry:
    """What a Celery worker exposes: every pool process's task counters."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    return registry


class PlatformCollector:
    """The platform's state, read when Prometheus scrapes (never on a write): deployments by
    status, model versions by status and scan verdict, uploads by status, the audit chain's
    head and its last checkpoint, the usage stream and its drain, the Celery queue. Each query
    is an aggregate over a small table or one index lookup, bounded by a statement timeout;
    the answers are reused for a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: list = []
        self._cached_at = 0.0

    def collect(self):
        with self._lock:
            if time.monotonic() - self._cached_at >= PLATFORM_CACHE_SECONDS:
                self._cached = list(self._database()) + list(self._redis())
                self._cached_at = time.monotonic()
            return list(self._cached)

    # --- PostgreSQL (or SQLite in the quickstart) ----------------------------------------

    def _database(self):
        from django.db import connection

        try:
            yield from self._database_gauges(connection)
        except Exception as exc:  # a scrape must answer; the missing gauges say enough
            logger.warning("Platform metrics: the database did not answer (%s).", exc)
        finally:
            connection.close()  # this scrape's thread ends; don't leave its connection open

    def _database_gauges(self, connection):
        from django.db import transaction
        from django.db.models import Count, Max

        from audit.models import AuditCheckpoint, AuditEvent
        from deployments.models import Deployment, DeploymentStatus
        from models_catalog.models import (
            ModelVersion,
            ScanVerdict,
            UploadSession,
            UploadStatus,
            VersionStatus,
        )

        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {PLATFORM_QUERY_TIMEOUT_MS}")
            yield _by("portal_deployments", "Deployments by status.", "status",
                      DeploymentStatus.values,
                      Deployment.objects.values("status").annotate(n=Count("pk")))
            yield _by("portal_model_versions", "Model versions by status (the supply-chain "
                      "gate).", "status", VersionStatus.values,
                      ModelVersion.objects.values("status").annotate(n=Count("pk")))
            yield _by("portal_model_scans", "Scanned model versions by verdict.", "verdict",
                      ScanVerdict.values,
                      ModelVersion.objects.exclude(scan_verdict="").values("scan_verdict")
                      .annotate(n=Count("pk")), field="scan_verdict")
            yield _by("portal_model_uploads", "Browser uploads by status.", "status",
                      UploadStatus.values,
                      UploadSession.objects.values("status").annotate(n=Count("pk")))
            head = AuditEvent.objects.aggregate(seq=Max("seq"))["seq"] or 0
            yield GaugeMetricFamily("portal_audit_chain_head_seq",
                                    "Sequence number of the audit chain's newest event.",
                                    value=head)
            checkpoint = (AuditCheckpoint.objects.order_by("-last_seq")
                          .values("last_seq", "created_at").first())
            if checkpoint:
                from django.utils import timezone

                yield GaugeMetricFamily(
                    "portal_audit_checkpoint_age_seconds",
                    "Seconds since the newest signed checkpoint was made.",
                    value=(timezone.now() - checkpoint["created_at"]).total_seconds())
                yield GaugeMetricFamily(
                    "portal_audit_checkpoint_seq",
                    "Sequence number the newest signed checkpoint covers.",
                    value=checkpoint["last_seq"])

    # --- Redis: the usage stream and the Celery queue --------------------------------------

    def _redis(self):
        if not settings.REDIS_URL:
            return
        import redis

        from billing.usage.drain import GROUP
        from billing.usage.events import STREAM

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2,
                                      socket_connect_timeout=2)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.xlen(STREAM)
            pipe.xrange(STREAM, "-", "+", count=1)
            length, oldest = pipe.execute()
            try:
                pending = client.xpending(STREAM, GROUP)["pending"]
            except redis.ResponseError:  # no drain has created its group yet
                pending = 0
            queue, queued = _celery_queue_length()
        except redis.RedisError as exc:
            logger.warning("Platform metrics: Redis did not answer (%s).", exc)
            return
        finally:
            client.close()
        lag = 0.0
        if oldest:
            entry_ms = int(oldest[0][0].split(b"-")[0])
            lag = max(0.0, time.time() - entry_ms / 1000)
        yield GaugeMetricFamily("portal_usage_stream_length",
                                "Usage events in the gateway's Redis stream, not yet stored.",
                                value=length)
        yield GaugeMetricFamily("portal_usage_stream_pending",
                                "Usage events a drain has claimed but not yet stored.",
                                value=pending)
        yield GaugeMetricFamily("portal_usage_drain_lag_seconds",
                                "Age of the oldest usage event not yet stored (0: none).",
                                value=lag)
        if queued is not None:
            family = GaugeMetricFamily("portal_celery_queue_length",
                                       "Celery tasks waiting in the broker's queue.",
                                       labels=["queue"])
            family.add_metric([queue], queued)
            yield family


def _celery_queue_length() -> tuple[str, int | None]:
    """The default queue's length when the broker is Redis (a list per queue)."""
    import redis

    from portal.celery import app

    queue = app.conf.task_default_queue
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
        return queue, None
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2,
                                  socket_connect_timeout=2)
    try:
        return queue, broker.llen(queue)
    finally:
        broker.close()


def _by(name: str, documentation: str, label: str, values: list[str], rows,
        field: str = "status") -> GaugeMetricFamily:
    """A gauge per value of a choice field, zeros included (a series that vanishes at 0
    breaks alerts and graphs)."""
    counts = dict.fromkeys(values, 0)
    for row in rows:
        counts[row[field]] = row["n"]
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family
