"""Notification and webhook writes: in-portal notifications and their read state, webhook
endpoints (created with a signing secret, deleted, sent a test event) and the deliveries of an
event to a tenant's endpoints."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

import audit
from billing.budgets.models import BudgetAlert
from billing.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from billing.notifications.tasks import webhook_deliver
from portal import crypto, outbound
from portal.api import ApplicationError, full_clean_or_refuse
from tenants.models import Tenant


def notifications_create(*, tenant_id: int, users, alert: BudgetAlert | None, title: str,
                         body: str, level: str) -> list[Notification]:
    """One in-portal notification to each of `users` (caller's transaction)."""
    return Notification.objects.bulk_create([
        Notification(tenant_id=tenant_id, user=user, alert=alert, title=title, body=body,
                     level=level)
        for user in users])


@transaction.atomic
def notifications_mark_read(*, user, tenant: Tenant, ids: list[int] | None = None) -> int:
    unread = Notification.objects.for_tenant(tenant).filter(user=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())


def webhook_endpoint_create(*, actor, tenant: Tenant, name: str, url: str
                            ) -> tuple[WebhookEndpoint, str]:
    """Returns the endpoint and its signing secret, which is shown this once.

    The URL must be http(s) and resolve to public addresses or networks the operator allowed
    (portal.outbound: the portal must not become a way into the internal network); it is
    checked before the transaction (it resolves the host). It may embed the receiver's own
    secret (Slack, Teams), so the audit trail keeps it masked."""
    try:
        outbound.check_url(url, outbound.webhook_policy())
    except outbound.OutboundRefused as exc:
        raise ApplicationError(exc.message, field_errors={"url": [exc.message]}) from None
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        endpoint = WebhookEndpoint(tenant=tenant, name=name, url=url,
                                   secret_encrypted=crypto.encrypt(secret),
                                   created_by=getattr(actor, "audit_label", str(actor)))
        full_clean_or_refuse(endpoint)
        endpoint.save()
        audit.record(action="billing.webhook_create", actor=actor, tenant=tenant,
                     target=endpoint, details={"name": name, "url": endpoint.masked_url})
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_delete(*, actor, endpoint: WebhookEndpoint) -> None:
    audit.record(action="billing.webhook_delete", actor=actor, tenant=endpoint.tenant,
                 target=endpoint, details={"name": endpoint.name, "url": endpoint.masked_url})
    endpoint.delete()


@transaction.atomic
def webhook_endpoint_ping(*, actor, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a `ping` delivery to one endpoint, to check the receiver and its signature
    verification; it shows in the delivery log like any other."""
    delivery = WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id, endpoint=endpoint, event="ping",
        payload={"event": "ping", "tenant": endpoint.tenant.slug, "endpoint_id": endpoint.pk,
                 "sent_by": getattr(actor, "audit_label", str(actor)),
                 "created_at": timezone.now().isoformat()},
        next_attempt_at=timezone.now())
    transaction.on_commit(lambda: webhook_deliver.delay(delivery.pk))
    return delivery


def deliveries_create(*, alert: BudgetAlert | None, event: str, payload: dict,
                      tenant_id: int | None = None) -> list[WebhookDelivery]:
    """Queue one delivery per active endpoint of the tenant; the worker sends them after
    commit."""
    tenant_id = tenant_id or alert.tenant_id
    deliveries = [WebhookDelivery.objects.create(
        tenant_id=tenant_id, endpoint=endpoint, alert=alert, event=event, payload=payload,
        next_attempt_at=timezone.now())
        for endpoint in WebhookEndpoint.objects.filter(tenant_id=tenant_id, active=True)]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: webhook_deliver.delay(pk))
    return deliveries
