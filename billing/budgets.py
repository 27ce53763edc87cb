"""Budgets: periods, Redis counters, the drain hook, reconciliation, thresholds and alerts.

Consumption of every budget's current period is a Redis counter `budget:<id>:<yyyymmdd>`
(money in 1e-8 units, matching `UsageRecord.cost`'s precision, or tokens). The usage drain
adds each batch's usage (`budgets_record_usage`), a beat task recomputes the counters from the
usage records (`budgets_reconcile`), and the gateway compares the counters of the budgets that
block with their limits (`BudgetRule`) — one MGET, no database query.

Drain and reconcile serialize through the BUDGETS advisory lock (portal.locks): the drain
increments inside its transaction under the shared lock, the reconcile reads the records and
overwrites the counters under the exclusive lock, so an increment is never lost nor counted
twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

import audit
from billing.budget_models import (
    Budget,
    BudgetAction,
    BudgetAlert,
    BudgetPeriod,
    BudgetUnit,
    Notification,
)
from billing.models import UsageRecord
from portal import locks, request_context
from portal.dates import OUT_OF_RANGE, is_supported
from portal.gateway_config import bump_gateway_config
from tenants.models import Membership, Tenant, TenantRole

logger = logging.getLogger(__name__)

MONEY_SCALE = 10**8  # counters hold money in units of 1e-8, UsageRecord.cost's precision


# --- periods --------------------------------------------------------------------------

def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_of(budget: Budget, when: datetime) -> tuple[date, date] | None:
    """The budget's period containing `when` as [start, end) dates, or None outside it."""
    day = when.astimezone(UTC).date()
    if budget.period == BudgetPeriod.MONTHLY:
        start = month_start(day)
        return start, next_month(start)
    if budget.period_start <= day <= budget.period_end:
        return budget.period_start, budget.period_end + timedelta(days=1)
    return None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def counter_key(budget_id: int, start: date) -> str:
    return f"budget:{budget_id}:{start:%Y%m%d}"


def limit_units(budget: Budget) -> int:
    if budget.unit == BudgetUnit.TOKENS:
        return int(budget.amount)
    return int(budget.amount * MONEY_SCALE)


def units_to_amount(budget: Budget, units: int) -> Decimal:
    if budget.unit == BudgetUnit.TOKENS:
        return Decimal(units)
    return Decimal(units) / MONEY_SCALE


def _applies(budget: Budget, record: UsageRecord) -> bool:
    return ((budget.api_key_id is None or budget.api_key_id == record.api_key_id)
            and (budget.model_id is None or budget.model_id == record.model_id)
            and (budget.unit == BudgetUnit.TOKENS or record.currency == budget.currency))


def _units(budget: Budget, record: UsageRecord) -> int:
    if budget.unit == BudgetUnit.TOKENS:
        return record.input_tokens + record.output_tokens
    return int(record.cost * MONEY_SCALE)


# --- what the gateway reads -----------------------------------------------------------

@dataclass(frozen=True)
class BudgetRule:
    """A blocking budget as a gateway worker caches it."""

    id: int
    name: str
    tenant_id: int
    api_key_id: int | None
    model_id: int | None
    monthly: bool
    start: float  # custom periods: [start, end) as epoch seconds
    end: float
    limit: int

    def applies(self, key_id: int, model_id: int) -> bool:
        return ((self.api_key_id is None or self.api_key_id == key_id)
                and (self.model_id is None or self.model_id == model_id))

    def counter_key(self, now: float) -> str | None:
        if self.monthly:
            moment = time.gmtime(now)
            return f"budget:{self.id}:{moment.tm_year:04d}{moment.tm_mon:02d}01"
        if self.start <= now < self.end:
            return f"budget:{self.id}:{time.strftime('%Y%m%d', time.gmtime(self.start))}"
        return None


def gateway_budget_rules() -> dict[int, list[BudgetRule]]:
    """tenant id → its blocking budgets (called by gateway workers on a configuration reload)."""
    rules: dict[int, list[BudgetRule]] = defaultdict(list)
    for budget in Budget.objects.filter(action=BudgetAction.BLOCK):
        monthly = budget.period == BudgetPeriod.MONTHLY
        rules[budget.tenant_id].append(BudgetRule(
            id=budget.pk, name=budget.name, tenant_id=budget.tenant_id,
            api_key_id=budget.api_key_id,
            model_id=budget.model_id, monthly=monthly,
            start=0.0 if monthly else _midnight(budget.period_start).timestamp(),
            end=0.0 if monthly else _midnight(budget.period_end + timedelta(days=1)).timestamp(),
            limit=limit_units(budget)))
    return dict(rules)


