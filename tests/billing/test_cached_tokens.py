"""Cached input and reasoning tokens: priced at the model's cached-input price, summed in the
rollups, shown in the dashboards, the usage API and statements (HTML, CSV, PDF), and sealed
without changing the seals of records stored before them."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pypdf import PdfReader

from audit.models import AuditEvent
from billing.models import StatementLine, UsageRecord
from billing.statements import selectors as statements
from billing.statements.exports import statement_csv, statement_pdf
from billing.statements.services import statement_close
from billing.usage.rollups import rollups_rebuild
from billing.usage.seals import canonical_line
from billing.usage.selectors import usage_seals_verify
from billing.usage.services import usage_records_ingest
from models_catalog.models import ModelPrice
from portal.dates import month_start
from tests.billing.budget_helpers import event, make_model

pytestmark = pytest.mark.django_db

LAST_MONTH = month_start(month_start(datetime.now(UTC).date()) - timedelta(days=1))


def cached_event(tenant, model, *, cached, reasoning=0, when=None, **extra):
    return event(tenant, model, when=when, **extra) | {"cached_input_tokens": cached,
                                                       "reasoning_tokens": reasoning}


@pytest.fixture
def model(db):
    model = make_model(price_in="2", price_out="8")
    ModelPrice.objects.filter(model=model).update(cached_input_per_million=Decimal("0.5"))
    return model


def test_cached_input_is_charged_at_the_cached_price(tenant, model):
    usage_records_ingest(events=[
        cached_event(tenant, model, input_tokens=1_000_000, output_tokens=100_000,
                     cached=600_000, reasoning=40_000),
        # From a gateway worker older than cached metering: no such fields.
        event(tenant, model, input_tokens=1_000_000, output_tokens=0)])
    cached, plain = UsageRecord.objects.order_by("-cached_input_tokens")
    assert (cached.cached_input_tokens, cached.reasoning_tokens) == (600_000, 40_000)
    # 400k uncached at 2, 600k cached at 0.5, 100k output at 8 (reasoning included).
    assert cached.cost == Decimal("0.8") + Decimal("0.3") + Decimal("0.8")
    assert cached.cached_input_price_per_million == Decimal("0.5")
    assert (plain.cached_input_tokens, plain.cost) == (0, Decimal(2))


def test_a_model_without_a_cached_price_charges_cached_input_as_input(tenant):
    model = make_model("plain-model", price_in="2", price_out="8")
    usage_records_ingest(events=[cached_event(tenant, model, input_tokens=1_000_000,
                                              output_tokens=0, cached=500_000)])
    record = UsageRecord.objects.get()
    assert record.cost == Decimal(2) and record.cached_input_price_per_million == Decimal(2)


def test_cached_counts_never_exceed_the_totals(tenant, model):
    usage_records_ingest(events=[cached_event(tenant, model, input_tokens=10, output_tokens=5,
                                              cached=50, reasoning=9)])
    record = UsageRecord.objects.get()
    assert (record.cached_input_tokens, record.reasoning_tokens) == (10, 5)


def test_dashboards_and_usage_api_show_cached_tokens(client, tenant, model, tenant_admin):
    usage_records_ingest(events=[
        cached_event(tenant, model, input_tokens=100, output_tokens=20, cached=60, reasoning=7),
        cached_event(tenant, model, input_tokens=50, output_tokens=10, cached=10)])
    client.force_login(tenant_admin)
    html = client.get(f"/t/{tenant.slug}/usage/").content.decode()
    assert "70 input cached · 7 reasoning" in html
    now = datetime.now(UTC)
    rows = client.get(f"/api/tenants/{tenant.slug}/usage/", {
        "since": (now - timedelta(days=1)).isoformat(),
        "until": (now + timedelta(days=1)).isoformat()}).json()
    assert [(r["input_tokens"], r["cached_input_tokens"], r["reasoning_tokens"])
            for r in rows] == [(150, 70, 7)]
    download = client.get(f"/t/{tenant.slug}/usage/", {"range": "7", "csv": "series"})
    series = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert [(r["cached_input_tokens"], r["reasoning_tokens"]) for r in series] == [("70", "7")]
    # A rebuild from the raw records gives the same sums.
    rollups_rebuild(since=now - timedelta(days=1), until=now)
    again = client.get(f"/api/tenants/{tenant.slug}/usage/", {
        "since": (now - timedelta(days=1)).isoformat(),
        "until": (now + timedelta(days=1)).isoformat()}).json()
    assert again == rows


def test_statements_show_cached_tokens_and_keep_them_when_closed(client, tenant, model,
                                                                 tenant_admin, msp_admin):
    when = datetime(LAST_MONTH.year, LAST_MONTH.month, 3, tzinfo=UTC)
    usage_records_ingest(events=[
        cached_event(tenant, model, input_tokens=1_000_000, output_tokens=0, cached=600_000,
                     reasoning=0, when=when),
        cached_event(tenant, model, input_tokens=1_000_000, output_tokens=0, cached=200_000,
                     when=when)])
    data = statements.statement_get(tenant=tenant, period_start=LAST_MONTH)
    [line] = data.lines
    assert (line.input_tokens, line.cached_input_tokens) == (2_000_000, 800_000)
    assert line.cached_input_price_per_million == Decimal("0.5")
    assert line.amount == Decimal("2.4") + Decimal("0.4")
    rows = list(csv.DictReader(io.StringIO(statement_csv(data))))
    assert rows[0]["cached_input_tokens"] == "800000"
    assert Decimal(rows[0]["cached_input_price_per_million"]) == Decimal("0.5")
    assert rows[-1]["kind"] == "total" and rows[-1]["cached_input_tokens"] == "800000"
    text = PdfReader(io.BytesIO(statement_pdf(data))).pages[0].extract_text()
    assert "of them cached" in text and "800000" in text
    client.force_login(tenant_admin)
    html = client.get(f"/t/{tenant.slug}/statements/{LAST_MONTH:%Y-%m}/").content.decode()
    assert 'data-figure="cached">800000<' in html

    statement_close(actor=msp_admin, tenant=tenant, period_start=LAST_MONTH)
    stored = StatementLine.objects.get()
    assert (stored.cached_input_tokens, stored.cached_input_price_per_million) == (
        800_000, Decimal("0.5"))
    closed = statements.statement_get(tenant=tenant, period_start=LAST_MONTH)
    assert closed.closed and closed.lines[0].cached_input_tokens == 800_000


def test_seals_of_records_without_cached_tokens_are_unchanged(tenant, model):
    usage_records_ingest(events=[event(tenant, model),
                                 cached_event(tenant, model, cached=300, reasoning=4)])
    plain, cached = UsageRecord.objects.order_by("cached_input_tokens")
    # A record with nothing cached hashes as records did before cached tokens existed...
    assert b"cached_input_tokens" not in canonical_line(plain)
    assert b'"cached_input_tokens":300' in canonical_line(cached)
    assert usage_seals_verify() == (1, [])
    # ...and an edited cached count breaks its batch's seal.
    UsageRecord.objects.filter(pk=cached.pk).update(cached_input_tokens=0)
    checked, problems = usage_seals_verify()
    assert checked == 1 and "altered" in problems[0].message
    assert AuditEvent.objects.filter(action="usage.batch_sealed").count() == 1


def test_the_price_api_sets_a_cached_input_price(client, msp_admin, model):
    client.force_login(msp_admin)
    answer = client.post(f"/api/models/{model.slug}/prices/", {
        "input_per_million": "3", "output_per_million": "15",
        "cached_input_per_million": "0.3", "currency": "EUR"}, content_type="application/json")
    assert answer.status_code == 201, answer.content
    assert Decimal(answer.json()["cached_input_per_million"]) == Decimal("0.3")
    event_details = AuditEvent.objects.filter(action="model.price_set").latest("seq").details
    assert Decimal(str(event_details["cached_input_per_million"])) == Decimal("0.3")
    page = client.get(f"/catalog/{model.slug}/").content.decode()
    assert 'data-figure="cached-price">0.3000 EUR<' in page
