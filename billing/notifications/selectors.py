"""Reads for the notification and webhook pages, and the sweep of due deliveries."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from billing.notifications.models import (
    DeliveryStatus,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)
from tenants.models import Tenant


def notification_list(*, user, tenant: Tenant) -> QuerySet[Notification]:
    return Notification.objects.for_tenant(tenant).filter(user=user)[:100]


def unread_notification_count(*, user, tenant: Tenant) -> int:
    return Notification.objects.for_tenant(tenant).filter(user=user,
                                                          read_at__isnull=True).count()


def webhook_endpoint_list(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.for_tenant(tenant)


def webhook_endpoint_get(*, tenant: Tenant, pk: int) -> WebhookEndpoint:
    return webhook_endpoint_list(tenant=tenant).get_or_404(pk, missing="No such webhook.")


def webhook_delivery_list(*, tenant: Tenant) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.for_tenant(tenant).select_related("endpoint")


def deliveries_due() -> list[int]:
    """Deliveries whose retry is due (the beat sweep re-enqueues them: a lost broker message
    never loses a delivery)."""
    return list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING,
                                               next_attempt_at__lte=timezone.now())
                .values_list("pk", flat=True)[:500])
