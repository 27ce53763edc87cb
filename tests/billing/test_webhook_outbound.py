"""Budget webhooks through the outbound policy (portal/outbound.py): a delivery connects to the
address it vetted, so a name that answers a public address and then an internal one (DNS
rebinding) reaches nothing inside; and a webhook URL, which often carries the receiver's own
secret, is shown whole only to the tenant's admins."""

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from billing.models import WebhookDelivery
from billing.notifications import services as webhooks
from billing.notifications.webhooks import delivery_attempt
from portal import outbound
from tests.support.net import FakeDns, recording_server

PUBLIC = "93.184.215.14"  # never contacted: connections stop at the socket boundary
SLACK = "https://hooks.slack.example/services/T0AAA/B0BBB/s3cr3tXYZ"


@pytest.fixture(autouse=True)
def _public_only(settings):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = []


def _deliver(tenant, django_capture_on_commit_callbacks) -> WebhookDelivery:
    with django_capture_on_commit_callbacks(execute=False):
        webhooks.deliveries_create(alert=None, event="budget.threshold_reached",
                                   payload={"x": 1}, tenant_id=tenant.pk)
    delivery = WebhookDelivery.objects.get()
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_a_delivery_connects_to_the_address_it_vetted(tenant, tenant_admin, monkeypatch,
                                                      django_capture_on_commit_callbacks):
    """The name answers a public address to the check and loopback afterwards: the delivery
    goes to the public address it vetted, never to the internal server."""
    attempts = []

    def create_connection(address, *args, **kwargs):
        attempts.append(address[0])
        raise ConnectionRefusedError("test: not connecting")

    with recording_server() as internal:
        FakeDns({"hooks.example": [[PUBLIC], [PUBLIC], ["127.0.0.1"]]}).install(monkeypatch)
        monkeypatch.setattr(outbound, "create_connection", create_connection)
        webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="Ops",
                                         url=f"http://hooks.example:{internal.port}/hook")
        delivery = _deliver(tenant, django_capture_on_commit_callbacks)
        assert internal.requests == []
    assert attempts == [PUBLIC]
    assert "ConnectionError" in delivery.last_error


def test_a_delivery_to_a_name_that_now_resolves_inside_is_refused(
        tenant, tenant_admin, monkeypatch, django_capture_on_commit_callbacks):
    with recording_server() as internal:
        FakeDns({"hooks.example": [[PUBLIC], ["127.0.0.1"]]}).install(monkeypatch)
        webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="Ops",
                                         url=f"http://hooks.example:{internal.port}/hook")
        delivery = _deliver(tenant, django_capture_on_commit_callbacks)
        assert internal.requests == []
    assert "“hooks.example” resolves to 127.0.0.1" in delivery.last_error
    assert delivery.status == "pending" and delivery.attempts == 1


@pytest.mark.parametrize("url,reason", [
    ("http://[64:ff9b::a9fe:a9fe]/hook", "NAT64"),
    ("http://[2002:a9fe:a9fe::1]/hook", "6to4"),
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook", "Teredo"),
    ("http://[::ffff:169.254.169.254]/hook", "link-local"),
    ("http://0.0.0.0:8080/hook", "unspecified"),
])
def test_webhook_urls_in_disguise_are_refused(tenant, tenant_admin, url, reason):
    with pytest.raises(ValidationError) as caught:
        webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="x", url=url)
    assert reason in " ".join(caught.value.message_dict["url"])


@pytest.fixture
def slack_hook(tenant, tenant_admin, monkeypatch):
    FakeDns({"hooks.slack.example": [[PUBLIC]]}).install(monkeypatch)
    endpoint, _secret = webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant,
                                                         name="Slack", url=SLACK)
    return endpoint


def test_only_tenant_admins_see_the_whole_webhook_url(client, tenant, tenant_admin, developer,
                                                      viewer, msp_admin, slack_hook):
    client.force_login(tenant_admin)
    assert SLACK in client.get(f"/t/{tenant.slug}/webhooks/").content.decode()
    for user in (developer, viewer, msp_admin):
        client.force_login(user)
        page = client.get(f"/t/{tenant.slug}/webhooks/").content.decode()
        assert "s3cr3tXYZ" not in page and "/services/" not in page, user
        assert "https://hooks.slack.example/…" in page


def test_the_audit_trail_keeps_webhook_urls_masked(tenant, tenant_admin, slack_hook):
    webhooks.webhook_endpoint_delete(actor=tenant_admin, endpoint=slack_hook)
    for action in ("billing.webhook_create", "billing.webhook_delete"):
        details = AuditEvent.objects.get(action=action).details
        assert details["url"] == "https://hooks.slack.example/…"


def test_a_failed_delivery_does_not_log_the_url_secret(tenant, tenant_admin, slack_hook,
                                                       monkeypatch,
                                                       django_capture_on_commit_callbacks):
    def create_connection(address, *args, **kwargs):
        raise ConnectionRefusedError("test: not connecting")

    monkeypatch.setattr(outbound, "create_connection", create_connection)
    delivery = _deliver(tenant, django_capture_on_commit_callbacks)
    assert delivery.last_error and "s3cr3tXYZ" not in delivery.last_error
    assert "/services/" not in delivery.last_error
