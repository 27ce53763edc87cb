"""Dates near the end of the calendar (9999-12-30) or before it starts (year 0) are well-formed
but make "the next day" or "the next month" overflow: every date, month and range the portal
takes — usage, budgets, statements, API keys, prices, the audit explorer, compliance reports,
and the commands — answers them with a 4xx (or a command error) that says which dates work."""

import json

import pytest
from django.core.management import CommandError, call_command

from billing.budgets import gateway as budgets
from billing.models import Budget
from gateway.models import ApiKey
from portal.dates import OUT_OF_RANGE

pytestmark = pytest.mark.django_db

FAR = {"range": "custom", "since": "9999-12-30", "until": "9999-12-31"}


def _json(client, method, url, body):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("person,url", [("tenant_admin", "/t/acme/usage/"),
                                        ("msp_admin", "/msp/usage/")])
def test_usage_pages_refuse_a_range_at_the_end_of_the_calendar(client, request, tenant, person,
                                                               url):
    client.force_login(request.getfixturevalue(person))
    for params in (FAR, {**FAR, "csv": "series"},
                   {"range": "custom", "since": "0001-01-01", "until": "0001-01-02"}):
        response = client.get(url, params)
        assert response.status_code == 422
        assert OUT_OF_RANGE in response.content.decode()


@pytest.mark.parametrize("url", ["/api/tenants/acme/usage/", "/api/usage/"])
@pytest.mark.parametrize("since,until", [
    ("9999-12-30", "9999-12-31"),
    ("9999-12-30T00:00:00Z", "9999-12-31T23:59:59Z"),
    ("9999-12-30T00:00:00-05:00", "9999-12-31T23:00:00-05:00"),
    ("0001-01-01T00:00:00+05:00", "0001-01-02T00:00:00Z"),
])
def test_usage_api_refuses_a_range_at_the_end_of_the_calendar(client, tenant, msp_admin, url,
                                                              since, until):
    client.force_login(msp_admin)
    response = client.get(url, {"since": since, "until": until})
    assert response.status_code == 400
    assert set(response.json()["errors"]) & {"since", "until"}


def test_statements_refuse_months_outside_the_calendar(client, tenant, tenant_admin, msp_admin):
    client.force_login(tenant_admin)
    for month in ("9999-12", "0001-01", "1999-12"):
        assert client.get(f"/t/{tenant.slug}/statements/{month}/").status_code == 404
        assert client.get(f"/api/tenants/{tenant.slug}/statements/{month}/").status_code == 404
    client.force_login(msp_admin)
    page = client.post("/msp/statements/close/", {"month": "9999-12"}, follow=True)
    assert page.status_code == 200
    assert "Use a month from 2000-01 to 2999-12" in page.content.decode()
    with pytest.raises(CommandError, match="2000-01 to 2999-12"):
        call_command("statements_close", "--month", "9999-12")


def test_rollup_rebuild_refuses_days_outside_the_calendar():
    with pytest.raises(CommandError, match="2000-01-01 to 2999-12-31"):
        call_command("usage_rollups_rebuild", "--since", "9999-12-30", "--until", "9999-12-31")


def test_budgets_refuse_a_custom_period_at_the_end_of_the_calendar(client, tenant,
                                                                   tenant_admin):
    client.force_login(tenant_admin)
    page = client.post(f"/t/{tenant.slug}/budgets/new/", {
        "name": "Forever", "unit": "currency", "amount": "10", "currency": "EUR",
        "period": "custom", "period_start": "9999-12-01", "period_end": "9999-12-31",
        "thresholds": "50", "action": "block"})
    assert page.status_code == 422 and OUT_OF_RANGE in page.content.decode()
    api = _json(client, "post", f"/api/tenants/{tenant.slug}/budgets/", {
        "name": "Forever", "amount": "10", "currency": "EUR", "period": "custom",
        "period_start": "9999-12-01", "period_end": "9999-12-31", "action": "block"})
    assert api.status_code == 400 and api.json()["errors"]["period_end"] == [OUT_OF_RANGE]
    assert not Budget.objects.exists()
    # The gateway's reload of blocking budgets would have overflowed on such a budget.
    assert budgets.gateway_budget_rules() == {}


def test_api_keys_refuse_expiry_at_the_end_of_the_calendar(client, tenant, tenant_admin):
    client.force_login(tenant_admin)
    page = client.post(f"/t/{tenant.slug}/keys/new/", {"name": "far", "expires_on": "9999-12-31"})
    assert page.status_code == 422 and OUT_OF_RANGE in page.content.decode()
    api = _json(client, "post", f"/api/tenants/{tenant.slug}/keys/",
                {"name": "far", "expires_at": "9999-12-31T23:59:59Z"})
    assert api.status_code == 400 and "expires_at" in api.json()["errors"]
    assert not ApiKey.objects.exists()


def test_prices_refuse_a_start_at_the_end_of_the_calendar(client, msp_admin):
    from models_catalog import services as catalog_services

    model = catalog_services.model_create(actor=msp_admin, slug="chat-far", name="Far",
                                          task="chat")
    client.force_login(msp_admin)
    api = _json(client, "post", f"/api/models/{model.slug}/prices/", {
        "input_per_million": "1", "output_per_million": "1", "currency": "EUR",
        "effective_from": "9999-12-31T23:59:59Z"})
    assert api.status_code == 400 and "effective_from" in api.json()["errors"]
    assert not model.prices.exists()


def test_audit_explorer_refuses_times_outside_the_calendar(client, compliance_officer):
    client.force_login(compliance_officer)
    api = client.get("/api/audit/events/", {"since": "9999-12-31T23:59:59"})
    assert api.status_code == 400
    export = client.get("/audit/export.csv", {"until": "0001-01-01T00:00:00"})
    assert export.status_code == 400 and OUT_OF_RANGE in export.content.decode()
    page = client.get("/audit/", {"since": "9999-12-31T23:59:59"})
    assert OUT_OF_RANGE in page.content.decode()


@pytest.mark.parametrize("period", ["9999-12", "9999-W52", "9999-12-31",
                                    "9999-12-30..9999-12-31", "0000-01", "0000-W01"])
def test_compliance_reports_refuse_periods_outside_the_calendar(client, compliance_officer,
                                                                period):
    client.force_login(compliance_officer)
    page = client.post("/compliance/reports/new/", {"period": period})
    assert page.status_code == 400
    with pytest.raises(CommandError, match="2000-01-01 to 2999-12-31|no ISO week"):
        call_command("report_generate", "--period", period, "--out", "/nonexistent")
