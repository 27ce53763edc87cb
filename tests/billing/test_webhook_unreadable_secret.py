"""A webhook endpoint whose signing secret no configured key decrypts sends nothing (an unsigned
or wrongly signed delivery would be worse): its deliveries say why, its row on the page says
what to do, the other endpoints deliver as usual."""

from audit.models import AuditEvent
from billing.models import WebhookDelivery
from billing.notifications import services as webhooks
from billing.notifications.webhooks import delivery_attempt
from tests.billing.test_budget_webhooks import _loopback_allowed, receiver  # noqa: F401
from tests.support.secret_keys import keys, new_key


def test_an_endpoint_with_an_unreadable_secret_is_disabled_alone(
        client, tenant, tenant_admin, receiver, django_capture_on_commit_callbacks):  # noqa: F811
    url, received = receiver
    with keys(new_key()):  # a key that is then removed from the settings
        locked, _ = webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant,
                                                     name="Locked", url=url)
    healthy, _ = webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant,
                                                  name="Healthy", url=url)
    with django_capture_on_commit_callbacks(execute=False):
        webhooks.deliveries_create(alert=None, event="ping", payload={"event": "ping"},
                                   tenant_id=tenant.pk)

    to_locked = WebhookDelivery.objects.get(endpoint=locked)
    assert delivery_attempt(delivery_id=to_locked.pk) is not None  # retried later
    to_locked.refresh_from_db()
    assert to_locked.status == "pending" and "can't be decrypted" in to_locked.last_error
    assert received == []  # nothing unsigned or wrongly signed went out
    to_healthy = WebhookDelivery.objects.get(endpoint=healthy)
    delivery_attempt(delivery_id=to_healthy.pk)
    assert len(received) == 1
    assert AuditEvent.objects.filter(action="secret.unreadable",
                                     target_id=str(locked.pk)).count() == 1

    client.force_login(tenant_admin)
    page = client.get(f"/t/{tenant.slug}/webhooks/").content.decode()
    assert page.count('data-testid="secret-problem"') == 1
    assert "Delete the endpoint and add it again" in page
