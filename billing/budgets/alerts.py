"""Budget alerts: each threshold alerts once per period, to the tenant's admins in the portal
and by e-mail, to the tenant's webhooks, and in the audit trail (a block as a security event).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django.db import IntegrityError, transaction

import audit
from billing.budgets.models import Budget, BudgetAction, BudgetAlert, BudgetUnit
from billing.budgets.periods import limit_units, units_to_amount
from billing.notifications import services as notifications
from billing.notifications.mail import send_claimed_mail
from portal import request_context
from tenants.models import Membership, TenantRole

ALERT_EVENT = "budget.threshold_reached"


def raise_alerts(budget: Budget, start: date, units: int,
                 crossed_by: Callable[[int], str] | None = None) -> list[BudgetAlert]:
    """Alert every threshold that `units` consumed in the period starting `start` crossed and
    that has not alerted in this period yet (caller's transaction). `crossed_by(reached)`
    names the gateway request whose usage reached `reached` (units ×100 of the limit): the
    alert's audit event and log lines carry its id."""
    limit = limit_units(budget)
    crossed = sorted(t for t in budget.thresholds if units * 100 >= limit * t)
    if not crossed:
        return []
    known = set(BudgetAlert.objects.filter(budget=budget, period_start=start,
                                           threshold__in=crossed)
                .values_list("threshold", flat=True))
    raised = []
    for threshold in crossed:
        if threshold in known:
            continue
        try:
            # A concurrent drain raising the same alert waits on the unique index, then fails
            # here: exactly one of them alerts.
            with transaction.atomic():
                alert = BudgetAlert.objects.create(
                    tenant_id=budget.tenant_id, budget=budget, period_start=start,
                    threshold=threshold, consumed=units_to_amount(budget, units),
                    limit=budget.amount,
                    blocked=threshold >= 100 and budget.action == BudgetAction.BLOCK)
        except IntegrityError:
            continue
        if crossed_by is None:
            _announce(alert)
        else:
            with request_context.bound(request_id=crossed_by(limit * threshold)):
                _announce(alert)
        raised.append(alert)
    return raised


def alert_text(alert: BudgetAlert) -> tuple[str, str]:
    budget = alert.budget
    unit = "tokens" if budget.unit == BudgetUnit.TOKENS else budget.currency
    title = f"Budget “{budget.name}” reached {alert.threshold} %"
    body = (f"{alert.consumed.normalize():f} of {budget.amount.normalize():f} {unit} used in the "
            f"period starting {alert.period_start:%d %b %Y}.")
    if alert.blocked:
        body += (" API requests under this budget are now refused until the next period or "
                 "until the budget is raised.")
    return title, body


def alert_payload(alert: BudgetAlert) -> dict:
    budget = alert.budget
    return {"event": ALERT_EVENT, "alert_id": alert.pk,
            "tenant": budget.tenant.slug, "budget": {
                "id": budget.pk, "name": budget.name, "unit": budget.unit,
                "amount": str(budget.amount), "currency": budget.currency or None,
                "action": budget.action, "api_key_id": budget.api_key_id,
                "model": budget.model.slug if budget.model_id else None},
            "threshold": alert.threshold, "consumed": str(alert.consumed),
            "period_start": alert.period_start.isoformat(), "blocked": alert.blocked,
            "created_at": alert.created_at.isoformat()}


def _tenant_admins(tenant_id: int):
    return [m.user for m in Membership.objects.filter(
        tenant_id=tenant_id, role=TenantRole.TENANT_ADMIN, user__is_active=True)
        .select_related("user")]


def _announce(alert: BudgetAlert) -> None:
    """In-portal notifications now; e-mail and webhooks by the worker after commit."""
    from billing.budgets.tasks import budget_alert_email

    title, body = alert_text(alert)
    admins = _tenant_admins(alert.tenant_id)
    notifications.notifications_create(
        tenant_id=alert.tenant_id, users=admins, alert=alert, title=title, body=body,
        level="danger" if alert.threshold >= 100 else "warning")
    # A block is also a security event (the compliance report lists actions ending in
    # ".blocked").
    audit.record(action="billing.budget.blocked" if alert.blocked else "billing.budget_alert",
                 actor="system:budgets",
                 tenant=alert.budget.tenant, target=alert.budget,
                 details={"threshold": alert.threshold, "consumed": str(alert.consumed),
                          "period_start": alert.period_start, "blocked": alert.blocked})
    if alert.budget.notify_email and admins:
        transaction.on_commit(lambda: budget_alert_email.delay(alert.pk))
    notifications.deliveries_create(alert=alert, event=ALERT_EVENT,
                                    payload=alert_payload(alert))


def alert_email_send(*, alert_id: int) -> bool:
    """Send the alert's e-mail once (claimed by a compare-and-set)."""
    from django.utils import timezone

    claimed = BudgetAlert.objects.filter(pk=alert_id, email_sent_at__isnull=True).update(
        email_sent_at=timezone.now())
    if not claimed:
        return False
    alert = BudgetAlert.objects.select_related("budget", "tenant").get(pk=alert_id)
    recipients = [u.email for u in _tenant_admins(alert.tenant_id)]
    title, body = alert_text(alert)
    send_claimed_mail(
        title=title, body=body, link_label="Budgets", path=f"/t/{alert.tenant.slug}/budgets/",
        recipients=recipients,
        release=lambda: BudgetAlert.objects.filter(pk=alert_id).update(email_sent_at=None))
    return True
