import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from audit.models import AuditEvent
from billing.models import Statement
from billing.statements import selectors as statements
from billing.statements.exports import CSV_HEADER, statement_csv, statement_pdf
from billing.statements.services import statement_close, statements_close
from models_catalog.models import ModelPrice
from portal.api import ApplicationError
from tests.billing.budget_helpers import event, ingest, make_model

OCT = date(2026, 8, 1)


@pytest.fixture
def priced(db):
    chat = make_model("chat-small", price_in="2", price_out="6")
    # From 15 August on the price rises: August's requests before it keep the old one.
    ModelPrice.objects.create(model=chat, input_per_million=Decimal("4"),
                              output_per_million=Decimal("8"), currency="EUR",
                              effective_from=datetime(2026, 8, 15, tzinfo=UTC))
    embed = make_model("embed-usd", price_in="1", price_out="0", currency="USD")
    return chat, embed


def _october(tenant, chat, embed):
    ingest(event(tenant, chat, input_tokens=1_000_000, output_tokens=500_000,
                 when=datetime(2026, 8, 3, tzinfo=UTC)),  # 2 + 3 = 5 EUR
           event(tenant, chat, input_tokens=1_000_000, output_tokens=0,
                 when=datetime(2026, 8, 20, tzinfo=UTC)),  # 4 EUR at the new price
           event(tenant, embed, input_tokens=3_000_000, output_tokens=0,
                 when=datetime(2026, 8, 21, tzinfo=UTC)))  # 3 USD


def test_lines_per_model_and_price_with_totals_per_currency(tenant, priced):
    chat, embed = priced
    _october(tenant, chat, embed)
    data = statements.statement_get(tenant=tenant, period_start=OCT)
    lines = {(line.model_slug, line.input_price_per_million): line for line in data.lines}
    assert lines["chat-small", Decimal("2")].amount == Decimal("5")
    assert lines["chat-small", Decimal("4")].amount == Decimal("4")
    assert lines["embed-usd", Decimal("1")].amount == Decimal("3")
    assert [(t["currency"], t["amount"]) for t in data.totals] == [
        ("EUR", Decimal("9")), ("USD", Decimal("3"))]
    rows = list(csv.reader(io.StringIO(statement_csv(data))))
    assert rows[0] == CSV_HEADER
    totals = [row for row in rows if row[1] == "total"]
    assert [(row[4], Decimal(row[10])) for row in totals] == [("EUR", Decimal("9")),
                                                             ("USD", Decimal("3"))]
    text = PdfReader(io.BytesIO(statement_pdf(data))).pages[0].extract_text()
    assert "Statement August 2026" in text
    assert "9.00 EUR" in text and "3.00 USD" in text


def test_closed_statement_never_changes_and_late_usage_is_a_correction(tenant, priced,
                                                                       msp_admin):
    chat, embed = priced
    _october(tenant, chat, embed)
    closed = statements_close(actor=msp_admin, period_start=OCT)
    assert [s.tenant for s in closed] == [tenant]
    assert AuditEvent.objects.filter(action="billing.statement_close").count() == 1
    with pytest.raises(ApplicationError):
        statement_close(actor=msp_admin, tenant=tenant, period_start=OCT)
    before = statements.statement_get(tenant=tenant, period_start=OCT)

    # A record of August arrives after the close (a drain that was down).
    ingest(event(tenant, chat, input_tokens=500_000, output_tokens=0,
                 when=datetime(2026, 8, 30, tzinfo=UTC)))  # 2 EUR
    after = statements.statement_get(tenant=tenant, period_start=OCT)
    assert after.closed and after.totals == before.totals and after.lines == before.lines
    november = statements.statement_get(tenant=tenant, period_start=date(2026, 9, 1))
    corrections = [line for line in november.lines if line.kind == "correction"]
    assert len(corrections) == 1
    assert (corrections[0].source_period, corrections[0].amount, corrections[0].requests) == (
        OCT, Decimal("2"), 1)
    # Closing September stores the correction; October then owes nothing more for August.
    statement_close(actor=msp_admin, tenant=tenant, period_start=date(2026, 9, 1))
    october = statements.statement_get(tenant=tenant, period_start=date(2026, 10, 1))
    assert [line for line in october.lines if line.kind == "correction"] == []
    assert Statement.objects.count() == 2


def test_a_month_that_is_not_over_cannot_be_closed(tenant, msp_admin):
    with pytest.raises(ApplicationError, match="not over yet"):
        statement_close(actor=msp_admin, tenant=tenant,
                        period_start=datetime.now(UTC).date())