# --- counters -------------------------------------------------------------------------

def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def _expire_at(end: date) -> int:
    # Kept a month past the period, for the budget pages and late usage.
    return int((_midnight(end) + timedelta(days=35)).timestamp())


def budgets_record_usage(*, records: Iterable[UsageRecord]) -> None:
    """The usage drain's hook: add a batch of new records to the counters of the budgets they
    count against, then raise the alerts of the thresholds crossed. Runs inside the drain's
    transaction."""
    records = list(records)
    if not records or not settings.REDIS_URL:
        return
    by_tenant: dict[int, list[UsageRecord]] = defaultdict(list)
    for record in records:
        by_tenant[record.tenant_id].append(record)
    budgets = list(Budget.objects.filter(tenant_id__in=by_tenant))
    if not budgets:
        return
    deltas: dict[tuple[int, date], int] = defaultdict(int)
    ends: dict[tuple[int, date], date] = {}
    # (units, gateway request id) in order, to name the request that crossed a threshold.
    requests_of: dict[tuple[int, date], list[tuple[int, str]]] = defaultdict(list)
    for budget in budgets:
        for record in by_tenant[budget.tenant_id]:
            if not _applies(budget, record):
                continue
            period = period_of(budget, record.created_at)
            if period is None:
                continue
            units = _units(budget, record)
            deltas[budget.pk, period[0]] += units
            requests_of[budget.pk, period[0]].append((units, record.request_id))
            ends[budget.pk, period[0]] = period[1]
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return
    locks.hold(locks.BUDGETS, shared=True)
    pipe = _redis().pipeline(transaction=False)
    for (budget_id, start), delta in deltas.items():
        pipe.incrby(counter_key(budget_id, start), delta)
        pipe.expireat(counter_key(budget_id, start), _expire_at(ends[budget_id, start]))
    totals = pipe.execute()[::2]
    by_id = {b.pk: b for b in budgets}
    for ((budget_id, start), delta), total in zip(deltas.items(), totals, strict=True):
        _raise_alerts(by_id[budget_id], start, int(total), crossed_by=_crossing(
            requests_of[budget_id, start], int(total) - delta))


def _crossing(requests: list[tuple[int, str]], before: int):
    """For a threshold (in units ×100 of the limit), the request id whose usage reached it:
    the alert's audit event and log lines carry the id of the gateway request (README
    "Metrics, logs and traces")."""
    def request_id(reached: int) -> str:
        running = before
        for units, rid in requests:
            running += units
            if running * 100 >= reached:
                return rid
        return requests[-1][1]

    return request_id


def _consumed_in_db(budget: Budget, start: date, end: date) -> int:
    records = UsageRecord.objects.filter(tenant_id=budget.tenant_id,
                                         created_at__gte=_midnight(start),
                                         created_at__lt=_midnight(end))
    if budget.api_key_id is not None:
        records = records.filter(api_key_id=budget.api_key_id)
    if budget.model_id is not None:
        records = records.filter(model_id=budget.model_id)
    if budget.unit == BudgetUnit.TOKENS:
        totals = records.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
        return (totals["i"] or 0) + (totals["o"] or 0)
    cost = records.filter(currency=budget.currency).aggregate(c=Sum("cost"))["c"]
    return int((cost or 0) * MONEY_SCALE)


def budget_reconcile(*, budget: Budget, now: datetime | None = None) -> int | None:
    """Recompute the budget's current-period counter from the usage records; returns it."""
    period = period_of(budget, now or datetime.now(UTC))
    if period is None or not settings.REDIS_URL:
        return None
    with transaction.atomic():
        locks.hold(locks.BUDGETS)
        consumed = _consumed_in_db(budget, *period)
        _redis().set(counter_key(budget.pk, period[0]), consumed,
                     exat=_expire_at(period[1]))
    # Alerts after the lock is released: raising one appends to the audit chain, whose lock a
    # drain may hold while it waits for ours.
    with transaction.atomic():
        _raise_alerts(budget, period[0], consumed)
    return consumed


