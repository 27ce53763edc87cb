"""Budget consumption as Redis counters: the usage drain's hook, the reconcile from the usage
records, and the figures the pages show.

Consumption of every budget's current period is a Redis counter `budget:<id>:<yyyymmdd>`
(money in 1e-8 units, matching `UsageRecord.cost`'s precision, or tokens). The usage drain
adds each batch's usage (`budgets_record_usage`), a beat task recomputes the counters from the
usage records (`budget_reconcile`), and the gateway compares the counters of the budgets that
block with their limits (`billing.budgets.gateway`) — one MGET, no database query.

Drain and reconcile serialize through the BUDGETS advisory lock (portal.locks): the drain
increments inside its transaction under the shared lock, the reconcile reads the records and
overwrites the counters under the exclusive lock, so an increment is never lost nor counted
twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from billing.budgets.alerts import raise_alerts
from billing.budgets.models import Budget, BudgetAction, BudgetUnit
from billing.budgets.periods import (
    MONEY_SCALE,
    limit_units,
    midnight,
    period_of,
    units_to_amount,
)
from billing.usage.models import UsageRecord
from portal import locks


def counter_key(budget_id: int, start: date) -> str:
    return f"budget:{budget_id}:{start:%Y%m%d}"


def _applies(budget: Budget, record: UsageRecord) -> bool:
    return ((budget.api_key_id is None or budget.api_key_id == record.api_key_id)
            and (budget.model_id is None or budget.model_id == record.model_id)
            and (budget.unit == BudgetUnit.TOKENS or record.currency == budget.currency))


def _units(budget: Budget, record: UsageRecord) -> int:
    if budget.unit == BudgetUnit.TOKENS:
        return record.input_tokens + record.output_tokens
    return int(record.cost * MONEY_SCALE)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def _expire_at(end: date) -> int:
    # Kept a month past the period, for the budget pages and late usage.
    return int((midnight(end) + timedelta(days=35)).timestamp())


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
        raise_alerts(by_id[budget_id], start, int(total), crossed_by=_crossing(
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
                                         created_at__gte=midnight(start),
                                         created_at__lt=midnight(end))
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
        raise_alerts(budget, period[0], consumed)
    return consumed


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
