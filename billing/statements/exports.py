"""A statement as CSV (exact amounts) and as PDF (rounded to the cent)."""

from __future__ import annotations

import io
from decimal import Decimal

from billing.statements.selectors import StatementData, money
from portal.csvexport import csv_writer

# Columns added later come last, so readers that go by position keep working.
CSV_HEADER = ["period", "kind", "usage_month", "model", "currency", "input_price_per_million",
              "output_price_per_million", "requests", "input_tokens", "output_tokens", "amount",
              "cached_input_price_per_million", "cached_input_tokens", "reasoning_tokens"]


def statement_csv(data: StatementData) -> str:
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writerow(CSV_HEADER)
    period = f"{data.period_start:%Y-%m}"
    for line in data.lines:
        writer.writerow([period, line.kind, f"{line.source_period:%Y-%m}", line.model_slug,
                         line.currency, line.input_price_per_million or "",
                         line.output_price_per_million or "", line.requests, line.input_tokens,
                         line.output_tokens, line.amount,
                         _or_blank(line.cached_input_price_per_million),
                         line.cached_input_tokens, line.reasoning_tokens])
    for total in data.totals:
        writer.writerow([period, "total", "", "", total["currency"], "", "", total["requests"],
                         total["input_tokens"], total["output_tokens"], total["amount"], "",
                         total["cached_input_tokens"], total["reasoning_tokens"]])
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
    rows = [["Kind", "Usage month", "Model", "Input price / 1M", "Cached input / 1M",
             "Output price / 1M", "Requests", "Input tokens", "of them cached", "Output tokens",
             "Amount"]]
    for line in data.lines:
        rows.append([line.kind, f"{line.source_period:%Y-%m}", line.model_slug,
                     _price(line.input_price_per_million, line.currency),
                     _price(line.cached_input_price_per_million or line.input_price_per_million,
                            line.currency),
                     _price(line.output_price_per_million, line.currency), line.requests,
                     line.input_tokens, line.cached_input_tokens, line.output_tokens,
                     f"{money(line.amount)} {line.currency}".strip()])
    if len(rows) == 1:
        rows.append(["No usage in this month."] + [""] * 10)
    story.append(_grid(rows))
    story += [Paragraph("Totals", H2)]
    total_rows = [["Currency", "Requests", "Input tokens", "of them cached", "Output tokens",
                   "Amount"]]
    for total in data.totals:
        total_rows.append([total["currency"] or "unpriced", total["requests"],
                           total["input_tokens"], total["cached_input_tokens"],
                           total["output_tokens"],
                           f"{money(total['amount'])} {total['currency']}".strip()])
    story.append(_grid(total_rows))
    story += [Spacer(1, 4 * mm), Paragraph(
        "Each request is charged at the price in force when it was served; input tokens the "
        "model server read from its cache at the cached-input price. Amounts are rounded "
        "to the cent for display; the CSV download holds the exact figures.", BODY)]
    doc.build(story)
    return buffer.getvalue()


def _or_blank(value: Decimal | None) -> Decimal | str:
    return "" if value is None else value


def _price(value: Decimal | None, currency: str) -> str:
    return "unpriced" if value is None else f"{value.normalize():f} {currency}"
