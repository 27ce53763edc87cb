"""Prometheus metrics, scraped from the real servers: the portal's ASGI server (uvicorn, two
worker processes) and a Celery worker (prefork, two pool processes), on their own ports."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from audit import services as audit_services
from deployments import services as deployment_services
from gateway import services as gateway_services
from gateway.metrics import GatewayCollector, GatewayMetrics
from gateway.usage import STREAM
from models_catalog import services as catalog_services
from portal.celery import app as celery_app
from tests.factories import TenantFactory
from tests.support.gateway_fixtures import start_portal_server
from tests.support.processes import (
    free_port,
    sample,
    scrape,
    start_celery,
    start_upstream,
    stop,
    wait_until_up,
)

pytestmark = pytest.mark.django_db(transaction=True)
CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hello metrics"}]}

GATEWAY_FAMILIES = [
    "portal_gateway_requests", "portal_gateway_tokens", "portal_gateway_refusals",
    "portal_gateway_upstream_errors", "portal_gateway_upstream_retries",
    "portal_gateway_request_duration_seconds", "portal_gateway_time_to_first_token_seconds",
    "portal_gateway_usage_events_buffered", "portal_gateway_usage_events_dropped",
]
PLATFORM_FAMILIES = [
    "portal_deployments", "portal_model_versions", "portal_model_scans", "portal_model_uploads",
    "portal_audit_chain_head_seq", "portal_audit_checkpoint_age_seconds",
    "portal_audit_checkpoint_seq", "portal_usage_stream_length", "portal_usage_stream_pending",
    "portal_usage_drain_lag_seconds", "portal_celery_queue_length",
]


def poll(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


@pytest.fixture
def platform(tmp_path, upstream):
    """A tenant with a key, a chat model served by the test upstream, a second model whose
    only model server has gone away, and a signed checkpoint."""
    actor = "system:test"
    redis.Redis.from_url(settings.REDIS_URL).delete(STREAM, "celery")
    tenant = TenantFactory(slug="acme", name="Acme Research")
    chat = catalog_services.model_create(actor=actor, slug="chat-small", name="Chat Small",
                                         task="chat")
    deployment_services.external_endpoint_register(actor=actor, model=chat, base_url=upstream)
    gone = catalog_services.model_create(actor=actor, slug="chat-gone", name="Chat Gone",
                                         task="chat")
    process, base = start_upstream("--models", "chat-gone")
    try:
        deployment_services.external_endpoint_register(actor=actor, model=gone, base_url=base)
    finally:
        stop(process)
    _key, token = gateway_services.apikey_create(actor=actor, tenant=tenant, name="app")
    _slow, limited = gateway_services.apikey_create(actor=actor, tenant=tenant, name="limited",
                                                    rpm_limit=1)
    audit_services.checkpoint_create()
    return tenant, token, limited


def test_metrics_of_the_gateway_the_platform_and_a_celery_worker(platform, tmp_path):
    _tenant, token, limited = platform
    database = dict(connection.settings_dict)
    server_dir, worker_dir = tmp_path / "server-metrics", tmp_path / "worker-metrics"
    server_dir.mkdir()
    worker_dir.mkdir()
    server_port, worker_port = free_port(), free_port()
    server = start_portal_server(database, settings.REDIS_URL, METRICS_PORT=str(server_port),
                                 METRICS_HOST="127.0.0.1",
                                 PROMETHEUS_MULTIPROC_DIR=str(server_dir))
    worker = start_celery("worker", database, settings.REDIS_URL, tmp_path / "worker.log",
                          "--pool", "prefork", "--concurrency", "2", "--without-heartbeat",
                          "--without-gossip", "--without-mingle",
                          METRICS_PORT=str(worker_port), METRICS_HOST="127.0.0.1",
                          PROMETHEUS_MULTIPROC_DIR=str(worker_dir))
    try:
        base = server.url + "/v1"
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(6):
            assert requests.post(base + "/chat/completions", json=CHAT, headers=auth,
                                 timeout=10).status_code == 200
        streamed = requests.post(base + "/chat/completions", json={**CHAT, "stream": True},
                                 headers=auth, timeout=10)
        assert streamed.status_code == 200
        limited_auth = {"Authorization": f"Bearer {limited}"}
        statuses = [requests.post(base + "/chat/completions", json=CHAT, headers=limited_auth,
                                  timeout=10).status_code for _ in range(3)]
        assert statuses.count(429) >= 2, statuses
        assert requests.post(base + "/chat/completions", json=CHAT, timeout=10,
                             headers={"Authorization": "Bearer smp_nope_nope"}).status_code == 401
        gone = requests.post(base + "/chat/completions", json={**CHAT, "model": "chat-gone"},
                             headers=auth, timeout=10)
        assert gone.status_code == 503, gone.text

        # Not on the public port.
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 404

        metrics_url = f"http://127.0.0.1:{server_port}/metrics"
        # Each worker publishes what it counted once a second; both serve the merged sum.
        families = poll(lambda: (lambda f: f if sample(
            f, "portal_gateway_requests_total", model="chat-small", status="200") >= 7
            else None)(scrape(metrics_url)))
        assert families, scrape(metrics_url).get("portal_gateway_requests")
        for name in GATEWAY_FAMILIES + PLATFORM_FAMILIES:
            assert name in families, name

        # Requests by tenant, model and status; tokens by tenant and model.
        assert sample(families, "portal_gateway_requests_total", tenant="acme",
                      model="chat-small", status="200") == 7 + statuses.count(200)
        assert sample(families, "portal_gateway_requests_total", tenant="acme",
                      status="429") == statuses.count(429)
        assert sample(families, "portal_gateway_requests_total", tenant="", model="",
                      status="401") == 1
        assert sample(families, "portal_gateway_tokens_total", tenant="acme",
                      model="chat-small", type="input") > 0
        assert sample(families, "portal_gateway_tokens_total", tenant="acme",
                      model="chat-small", type="output") > 0
        # Latency and time to first token: one observation per served request.
        served = 7 + statuses.count(200)
        assert sample(families, "portal_gateway_request_duration_seconds_count",
                      model="chat-small") == served
        assert sample(families, "portal_gateway_request_duration_seconds_bucket",
                      model="chat-small", le="+Inf") == served
        assert sample(families, "portal_gateway_time_to_first_token_seconds_count",
                      model="chat-small") == served
        assert sample(families, "portal_gateway_request_duration_seconds_sum",
                      model="chat-small") > 0
        # Refusals and upstream errors.
        assert sample(families, "portal_gateway_refusals_total", tenant="acme",
                      reason="rate_limit_exceeded") == statuses.count(429)
        assert sample(families, "portal_gateway_upstream_errors_total", model="chat-gone",
                      reason="connect") == 1
        assert sample(families, "portal_gateway_requests_total", model="chat-gone",
                      status="503") == 1
        # Nothing dropped; the buffers have been flushed to Redis.
        assert sample(families, "portal_gateway_usage_events_dropped_total") == 0

        # The platform, read at scrape time.
        assert sample(families, "portal_deployments", status="ready") == 2
        assert sample(families, "portal_deployments", status="failed") == 0
        assert sample(families, "portal_audit_chain_head_seq") > 1
        assert sample(families, "portal_audit_checkpoint_seq") >= 1
        assert 0 <= sample(families, "portal_audit_checkpoint_age_seconds") < 600
        # Nobody drains in this test: the stream holds every metered request, the oldest
        # for a while already.
        assert sample(families, "portal_usage_stream_length") == served + 1  # + the 503
        assert sample(families, "portal_usage_drain_lag_seconds") > 0
        assert "portal_model_versions" in families and "portal_model_uploads" in families

        # The Celery worker: task outcomes counted in its pool processes.
        wait_until_up(f"http://127.0.0.1:{worker_port}/metrics", worker, timeout=60)
        celery_app.send_task("gateway.tasks.drain_usage")
        celery_app.send_task("audit.tasks.generate_report", args=["not-a-report-id"])
        worker_url = f"http://127.0.0.1:{worker_port}/metrics"
        tasks = poll(lambda: (lambda f: f if sample(
            f, "portal_celery_tasks_total", outcome="failed") >= 1 and sample(
            f, "portal_celery_tasks_total", outcome="succeeded") >= 1 else None)(
            scrape(worker_url)), timeout=60)
        assert tasks, (tmp_path / "worker.log").read_text()[-3000:]
        assert sample(tasks, "portal_celery_tasks_total", task="gateway.tasks.drain_usage",
                      outcome="succeeded") == 1
        assert sample(tasks, "portal_celery_tasks_total",
                      task="audit.tasks.generate_report", outcome="failed") == 1
        # The drain emptied the stream; the next scrape (after the cache) says so.
        time.sleep(5.5)
        after = scrape(metrics_url)
        assert sample(after, "portal_usage_stream_length") == 0
        assert sample(after, "portal_usage_drain_lag_seconds") == 0
        assert sample(after, "portal_celery_queue_length", queue="celery") == 0
    finally:
        stop(worker)
        stop(server.process)


def test_a_gateway_server_role_serves_no_platform_gauges(tmp_path, settings):
    settings.PORTAL_ROLE = "gateway"
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    from portal.metrics import asgi_registry

    names = {metric.name for metric in asgi_registry().collect()}
    assert "portal_gateway_requests" in names
    assert "portal_deployments" not in names


def test_worker_counts_add_up_and_a_dead_workers_gauge_is_left_out(tmp_path):
    first, second = GatewayMetrics(), GatewayMetrics()
    first.served("acme", "chat", 200, 10, 5, 0.02, 0.004)
    first.request("", "", 401)
    second.served("acme", "chat", 200, 1, 2, 3.0, None)
    second.count("portal_gateway_refusals", "acme", "insufficient_quota")
    first.gauges["portal_gateway_usage_events_buffered"] = lambda: 3
    second.gauges["portal_gateway_usage_events_buffered"] = lambda: 4
    first.write(tmp_path)  # this process: alive
    dead = orjson_with_pid(second.snapshot(), pid=_a_dead_pid())
    (tmp_path / "gateway-1.json").write_bytes(dead)

    merged = {metric.name: metric for metric in GatewayCollector(tmp_path).collect()}

    def value(name, suffix="", **labels):
        return sum(s.value for s in merged[name].samples
                   if s.name == name + suffix and all(s.labels.get(k) == v
                                                      for k, v in labels.items()))

    assert value("portal_gateway_requests", "_total", tenant="acme", status="200") == 2
    assert value("portal_gateway_requests", "_total", status="401") == 1
    assert value("portal_gateway_tokens", "_total", type="input") == 11
    assert value("portal_gateway_refusals", "_total", reason="insufficient_quota") == 1
    assert value("portal_gateway_request_duration_seconds", "_count", model="chat") == 2
    assert value("portal_gateway_request_duration_seconds", "_bucket", le="0.025") == 1
    assert value("portal_gateway_request_duration_seconds", "_bucket", le="5.0") == 2
    assert value("portal_gateway_time_to_first_token_seconds", "_count") == 1
    # Counts of a worker that exited stay (they happened); its gauge does not.
    assert value("portal_gateway_usage_events_buffered") == 3


def orjson_with_pid(snapshot: bytes, *, pid: int) -> bytes:
    import orjson

    data = orjson.loads(snapshot)
    data["pid"] = pid
    return orjson.dumps(data)


def _a_dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_entrypoint_empties_the_metrics_directory(tmp_path, monkeypatch):
    from portal import entrypoint

    stale = tmp_path / "metrics"
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"old counts")
    (stale / "gateway-9.json").write_bytes(b"{}")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(stale))
    entrypoint._fresh_metrics_dir()
    assert list(stale.iterdir()) == []
    assert Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) == stale