def budgets_reconcile(*, now: datetime | None = None) -> int:
    """Every budget's counter recomputed (the beat task; also rebuilds counters Redis lost)."""
    tenant_default_budgets_sync()
    count = 0
    for budget in Budget.objects.order_by("pk"):
        if budget_reconcile(budget=budget, now=now) is not None:
            count += 1
    return count


def budget_consumption(budget: Budget, *, now: datetime | None = None) -> dict:
    """Current period, consumed amount and share, for the pages and the API (a Redis read)."""
    period = period_of(budget, now or datetime.now(UTC))
    if period is None:
        return {"active": False, "period_start": None, "period_end": None,
                "consumed": Decimal(0), "percent": 0, "blocked": False}
    units = 0
    if settings.REDIS_URL:
        try:
            value = _redis().get(counter_key(budget.pk, period[0]))
        except redis.RedisError:
            value = None
        units = int(value) if value is not None else _consumed_in_db(budget, *period)
    else:
        units = _consumed_in_db(budget, *period)
    limit = limit_units(budget)
    percent = round(100 * units / limit, 1) if limit else 0
    return {"active": True, "period_start": period[0],
            "period_end": period[1] - timedelta(days=1),
            "consumed": units_to_amount(budget, units), "percent": percent,
            "blocked": budget.action == BudgetAction.BLOCK and units >= limit}


# --- alerts ---------------------------------------------------------------------------

def _raise_alerts(budget: Budget, start: date, units: int,
                  crossed_by=None) -> list[BudgetAlert]:
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
    return {"event": "budget.threshold_reached", "alert_id": alert.pk,
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
    from billing import webhooks
    from billing.budget_tasks import budget_alert_email

    title, body = alert_text(alert)
    admins = _tenant_admins(alert.tenant_id)
    Notification.objects.bulk_create([
        Notification(tenant_id=alert.tenant_id, user=user, alert=alert, title=title, body=body,
                     level="danger" if alert.threshold >= 100 else "warning")
        for user in admins])
    # A block is also a security event (the compliance report lists actions ending in
    # ".blocked").
    audit.record(action="billing.budget.blocked" if alert.blocked else "billing.budget_alert",
                 actor="system:budgets",
                 tenant=alert.budget.tenant, target=alert.budget,
                 details={"threshold": alert.threshold, "consumed": str(alert.consumed),
                          "period_start": alert.period_start, "blocked": alert.blocked})
    if alert.budget.notify_email and admins:
        transaction.on_commit(lambda: budget_alert_email.delay(alert.pk))
    webhooks.deliveries_create(alert=alert, event="budget.threshold_reached",
                               payload=alert_payload(alert))


def alert_email_send(*, alert_id: int) -> bool:
    """Send the alert's e-mail once (claimed by a compare-and-set)."""
    from django.core.mail import send_mail
    from django.utils import timezone

    claimed = BudgetAlert.objects.filter(pk=alert_id, email_sent_at__isnull=True).update(
        email_sent_at=timezone.now())
    if not claimed:
        return False
    alert = BudgetAlert.objects.select_related("budget", "tenant").get(pk=alert_id)
    recipients = [u.email for u in _tenant_admins(alert.tenant_id)]
    title, body = alert_text(alert)
    link = f"{settings.PORTAL_BASE_URL}/t/{alert.tenant.slug}/budgets/"
    try:
        send_mail(f"[{settings.SITE_NAME}] {title}", f"{body}\n\nBudgets: {link}\n",
                  settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:
        BudgetAlert.objects.filter(pk=alert_id).update(email_sent_at=None)
        raise
    return True


# --- budgets CRUD ---------------------------------------------------------------------

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
        from billing.budget_forms import api_key_model

        if not api_key_model().objects.filter(pk=budget.api_key_id,
                                              tenant_id=budget.tenant_id).exists():
            errors["api_key_id"] = ["Choose one of this tenant's API keys."]
    if errors:
        raise ValidationError(errors)
    budget.full_clean()


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
            budget.full_clean()
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


@transaction.atomic
def notifications_mark_read(*, user, tenant: Tenant, ids: list[int] | None = None) -> int:
    from django.utils import timezone

    unread = Notification.objects.for_tenant(tenant).filter(user=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())
