"""Reads for the budget pages and API."""

from __future__ import annotations

from django.apps import apps
from django.db.models import QuerySet

from billing.budgets.counters import budget_consumption
from billing.budgets.models import Budget, BudgetAlert
from tenants.models import Tenant


def api_key_model():
    # The key model belongs to the gateway app, which depends on billing: looked up by name.
    return apps.get_model("gateway", "ApiKey")


def tenant_api_keys(tenant):
    return api_key_model().objects.filter(tenant=tenant, revoked_at__isnull=True).order_by(
        "name")


def budget_list(*, tenant: Tenant) -> QuerySet[Budget]:
    return Budget.objects.for_tenant(tenant).select_related("model")


def budget_get(*, tenant: Tenant, pk: int) -> Budget:
    return budget_list(tenant=tenant).get_or_404(pk, missing="No such budget.")


def budget_rows(*, tenant: Tenant) -> list[dict]:
    """Each budget with its key's name and its current consumption (one Redis read each)."""
    keys = dict(api_key_model().objects.filter(tenant=tenant).values_list("pk", "name"))
    return [{"budget": b, "key_name": keys.get(b.api_key_id), **budget_consumption(b)}
            for b in budget_list(tenant=tenant)]


def alert_list(*, tenant: Tenant) -> QuerySet[BudgetAlert]:
    return BudgetAlert.objects.for_tenant(tenant).select_related("budget")
