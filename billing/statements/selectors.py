"""Monthly statements as they read: a line per model and price in force, totals per currency.

An open month is computed from the usage records (each charged at the price in force when it
was served). Closing a month stores its lines; a closed statement never changes. Usage of a
closed month that arrives later is the difference between the records and what was stored:
it appears as correction lines in the first open month after it, and is stored with that
month when it closes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, QuerySet, Sum
from django.http import Http404

from billing.statements.models import LineKind, Statement, StatementLine
from billing.usage.models import UsageRecord
from portal.dates import month_start, next_month, parse_month
from tenants.models import Tenant

# model, currency, input, output and cached-input price
GroupKey = tuple[str, str, Decimal | None, Decimal | None, Decimal | None]
CENT = Decimal("0.01")


@dataclass
class Line:
    kind: str
    source_period: date
    model_slug: str
    currency: str
    input_price_per_million: Decimal | None
    output_price_per_million: Decimal | None
    requests: int
    input_tokens: int
    output_tokens: int
    amount: Decimal
    cached_input_price_per_million: Decimal | None = None
    cached_input_tokens: int = 0  # of the input tokens
    reasoning_tokens: int = 0  # of the output tokens

    @property
    def key(self) -> GroupKey:
        return (self.model_slug, self.currency, self.input_price_per_million,
                self.output_price_per_million, self.cached_input_price_per_million)


@dataclass
class StatementData:
    tenant: Tenant
    period_start: date
    closed: bool
    closed_at: datetime | None = None
    closed_by: str = ""
    lines: list[Line] = field(default_factory=list)

    @property
    def period_end(self) -> date:
        return next_month(self.period_start)

    @property
    def totals(self) -> list[dict]:
        """One total per currency (unpriced usage has none)."""
        sums: dict[str, dict] = {}
        for line in self.lines:
            total = sums.setdefault(line.currency, {"currency": line.currency, "amount": Decimal(0),
                                                    "input_tokens": 0, "output_tokens": 0,
                                                    "cached_input_tokens": 0,
                                                    "reasoning_tokens": 0, "requests": 0})
            total["amount"] += line.amount
            total["input_tokens"] += line.input_tokens
            total["cached_input_tokens"] += line.cached_input_tokens
            total["reasoning_tokens"] += line.reasoning_tokens
            total["output_tokens"] += line.output_tokens
            total["requests"] += line.requests
        return [sums[c] for c in sorted(sums, key=lambda c: (c == "", c))]

    @property
    def is_current(self) -> bool:
        return self.period_start == month_start(datetime.now(UTC).date())


def money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _usage_groups(tenant: Tenant, period_start: date) -> dict[GroupKey, Line]:
    rows = (UsageRecord.objects.filter(tenant=tenant, created_at__gte=_start(period_start),
                                       created_at__lt=_start(next_month(period_start)))
            .values("model_slug", "currency", "input_price_per_million",
                    "output_price_per_million", "cached_input_price_per_million")
            .annotate(requests=Count("id"), input_tokens=Sum("input_tokens"),
                      output_tokens=Sum("output_tokens"),
                      cached_input_tokens=Sum("cached_input_tokens"),
                      reasoning_tokens=Sum("reasoning_tokens"), amount=Sum("cost")))
    lines = {}
    for row in rows:
        line = Line(LineKind.USAGE, period_start, row["model_slug"], row["currency"],
                    row["input_price_per_million"], row["output_price_per_million"],
                    row["requests"], row["input_tokens"] or 0, row["output_tokens"] or 0,
                    row["amount"] or Decimal(0), row["cached_input_price_per_million"],
                    row["cached_input_tokens"] or 0, row["reasoning_tokens"] or 0)
        lines[line.key] = line
    return lines


def _stored(line: StatementLine) -> Line:
    return Line(line.kind, line.source_period, line.model_slug, line.currency,
                line.input_price_per_million, line.output_price_per_million, line.requests,
                line.input_tokens, line.output_tokens, line.amount,
                line.cached_input_price_per_million, line.cached_input_tokens,
                line.reasoning_tokens)


def _corrections(tenant: Tenant, period_start: date, closed: set[date]) -> list[Line]:
    """Late usage of closed months whose first open month after them is `period_start`."""
    lines = []
    for source in sorted(d for d in closed if d < period_start):
        month = next_month(source)
        while month in closed:
            month = next_month(month)
        if month != period_start:
            continue
        accounted: dict[GroupKey, list[int | Decimal]] = defaultdict(lambda: [0] * 6)
        for stored in StatementLine.objects.filter(statement__tenant=tenant,
                                                   source_period=source):
            line = _stored(stored)
            totals = accounted[line.key]
            totals[0] += line.requests
            totals[1] += line.input_tokens
            totals[2] += line.output_tokens
            totals[3] += line.amount
            totals[4] += line.cached_input_tokens
            totals[5] += line.reasoning_tokens
        for key, actual in _usage_groups(tenant, source).items():
            requests, input_tokens, output_tokens, amount, cached, reasoning = accounted.get(
                key, [0] * 6)
            if actual.requests == requests and actual.amount == amount:
                continue
            model_slug, currency, input_price, output_price, cached_price = key
            lines.append(Line(LineKind.CORRECTION, source, model_slug, currency, input_price,
                              output_price, actual.requests - requests,
                              actual.input_tokens - input_tokens,
                              actual.output_tokens - output_tokens, actual.amount - amount,
                              cached_price, actual.cached_input_tokens - cached,
                              actual.reasoning_tokens - reasoning))
    return lines


def _closed_months(tenant: Tenant) -> set[date]:
    return set(Statement.objects.filter(tenant=tenant).values_list("period_start", flat=True))


def statement_get(*, tenant: Tenant, period_start: date) -> StatementData:
    period_start = month_start(period_start)
    stored = (Statement.objects.filter(tenant=tenant, period_start=period_start)
              .prefetch_related("lines").first())
    if stored is not None:
        return StatementData(tenant, period_start, True, stored.closed_at, stored.closed_by,
                             [_stored(line) for line in stored.lines.all()])
    lines = sorted(_usage_groups(tenant, period_start).values(),
                   key=lambda line: (line.model_slug, line.currency, line.input_price_per_million
                                     or 0))
    lines += _corrections(tenant, period_start, _closed_months(tenant))
    return StatementData(tenant, period_start, False, lines=lines)


def statement_months(*, tenant: Tenant) -> list[date]:
    """Months with a statement: from the first usage (or closed statement) to now, newest
    first."""
    current = month_start(datetime.now(UTC).date())
    first = UsageRecord.objects.filter(tenant=tenant).order_by("created_at").values_list(
        "created_at", flat=True).first()
    candidates = [current]
    if first is not None:
        candidates.append(month_start(first.astimezone(UTC).date()))
    candidates += list(_closed_months(tenant))
    month, months = min(candidates), []
    while month <= current:
        months.append(month)
        month = next_month(month)
    return months[::-1]


def statement_list(*, tenant: Tenant) -> list[StatementData]:
    return [statement_get(tenant=tenant, period_start=m) for m in statement_months(tenant=tenant)]


def statements_pending(*, period_start: date) -> list[StatementData]:
    """The month's statements not closed yet, of every tenant with lines (the MSP's preview)."""
    period_start = month_start(period_start)
    closed = set(Statement.objects.filter(period_start=period_start)
                 .values_list("tenant_id", flat=True))
    pending = []
    for tenant in Tenant.objects.exclude(pk__in=closed).order_by("name"):
        data = statement_get(tenant=tenant, period_start=period_start)
        if data.lines:
            pending.append(data)
    return pending


def statement_overview() -> QuerySet[Statement]:
    """Closed statements of every tenant, newest month first (the MSP's page)."""
    return Statement.objects.select_related("tenant").order_by("-period_start",
                                                               "tenant__name")[:200]


def statement_month(value: str) -> date:
    """The month a statement URL names (`YYYY-MM`); 404 when it is none or in the future."""
    try:
        month = parse_month(value)
    except ValueError:
        raise Http404("No such month.") from None
    if month > month_start(datetime.now(UTC).date()):
        raise Http404("No statement for a future month.")
    return month
