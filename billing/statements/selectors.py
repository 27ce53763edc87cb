"""Monthly statements: a line per model and price in force, totals per currency.

An open month is computed from the usage records (each charged at the price in force when it
was served). Closing a month stores its lines; a closed statement never changes. Usage of a
closed month that arrives later is the difference between the records and what was stored:
it appears as correction lines in the first open month after it, and is stored with that
month when it closes.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Count, Sum

import audit
from billing.budgets.counters import month_start, next_month
from billing.budgets.models import LineKind, Statement, StatementLine
from billing.models import UsageRecord
from portal.api import ApplicationError
from portal.csvexport import csv_writer
from tenants.models import Tenant

GroupKey = tuple[str, str, Decimal | None, Decimal | None]  # model, currency, in, out price
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

    @property
    def key(self) -> GroupKey:
        return (self.model_slug, self.currency, self.input_price_per_million,
                self.output_price_per_million)


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
                                                    "requests": 0})
            total["amount"] += line.amount
            total["input_tokens"] += line.input_tokens
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
                    "output_price_per_million")
            .annotate(requests=Count("id"), input_tokens=Sum("input_tokens"),
                      output_tokens=Sum("output_tokens"), amount=Sum("cost")))
    lines = {}
    for row in rows:
        line = Line(LineKind.USAGE, period_start, row["model_slug"], row["currency"],
                    row["input_price_per_million"], row["output_price_per_million"],
                    row["requests"], row["input_tokens"] or 0, row["output_tokens"] or 0,
                    row["amount"] or Decimal(0))
        lines[line.key] = line
    return lines


def _stored(line: StatementLine) -> Line:
    return Line(line.kind, line.source_period, line.model_slug, line.currency,
                line.input_price_per_million, line.output_price_per_million, line.requests,
                line.input_tokens, line.output_tokens, line.amount)


def _corrections(tenant: Tenant, period_start: date, closed: set[date]) -> list[Line]:
    """Late usage of closed months whose first open month after them is `period_start`."""
    lines = []
    for source in sorted(d for d in closed if d < period_start):
        month = next_month(source)
        while month in closed:
            month = next_month(month)
        if month != period_start:
            continue
        accounted: dict[GroupKey, list[int | Decimal]] = defaultdict(lambda: [0, 0, 0, 0])
        for stored in StatementLine.objects.filter(statement__tenant=tenant,
                                                   source_period=source):
            line = _stored(stored)
            totals = accounted[line.key]
            totals[0] += line.requests
            totals[1] += line.input_tokens
            totals[2] += line.output_tokens
            totals[3] += line.amount
        for key, actual in _usage_groups(tenant, source).items():
            requests, input_tokens, output_tokens, amount = accounted.get(key, [0, 0, 0, 0])
            if actual.requests == requests and actual.amount == amount:
                continue
            lines.append(Line(LineKind.CORRECTION, source, *key, actual.requests - requests,
                              actual.input_tokens - input_tokens,
                              actual.output_tokens - output_tokens, actual.amount - amount))
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


@transaction.atomic
def statement_close(*, actor, tenant: Tenant, period_start: date) -> Statement:
    period_start = month_start(period_start)
    if next_month(period_start) > datetime.now(UTC).date():
        raise ApplicationError(f"{period_start:%B %Y} is not over yet; close it from "
                               f"{next_month(period_start):%d %B %Y} on.")
    # One closer at a time per tenant (a second one then finds the statement closed).
    Tenant.objects.select_for_update().get(pk=tenant.pk)
    if Statement.objects.filter(tenant=tenant, period_start=period_start).exists():
        raise ApplicationError(f"{tenant.name}'s statement for {period_start:%B %Y} is "
                               "already closed; it never changes.")
    data = statement_get(tenant=tenant, period_start=period_start)
    statement = Statement.objects.create(
        tenant=tenant, period_start=period_start, closed_at=datetime.now(UTC),
        closed_by=getattr(actor, "audit_label", str(actor)))
    StatementLine.objects.bulk_create([StatementLine(
        statement=statement, kind=line.kind, source_period=line.source_period,
        model_slug=line.model_slug, currency=line.currency,
        input_price_per_million=line.input_price_per_million,
        output_price_per_million=line.output_price_per_million, requests=line.requests,
        input_tokens=line.input_tokens, output_tokens=line.output_tokens, amount=line.amount)
        for line in data.lines])
    audit.record(action="billing.statement_close", actor=actor, tenant=tenant, target=statement,
                 details={"period": f"{period_start:%Y-%m}", "lines": len(data.lines),
                          "corrections": sum(1 for line in data.lines
                                             if line.kind == LineKind.CORRECTION),
                          "totals": {t["currency"] or "unpriced": str(t["amount"])
                                     for t in data.totals}})
    return statement


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


def statements_close(*, actor, period_start: date) -> list[Statement]:
    """Close the month for every tenant that has usage in it or corrections due."""
    return [statement_close(actor=actor, tenant=data.tenant, period_start=data.period_start)
            for data in statements_pending(period_start=period_start)]


# --- downloads ------------------------------------------------------------------------

CSV_HEADER = ["period", "kind", "usage_month", "model", "currency", "input_price_per_million",
              "output_price_per_million", "requests", "input_tokens", "output_tokens", "amount"]


def statement_csv(data: StatementData) -> str:
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writerow(CSV_HEADER)
    period = f"{data.period_start:%Y-%m}"
    for line in data.lines:
        writer.writerow([period, line.kind, f"{line.source_period:%Y-%m}", line.model_slug,
                         line.currency, line.input_price_per_million or "",
                         line.output_price_per_million or "", line.requests, line.input_tokens,
                         line.output_tokens, line.amount])
    for total in data.totals:
        writer.writerow([period, "total", "", "", total["currency"], "", "", total["requests"],
                         total["input_tokens"], total["output_tokens"], total["amount"]])
    return out.getvalue()


def statement_pdf(data: StatementData) -> bytes:
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    from audit.reports.pdf import BODY, H2, SMALL, TITLE, _grid

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=landscape(A4), leftMargin=15 * mm,
                            rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
                            title=f"Statement {data.period_start:%Y-%m} {data.tenant.slug}")
    state = (f"Closed {data.closed_at:%d %b %Y %H:%M} UTC by {data.closed_by}" if data.closed
             else "Open: figures may still change until the month is closed")
    story = [Paragraph(f"Statement {data.period_start:%B %Y}", TITLE),
             Paragraph(f"{data.tenant.name} ({data.tenant.slug}) · {state}", SMALL),
             Spacer(1, 4 * mm), Paragraph("Lines", H2)]
    rows = [["Kind", "Usage month", "Model", "Input price / 1M", "Output price / 1M",
             "Requests", "Input tokens", "Output tokens", "Amount"]]
    for line in data.lines:
        rows.append([line.kind, f"{line.source_period:%Y-%m}", line.model_slug,
                     _price(line.input_price_per_million, line.currency),
                     _price(line.output_price_per_million, line.currency), line.requests,
                     line.input_tokens, line.output_tokens,
                     f"{money(line.amount)} {line.currency}".strip()])
    if len(rows) == 1:
        rows.append(["No usage in this month."] + [""] * 8)
    story.append(_grid(rows))
    story += [Paragraph("Totals", H2)]
    total_rows = [["Currency", "Requests", "Input tokens", "Output tokens", "Amount"]]
    for total in data.totals:
        total_rows.append([total["currency"] or "unpriced", total["requests"],
                           total["input_tokens"], total["output_tokens"],
                           f"{money(total['amount'])} {total['currency']}".strip()])
    story.append(_grid(total_rows))
    story += [Spacer(1, 4 * mm), Paragraph(
        "Each request is charged at the price in force when it was served. Amounts are rounded "
        "to the cent for display; the CSV download holds the exact figures.", BODY)]
    doc.build(story)
    return buffer.getvalue()


def _price(value: Decimal | None, currency: str) -> str:
    return "unpriced" if value is None else f"{value.normalize():f} {currency}"
