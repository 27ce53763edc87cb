"""Budget webhooks over real HTTP to a receiver on loopback that fails before it succeeds."""

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.budgets import services as budgets
from billing.models import WebhookDelivery
from billing.notifications import webhooks
from billing.notifications.services import deliveries_create, webhook_endpoint_create
from portal import crypto
from tests.billing.budget_helpers import event, ingest, make_model


@pytest.fixture
def receiver():
    """Answers 503 to the first two deliveries, then 204; keeps what it received."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(503 if len(received) <= 2 else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/budget", received
    server.shutdown()


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    import ipaddress

    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    settings.BUDGET_WEBHOOK_RETRY_BASE_SECONDS = 30


def _due_now(delivery):
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_alert_is_delivered_signed_and_retried_with_backoff(
        tenant, tenant_admin, receiver, django_capture_on_commit_callbacks):
    url, received = receiver
    endpoint, secret = webhook_endpoint_create(actor=tenant_admin, tenant=tenant,
                                               name="Finance", url=url)
    assert secret.startswith("whsec_") and secret not in endpoint.secret_encrypted
    assert crypto.decrypt(endpoint.secret_encrypted) == secret
    chat = make_model()
    budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Tokens", unit="tokens",
                          amount=Decimal(3000), thresholds=[100])
    with django_capture_on_commit_callbacks(execute=False):
        ingest(event(tenant, chat), event(tenant, chat))
    delivery = WebhookDelivery.objects.get()

    started = timezone.now()
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == 30
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert started + timedelta(seconds=29) < delivery.next_attempt_at
    # Not due yet: a second worker (or a duplicate message) sends nothing.
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None
    assert len(received) == 1
    _due_now(delivery)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == 60  # doubled
    _due_now(delivery)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "succeeded", 3, 204)
    assert delivery.delivered_at is not None

    headers, body = received[-1]
    timestamp = headers["X-Portal-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Portal-Signature"], f"sha256={expected}")
    payload = json.loads(body)
    assert payload["event"] == "budget.threshold_reached"
    assert payload["threshold"] == 100 and payload["tenant"] == tenant.slug
    # A tampered body does not verify.
    forged = hmac.new(secret.encode(), f"{timestamp}.".encode() + body.replace(b"100", b"10"),
                      hashlib.sha256).hexdigest()
    assert headers["X-Portal-Signature"] != f"sha256={forged}"


def test_a_receiver_that_keeps_failing_is_given_up(tenant, tenant_admin, settings,
                                                   django_capture_on_commit_callbacks):
    import socket

    settings.BUDGET_WEBHOOK_MAX_ATTEMPTS = 2
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="Down",
                            url=f"http://127.0.0.1:{port}/")
    with django_capture_on_commit_callbacks(execute=False):
        deliveries_create(alert=None, event="budget.threshold_reached",
                          payload={"x": 1}, tenant_id=tenant.pk)
    delivery = WebhookDelivery.objects.get()
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == 30
    _due_now(delivery)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "ConnectionError" in delivery.last_error


@pytest.mark.parametrize("url,message", [
    ("ftp://example.org/hook", "http"),
    ("http://10.1.2.3/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "private"),
    ("http://[::1]:8080/", "private"),
])
def test_webhook_urls_that_are_not_public_http_are_refused(tenant, tenant_admin, settings,
                                                           url, message):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(ValidationError) as caught:
        webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="x", url=url)
    assert message in " ".join(caught.value.message_dict["url"])


def test_test_event_is_signed_and_logged(client, tenant, tenant_admin, receiver,
                                         django_capture_on_commit_callbacks):
    url, received = receiver
    endpoint, secret = webhook_endpoint_create(actor=tenant_admin, tenant=tenant,
                                               name="Ops", url=url)
    client.force_login(tenant_admin)
    with django_capture_on_commit_callbacks(execute=False):
        page = client.post(f"/t/{tenant.slug}/webhooks/{endpoint.pk}/test/", follow=True)
    assert "Test event queued" in page.content.decode()
    delivery = WebhookDelivery.objects.get(event="ping")
    for _ in range(3):  # the receiver fails twice first
        webhooks.delivery_attempt(delivery_id=delivery.pk)
        _due_now(delivery)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    headers, body = received[-1]
    assert headers["X-Portal-Event"] == "ping"
    assert headers["X-Portal-Signature"] == webhooks.sign(
        secret, int(headers["X-Portal-Timestamp"]), body)
    log = client.get(f"/t/{tenant.slug}/webhooks/").content.decode()
    assert "Delivered" in log and "HTTP 204" in log
