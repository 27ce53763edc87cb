"""A budget's periods and units: which days a period covers, and a budget's amounts in the
units its counter holds (money in units of 1e-8, `UsageRecord.cost`'s precision, or tokens)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from billing.budgets.models import Budget, BudgetPeriod, BudgetUnit
from portal.dates import month_start, next_month

MONEY_SCALE = 10**8  # counters hold money in units of 1e-8, UsageRecord.cost's precision


def period_of(budget: Budget, when: datetime) -> tuple[date, date] | None:
    """The budget's period containing `when` as [start, end) dates, or None outside it."""
    day = when.astimezone(UTC).date()
    if budget.period == BudgetPeriod.MONTHLY:
        start = month_start(day)
        return start, next_month(start)
    if budget.period_start <= day <= budget.period_end:
        return budget.period_start, budget.period_end + timedelta(days=1)
    return None


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def limit_units(budget: Budget) -> int:
    if budget.unit == BudgetUnit.TOKENS:
        return int(budget.amount)
    return int(budget.amount * MONEY_SCALE)


def units_to_amount(budget: Budget, units: int) -> Decimal:
    if budget.unit == BudgetUnit.TOKENS:
        return Decimal(units)
    return Decimal(units) / MONEY_SCALE
