import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.budgets import services as budgets
from billing.models import Budget, Statement
from portal import dates
from tests.billing.budget_helpers import event, ingest, make_model


def _post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_budget_crud_over_the_api(client, tenant, tenant_admin):
    chat = make_model()
    client.force_login(tenant_admin)
    created = _post(client, f"/api/tenants/{tenant.slug}/budgets/", {
        "name": "Chat tokens", "unit": "tokens", "amount": "100000", "model": chat.slug,
        "action": "block", "thresholds": [80, 100]})
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["model"], body["action"], body["thresholds"], body["percent"]) == (
        "chat-small", "block", [80, 100], 0)
    url = f"/api/tenants/{tenant.slug}/budgets/{body['id']}/"
    patched = client.patch(url, data=json.dumps({"amount": "200000"}),
                           content_type="application/json")
    assert patched.status_code == 200 and patched.json()["amount"] == "200000.00"
    assert client.get(f"/api/tenants/{tenant.slug}/budgets/").json()[0]["id"] == body["id"]
    assert client.delete(url).status_code == 204
    assert not Budget.objects.exists()


@pytest.mark.parametrize("body,field", [
    ({"name": "x", "amount": "-1", "currency": "EUR"}, "amount"),
    ({"name": "x", "amount": "99999999999", "currency": "EUR"}, "amount"),
    ({"name": "x", "amount": "10", "currency": "EUR", "thresholds": [120]}, "thresholds"),
    ({"name": "x", "amount": "10"}, "currency"),
    ({"name": "x", "amount": "10", "currency": "EUR", "model": "nope"}, "model"),
    ({"name": "x", "amount": "10", "currency": "EUR", "period": "custom"}, "period_start"),
])
def test_bad_budgets_get_400_with_field_errors(client, tenant, tenant_admin, body, field):
    client.force_login(tenant_admin)
    response = _post(client, f"/api/tenants/{tenant.slug}/budgets/", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_another_tenants_budget_is_a_404(client, tenant, other_tenant, tenant_admin, outsider):
    theirs = budgets.budget_create(actor=outsider, tenant=other_tenant, name="Theirs",
                                   amount=Decimal(10), currency="EUR")
    client.force_login(tenant_admin)
    assert client.get(f"/api/tenants/{tenant.slug}/budgets/{theirs.pk}/").status_code == 404
    assert client.get(f"/t/{tenant.slug}/budgets/{theirs.pk}/edit/").status_code == 404
    assert client.post(f"/t/{tenant.slug}/budgets/{theirs.pk}/delete/").status_code == 404
    assert Budget.objects.filter(pk=theirs.pk).exists()


def test_budget_form_shows_clear_errors(client, tenant, tenant_admin):
    client.force_login(tenant_admin)
    response = client.post(f"/t/{tenant.slug}/budgets/new/", {
        "name": "Bad", "unit": "currency", "amount": "10", "currency": "", "period": "custom",
        "thresholds": "50, abc", "action": "block"})
    assert response.status_code == 422
    page = response.content.decode()
    assert "Use whole percentages" in page
    assert not Budget.objects.exists()


def test_statements_api_and_downloads(client, tenant, tenant_admin, msp_admin):
    chat = make_model()
    ingest(event(tenant, chat, input_tokens=1_000_000, output_tokens=1_000_000))  # 8 EUR
    month = f"{datetime.now(UTC):%Y-%m}"
    client.force_login(tenant_admin)
    listed = client.get(f"/api/tenants/{tenant.slug}/statements/").json()
    assert listed[0]["month"] == month and listed[0]["totals"][0]["amount"] == "8.00000000"
    detail = client.get(f"/api/tenants/{tenant.slug}/statements/{month}/").json()
    assert detail["lines"][0]["model"] == "chat-small" and detail["closed"] is False
    csv_text = client.get(f"/api/tenants/{tenant.slug}/statements/{month}.csv").content.decode()
    assert "chat-small" in csv_text and "8.00000000" in csv_text
    pdf = client.get(f"/t/{tenant.slug}/statements/{month}.pdf")
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert client.get(f"/t/{tenant.slug}/statements/2999-01/").status_code == 404


def test_msp_closes_last_month_from_the_page_and_the_command(client, tenant, msp_admin):
    chat = make_model()
    today = datetime.now(UTC).date()
    last = dates.month_start(today.replace(day=1) - timedelta(days=1))
    ingest(event(tenant, chat, when=datetime(last.year, last.month, 2, tzinfo=UTC)))
    client.force_login(msp_admin)
    preview = client.get("/msp/statements/").content.decode()
    assert "not closed yet" in preview and tenant.name in preview and "0.01 EUR" in preview
    this_month = client.post("/msp/statements/close/", {"month": f"{today:%Y-%m}"}, follow=True)
    assert "is not over yet" in this_month.content.decode()
    closed = client.post("/msp/statements/close/", {"month": f"{last:%Y-%m}"}, follow=True)
    assert "1 statement(s) stored" in closed.content.decode()
    assert Statement.objects.get().period_start == last
    call_command("statements_close", "--month", f"{last:%Y-%m}")  # nothing more to close
    assert Statement.objects.count() == 1


def test_openapi_schema_lists_the_endpoints(client, tenant_admin):
    client.force_login(tenant_admin)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    for path in ("/api/tenants/{slug}/budgets/", "/api/tenants/{slug}/budget-alerts/",
                 "/api/tenants/{slug}/statements/"):
        assert path in paths, sorted(paths)
    assert {"get", "patch", "delete"} <= set(next(
        v for p, v in paths.items() if p.startswith("/api/tenants/{slug}/budgets/{")))
    assert sum(1 for p in paths if "statements" in p and "month" in p) == 2


def test_budget_table_refreshes_itself_with_htmx(client, tenant, viewer):
    budgets.budget_create(actor="system:test", tenant=tenant, name="Monthly",
                          amount=Decimal(10), currency="EUR")
    client.force_login(viewer)
    page = client.get(f"/t/{tenant.slug}/budgets/").content.decode()
    assert 'hx-trigger="every 30s"' in page and "New budget" not in page  # viewers read only
    partial = client.get(f"/t/{tenant.slug}/budgets/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="budget-table"' in partial and "<html" not in partial and "Monthly" in partial
