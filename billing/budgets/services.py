"""Budget writes: create, update and delete (audited; gateway workers reload the blocking
budgets within a second), the tenants' default budgets kept in step, and the reconcile of
every budget's counter (the beat task)."""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from django.db import transaction
from django.db.models import Q

import audit
from billing.budgets.counters import budget_reconcile
from billing.budgets.models import Budget, BudgetAction, BudgetPeriod, BudgetUnit
from billing.budgets.selectors import api_key_model
from portal.api import ApplicationError, full_clean_or_refuse
from portal.dates import OUT_OF_RANGE, is_supported
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant

logger = logging.getLogger(__name__)

_FIELDS = ("name", "api_key_id", "model", "period", "period_start", "period_end", "unit",
           "amount", "currency", "thresholds", "action", "notify_email")


def _validate(budget: Budget) -> None:
    errors: dict[str, list[str]] = {}
    thresholds = budget.thresholds
    if (not isinstance(thresholds, list) or not thresholds
            or not all(isinstance(t, int) and 1 <= t <= 100 for t in thresholds)):
        errors["thresholds"] = ["Give one or more whole percentages between 1 and 100."]
    else:
        budget.thresholds = sorted(set(thresholds))
    if budget.period == BudgetPeriod.CUSTOM:
        if not budget.period_start or not budget.period_end:
            errors["period_start"] = ["A custom period needs a first and a last day."]
        elif not (is_supported(budget.period_start) and is_supported(budget.period_end)):
            errors["period_end"] = [OUT_OF_RANGE]
        elif budget.period_end < budget.period_start:
            errors["period_end"] = ["The last day must not be before the first."]
        elif (budget.period_end - budget.period_start).days > 366:
            errors["period_end"] = ["A custom period is at most one year long."]
    else:
        budget.period_start = budget.period_end = None
    if budget.unit == BudgetUnit.CURRENCY:
        if not budget.currency:
            errors["currency"] = ["A money budget needs a currency, e.g. EUR."]
    else:
        budget.currency = ""
        if budget.amount is not None and budget.amount != budget.amount.to_integral_value():
            errors["amount"] = ["A token budget is a whole number of tokens."]
    if budget.api_key_id is not None:
        if not api_key_model().objects.filter(pk=budget.api_key_id,
                                              tenant_id=budget.tenant_id).exists():
            errors["api_key_id"] = ["Choose one of this tenant's API keys."]
    if errors:
        raise ApplicationError(" ".join(m for messages in errors.values() for m in messages),
                               field_errors=errors)
    full_clean_or_refuse(budget)


def _changed(budget: Budget) -> None:
    bump_gateway_config()  # gateway workers reload the blocking budgets within a second
    transaction.on_commit(lambda: _reconcile_after_commit(budget.pk))


def _reconcile_after_commit(budget_id: int) -> None:
    budget = Budget.objects.filter(pk=budget_id).first()
    if budget is not None:
        try:
            budget_reconcile(budget=budget)
        except redis.RedisError:
            logger.warning("Budget %s: counter not rebuilt now; the beat task will.", budget_id)


@transaction.atomic
def budget_create(*, actor, tenant: Tenant, **values) -> Budget:
    unknown = set(values) - set(_FIELDS)
    if unknown:
        raise TypeError(f"Unknown budget fields: {sorted(unknown)}")
    budget = Budget(tenant=tenant, created_by=getattr(actor, "audit_label", str(actor)),
                    **values)
    _validate(budget)
    budget.save()
    audit.record(action="billing.budget_create", actor=actor, tenant=tenant, target=budget,
                 details=_describe(budget))
    _changed(budget)
    return budget


@transaction.atomic
def budget_update(*, actor, budget: Budget, **values) -> Budget:
    before = _describe(budget)
    for name, value in values.items():
        if name not in _FIELDS:
            raise TypeError(f"Unknown budget field: {name}")
        setattr(budget, name, value)
    budget.from_tenant_default = False  # edited by a person: theirs now
    _validate(budget)
    budget.save()
    after = _describe(budget)
    audit.record(action="billing.budget_update", actor=actor, tenant=budget.tenant,
                 target=budget, details={"changes": {k: [before[k], after[k]] for k in after
                                                     if before[k] != after[k]}})
    _changed(budget)
    return budget


@transaction.atomic
def budget_delete(*, actor, budget: Budget) -> None:
    audit.record(action="billing.budget_delete", actor=actor, tenant=budget.tenant,
                 target=budget, details=_describe(budget))
    budget.delete()
    bump_gateway_config()


def _describe(budget: Budget) -> dict:
    return {"name": budget.name, "api_key_id": budget.api_key_id,
            "model": budget.model.slug if budget.model_id else None, "period": budget.period,
            "period_start": budget.period_start, "period_end": budget.period_end,
            "unit": budget.unit, "amount": str(budget.amount), "currency": budget.currency,
            "thresholds": list(budget.thresholds), "action": budget.action,
            "notify_email": budget.notify_email}


@transaction.atomic
def tenant_default_budgets_sync() -> None:
    """Tenants with a default monthly budget and no tenant-wide budget of their own get a
    notify-only budget that follows the default (an MSP-set guard rail)."""
    own = Q(api_key_id__isnull=True, model__isnull=True, period=BudgetPeriod.MONTHLY,
            unit=BudgetUnit.CURRENCY)
    for tenant in Tenant.objects.filter(default_monthly_budget__gt=0):
        budgets = Budget.objects.filter(own, tenant=tenant)
        if budgets.filter(from_tenant_default=False).exists():
            continue
        current = budgets.filter(from_tenant_default=True).first()
        if current is None:
            budget = Budget(tenant=tenant, name="Monthly budget (platform default)",
                            period=BudgetPeriod.MONTHLY, unit=BudgetUnit.CURRENCY,
                            amount=tenant.default_monthly_budget,
                            currency=tenant.budget_currency, action=BudgetAction.NOTIFY,
                            from_tenant_default=True, created_by="system:budgets")
            full_clean_or_refuse(budget)
            budget.save()
            audit.record(action="billing.budget_create", actor="system:budgets", tenant=tenant,
                         target=budget, details=_describe(budget))
        elif (current.amount, current.currency) != (tenant.default_monthly_budget,
                                                    tenant.budget_currency):
            current.amount, current.currency = (tenant.default_monthly_budget,
                                                tenant.budget_currency)
            current.save(update_fields=["amount", "currency", "updated_at"])
            audit.record(action="billing.budget_update", actor="system:budgets", tenant=tenant,
                         target=current, details=_describe(current))


def budgets_reconcile(*, now: datetime | None = None) -> int:
    """Every budget's counter recomputed (the beat task; also rebuilds counters Redis lost)."""
    tenant_default_budgets_sync()
    count = 0
    for budget in Budget.objects.order_by("pk"):
        if budget_reconcile(budget=budget, now=now) is not None:
            count += 1
    return count
