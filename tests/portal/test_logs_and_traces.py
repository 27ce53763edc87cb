"""JSON logs carry request id, tenant and actor — through Celery too — and, with tracing on,
a page that enqueues a task and a gateway request each produce one connected trace, received
by an OTLP/HTTP collector on loopback from the real server and worker processes."""

from __future__ import annotations

import io
import json
import logging
import time
from decimal import Decimal

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from django.test import Client

from audit.models import AuditEvent
from billing.models import UsageRecord
from billing.usage.drain import drain_usage_stream
from deployments import services as deployment_services
from gateway import services as gateway_services
from gateway.usage import STREAM
from models_catalog import services as catalog_services
from portal import request_context
from portal.logs import ContextFilter, JsonFormatter, logging_config
from tenants import services as tenant_services
from tests.factories import TenantFactory, make_msp_admin
from tests.support.gateway_fixtures import start_portal_server
from tests.support.kube_emulator import start_emulator
from tests.support.otlp import OtlpReceiver
from tests.support.processes import start_celery, start_upstream, stop

SPAN_SERVER, SPAN_CLIENT, SPAN_CONSUMER = 2, 3, 5  # OTLP's SpanKind numbers


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.fixture
def captured():
    """The portal's JSON handler on the root logger, writing to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_a_page_logs_one_json_line_with_request_id_tenant_and_actor(captured, developer,
                                                                      tenant):
    client = Client()
    client.force_login(developer)
    # A developer may not manage members: Django logs the 403 (one line, no traceback).
    response = client.post(f"/t/{tenant.slug}/members/invite/", {"email": "x@acme.test"},
                           HTTP_X_REQUEST_ID="trace-me-0001")
    assert response.status_code == 403
    assert response["X-Request-ID"] == "trace-me-0001"
    lines = [line for line in json_lines(captured.getvalue())
             if line["logger"] == "django.request"]
    assert len(lines) == 1, captured.getvalue()
    line = lines[0]
    assert line["level"] == "WARNING"
    assert line["request_id"] == "trace-me-0001"
    assert line["tenant"] == tenant.slug
    assert line["actor"] == f"user:{developer.pk}"
    assert line["status_code"] == 403
    assert "exception" not in line and "request" not in line
    assert line["time"].endswith("Z")


def test_log_format_setting(settings):
    assert logging_config(log_format="json", level="INFO")["formatters"]["portal"] == {
        "()": "portal.logs.JsonFormatter"}
    assert logging_config(log_format="text", level="INFO")["formatters"]["portal"] == {
        "()": "portal.logs.TextFormatter"}


@pytest.mark.django_db(transaction=True)
def test_a_celery_task_logs_and_audits_with_the_request_id_that_enqueued_it(tmp_path, tenant,
                                                                             tenant_admin):
    log = tmp_path / "worker.log"
    worker = start_celery("worker", dict(connection.settings_dict), settings.REDIS_URL, log,
                          "--pool", "solo", "--without-heartbeat", "--without-gossip",
                          "--without-mingle", EMAIL_URL=f"filemail:///{tmp_path / 'mail'}",
                          LOG_FORMAT="json")
    try:
        with request_context.bound(request_id="req-from-the-page-42", tenant=tenant.slug,
                                   actor=f"user:{tenant_admin.pk}"):
            tenant_services.invitation_create(actor=tenant_admin, tenant=tenant,
                                              email="new@acme.test", role="developer")
        deadline = time.monotonic() + 60
        done = []
        while time.monotonic() < deadline and not done:
            assert worker.poll() is None, log.read_text()
            done = [line for line in json_lines(log.read_text())
                    if "send_invitation_email" in line["message"]
                    and "succeeded" in line["message"]]
            time.sleep(0.25)
        assert done, log.read_text()[-3000:]
        assert done[0]["request_id"] == "req-from-the-page-42"
        assert done[0]["tenant"] == tenant.slug
        assert done[0]["actor"] == f"user:{tenant_admin.pk}"
        event = AuditEvent.objects.filter(action="invitation.created").get()
        assert event.request_id == "req-from-the-page-42"
    finally:
        stop(worker)


@pytest.fixture
def otlp():
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def wait_for_spans(receiver: OtlpReceiver, predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = receiver.received()
        if predicate(spans):
            return spans
        time.sleep(0.25)
    return receiver.received()


@pytest.mark.django_db(transaction=True)
def test_traces_connect_web_celery_kubernetes_and_gateway_upstream(otlp, tmp_path, upstream,
                                                                   settings):
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    kube = start_emulator()
    database = dict(connection.settings_dict)
    tracing_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
                   "SECURE_COOKIES": "false", "LOG_FORMAT": "json",
                   "ALLOWED_JURISDICTIONS": "DE"}
    server = worker = None
    try:
        admin = make_msp_admin(email="msp@example.test")
        tenant = TenantFactory(slug="acme", name="Acme Research", jurisdiction="DE")
        cluster = deployment_services.cluster_create(
            actor=admin, name="fra-1", api_url=kube.url, jurisdiction="DE",
            credentials=kube.token, gpu_capacity={"NVIDIA-L4": 4},
            gateway_namespace="istio-system", default_mode="Standard")
        chat = catalog_services.model_create(actor=admin, slug="chat-small", name="Chat",
                                             task="chat")
        deployment_services.external_endpoint_register(actor=admin, model=chat,
                                                       base_url=upstream)
        process, gone_base = start_upstream("--models", "chat-gone")
        try:
            gone = catalog_services.model_create(actor=admin, slug="chat-gone", name="Gone",
                                                 task="chat")
            deployment_services.external_endpoint_register(actor=admin, model=gone,
                                                           base_url=gone_base)
        finally:
            stop(process)
        _key, token = gateway_services.apikey_create(actor=admin, tenant=tenant, name="app")
        redis.Redis.from_url(settings.REDIS_URL).delete(STREAM)

        server_log = tmp_path / "server.log"
        with server_log.open("wb") as output:
            server = start_portal_server(database, settings.REDIS_URL, output=output,
                                         **tracing_env)
        worker = start_celery("worker", database, settings.REDIS_URL, tmp_path / "worker.log",
                              "--pool", "solo", "--without-heartbeat", "--without-gossip",
                              "--without-mingle", **tracing_env)

        # A page (the REST API, signed in) that enqueues Celery tasks, which call Kubernetes.
        client = Client()
        client.force_login(admin)
        session = requests.Session()
        session.cookies.set("sessionid", client.cookies["sessionid"].value)
        session.cookies.set("csrftoken", "c" * 32)
        answer = session.post(f"{server.url}/api/clusters/{cluster.pk}/namespaces/sync/",
                              headers={"X-CSRFToken": "c" * 32}, timeout=30)
        assert answer.status_code == 202, answer.text
        request_id = answer.headers["X-Request-ID"]

        spans = wait_for_spans(otlp, lambda spans: any(
            s.name.startswith("kubernetes") for s in spans) and any(
            s.kind == SPAN_CONSUMER for s in spans))
        web = [s for s in spans if s.kind == SPAN_SERVER
               and s.attributes.get("portal.request_id") == request_id]
        assert len(web) == 1, [(s.name, s.attributes) for s in spans]
        web = web[0]
        assert web.service == "sovereign-portal"
        assert web.name == "POST api/clusters/<int:pk>/namespaces/sync/"
        task = [s for s in spans if s.kind == SPAN_CONSUMER and s.trace_id == web.trace_id]
        assert task, [(s.name, s.trace_id, s.parent_id) for s in spans]
        assert task[0].name == "celery deployments.tasks.sync_tenant_namespace"
        assert task[0].parent_id == web.span_id
        assert task[0].attributes["portal.request_id"] == request_id
        kube_calls = [s for s in spans if s.name.startswith("kubernetes ")
                      and s.trace_id == web.trace_id]
        assert kube_calls and all(s.parent_id == task[0].span_id and s.kind == SPAN_CLIENT
                                  for s in kube_calls), [(s.name, s.parent_id) for s in spans]
        # The task's audit event carries the page's request id.
        synced = AuditEvent.objects.filter(action__startswith="namespace.sync").first()
        assert synced is not None and synced.request_id == request_id

        # The gateway: a server span per request, a client span per model-server call.
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        reply = requests.post(f"{server.url}/v1/chat/completions", timeout=10, json={
            "model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}",
                     "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"})
        assert reply.status_code == 200
        gateway_request_id = reply.headers["x-request-id"]
        spans = wait_for_spans(otlp, lambda spans: any(
            s.trace_id == caller_trace and s.kind == SPAN_CLIENT for s in spans))
        gateway = [s for s in spans if s.trace_id == caller_trace and s.kind == SPAN_SERVER]
        assert len(gateway) == 1 and gateway[0].parent_id == "00f067aa0ba902b7"
        assert gateway[0].name == "POST /v1/chat/completions"
        assert gateway[0].attributes["portal.request_id"] == gateway_request_id
        assert gateway[0].attributes["portal.model"] == "chat-small"
        model_call = [s for s in spans if s.trace_id == caller_trace and s.kind == SPAN_CLIENT]
        assert len(model_call) == 1 and model_call[0].parent_id == gateway[0].span_id
        # The same request id is the usage record's.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not drain_usage_stream():
            time.sleep(0.1)
        assert UsageRecord.objects.filter(request_id=gateway_request_id).exists()

        # A failing model server: the gateway's log line has the id the client was given.
        failed = requests.post(f"{server.url}/v1/chat/completions", timeout=10, json={
            "model": "chat-gone", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}"})
        assert failed.status_code == 503
        deadline = time.monotonic() + 10
        lines = []
        while time.monotonic() < deadline and not lines:
            lines = [line for line in json_lines(server_log.read_text())
                     if line.get("request_id") == failed.headers["x-request-id"]]
            time.sleep(0.1)
        assert lines, server_log.read_text()[-3000:]
        assert lines[0]["logger"] == "gateway.app" and lines[0]["level"] == "WARNING"
        assert lines[0]["tenant"] == "acme" and lines[0]["actor"].startswith("api_key:")
        assert "chat-gone" in lines[0]["message"]
    finally:
        for process in (worker, server and server.process):
            if process is not None:
                stop(process)
        kube.stop()


@pytest.mark.django_db
def test_a_budget_alert_names_the_gateway_request_that_crossed_its_threshold(tenant):
    from billing.budgets import services as budgets
    from tests.billing.budget_helpers import event, ingest, make_model

    chat = make_model()
    budgets.budget_create(actor="system:test", tenant=tenant, name="Tokens", unit="tokens",
                          amount=Decimal(3000), thresholds=[50, 100])
    first, second, third = (event(tenant, chat, input_tokens=500, output_tokens=500)
                            for _ in range(3))
    ingest(first, second, third)  # one drained batch: 1000, 2000 (50 % crossed), 3000 (100 %)
    alerts = {e.details["threshold"]: e.request_id for e in AuditEvent.objects.filter(
        action="billing.budget_alert")}
    assert alerts == {50: second["request_id"], 100: third["request_id"]}


@pytest.fixture
def in_memory_tracing(monkeypatch):
    """Tracing on in this test process, spans kept in memory; off again afterwards."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from portal import tracing

    for name in ("ENABLED", "_tracer", "_provider", "_propagator"):
        monkeypatch.setattr(tracing, name, getattr(tracing, name))
    exporter = InMemorySpanExporter()
    tracing.configure(span_processor=SimpleSpanProcessor(exporter))
    yield exporter


def test_registry_calls_are_client_spans_of_what_made_them(in_memory_tracing,
                                                           registry_settings):
    from models_catalog import registry as oci
    from portal import tracing

    with tracing.span("approve", kind="server"):
        oci.registry_client().ping()
    spans = {span.name: span for span in in_memory_tracing.get_finished_spans()}
    call = spans["registry GET"]
    assert call.kind.name == "CLIENT"
    assert call.parent.span_id == spans["approve"].context.span_id
    assert call.attributes["server.address"] == settings.REGISTRY_URL


def test_tracing_off_sends_nothing_and_costs_a_flag(settings):
    from portal import tracing

    assert settings.OTEL_EXPORTER_OTLP_ENDPOINT == ""
    tracing.configure()
    assert tracing.ENABLED is False
    with tracing.span("anything") as span:
        assert span is None
    headers = {}
    tracing.inject(headers)
    assert headers == {}
