"""Billing's interface for the gateway: every budget, as each gateway worker caches it
(reloaded with its configuration), and the Redis counter each one reads.

The gateway compares these counters (kept by `billing.budgets.counters`) with the limits of
the budgets that block, and reports what is left of all of them (`x-budget-*` headers,
`GET /v1/quota`): one MGET, no database query per request.
"""

from __future__ import annotations

import calendar
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from billing.budgets.models import Budget, BudgetAction, BudgetPeriod, BudgetUnit
from billing.budgets.periods import MONEY_SCALE, limit_units, midnight

__all__ = ["MONEY_SCALE", "BudgetRule", "gateway_budget_rules"]


@dataclass(frozen=True)
class BudgetRule:
    """A budget as a gateway worker caches it. `limit` is in counter units: tokens, or money
    in 1e-8 of `currency` (`billing.budgets.periods.MONEY_SCALE`)."""

    id: int
    name: str
    tenant_id: int
    api_key_id: int | None
    model_id: int | None
    monthly: bool
    start: float  # custom periods: [start, end) as epoch seconds
    end: float
    limit: int
    blocks: bool = True
    unit: str = BudgetUnit.TOKENS
    currency: str = ""

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

    def period_end(self, now: float) -> float:
        """When the period containing `now` ends (epoch seconds): its counter starts again."""
        if not self.monthly:
            return self.end
        moment = time.gmtime(now)
        year, month = (moment.tm_year + 1, 1) if moment.tm_mon == 12 else (
            moment.tm_year, moment.tm_mon + 1)
        return calendar.timegm((year, month, 1, 0, 0, 0))


def gateway_budget_rules(*, tenant_id: int | None = None) -> dict[int, list[BudgetRule]]:
    """tenant id → its budgets (called by gateway workers on a configuration reload, and by the
    portal's quota figures for one tenant; one query)."""
    rules: dict[int, list[BudgetRule]] = defaultdict(list)
    budgets = Budget.objects.all() if tenant_id is None else Budget.objects.filter(
        tenant_id=tenant_id)
    for budget in budgets.order_by("pk"):
        monthly = budget.period == BudgetPeriod.MONTHLY
        rules[budget.tenant_id].append(BudgetRule(
            id=budget.pk, name=budget.name, tenant_id=budget.tenant_id,
            api_key_id=budget.api_key_id,
            model_id=budget.model_id, monthly=monthly,
            start=0.0 if monthly else midnight(budget.period_start).timestamp(),
            end=0.0 if monthly else midnight(budget.period_end + timedelta(days=1)).timestamp(),
            limit=limit_units(budget), blocks=budget.action == BudgetAction.BLOCK,
            unit=budget.unit, currency=budget.currency))
    return dict(rules)
