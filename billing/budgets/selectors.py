"""Reads for the budget, notification, webhook and statement pages and API."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from billing.budgets.counters import budget_consumption
from billing.budgets.forms import api_key_model
from billing.budgets.models import (
    Budget,
    BudgetAlert,
    Notification,
    Statement,
    WebhookDelivery,
    WebhookEndpoint,
)
from tenants.models import Tenant


def budget_list(*, tenant: Tenant) -> QuerySet[Budget]:
    return Budget.objects.for_tenant(tenant).select_related("model")


def budget_get(*, tenant: Tenant, pk: int) -> Budget:
    budget = budget_list(tenant=tenant).filter(pk=pk).first()
    if budget is None:
        raise Http404("No such budget.")
    return budget


def budget_rows(*, tenant: Tenant) -> list[dict]:
    """Each budget with its key's name and its current consumption (one Redis read each)."""
    keys = dict(api_key_model().objects.filter(tenant=tenant).values_list("pk", "name"))
    return [{"budget": b, "key_name": keys.get(b.api_key_id), **budget_consumption(b)}
            for b in budget_list(tenant=tenant)]


def alert_list(*, tenant: Tenant) -> QuerySet[BudgetAlert]:
    return BudgetAlert.objects.for_tenant(tenant).select_related("budget")


def notification_list(*, user, tenant: Tenant) -> QuerySet[Notification]:
    return Notification.objects.for_tenant(tenant).filter(user=user)[:100]


def unread_notification_count(*, user, tenant: Tenant) -> int:
    return Notification.objects.for_tenant(tenant).filter(user=user,
                                                          read_at__isnull=True).count()


def webhook_endpoint_list(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.for_tenant(tenant)


def webhook_endpoint_get(*, tenant: Tenant, pk: int) -> WebhookEndpoint:
    endpoint = webhook_endpoint_list(tenant=tenant).filter(pk=pk).first()
    if endpoint is None:
        raise Http404("No such webhook.")
    return endpoint


def webhook_delivery_list(*, tenant: Tenant) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.for_tenant(tenant).select_related("endpoint")


def statement_overview() -> QuerySet[Statement]:
    """Closed statements of every tenant, newest month first (the MSP's page)."""
    return Statement.objects.select_related("tenant").order_by("-period_start",
                                                               "tenant__name")[:200]
