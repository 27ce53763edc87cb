"""Billing's interface for the gateway: the budgets that block requests, as each gateway worker
caches them (reloaded with its configuration), and the Redis counter each one reads.

The gateway compares these counters (kept by `billing.budgets.counters`) with the rules'
limits: one MGET, no database query per request.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from billing.budgets.models import Budget, BudgetAction, BudgetPeriod
from billing.budgets.periods import limit_units, midnight


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
        """`billing.budgets.counters.counter_key` of the period containing `now`, without a
        date object on the hot path."""
        if self.monthly:
            moment = time.gmtime(now)
            return f"budget:{self.id}:{moment.tm_year:04d}{moment.tm_mon:02d}01"
        if self.start <= now < self.end:
            return f"budget:{self.id}:{time.strftime('%Y%m%d', time.gmtime(self.start))}"
        return None


def gateway_budget_rules() -> dict[int, list[BudgetRule]]:
    """tenant id → its blocking budgets (called by gateway workers on a configuration reload;
    one query)."""
    rules: dict[int, list[BudgetRule]] = defaultdict(list)
    for budget in Budget.objects.filter(action=BudgetAction.BLOCK):
        monthly = budget.period == BudgetPeriod.MONTHLY
        rules[budget.tenant_id].append(BudgetRule(
            id=budget.pk, name=budget.name, tenant_id=budget.tenant_id,
            api_key_id=budget.api_key_id,
            model_id=budget.model_id, monthly=monthly,
            start=0.0 if monthly else midnight(budget.period_start).timestamp(),
            end=0.0 if monthly else midnight(budget.period_end + timedelta(days=1)).timestamp(),
            limit=limit_units(budget)))
    return dict(rules)
