"""What a new operator meets first: pages that say what to do next, no blank error pages,
secrets that are never sent back, readable numbers."""

from decimal import Decimal

import pytest

from billing.budgets import services as budget_services
from deployments import services as deployment_services
from tenants.models import TenantStatus


def test_opening_a_form_only_address_gives_a_page_that_leads_on(client, tenant_admin, tenant):
    client.force_login(tenant_admin)
    response = client.get(f"/t/{tenant.slug}/budgets/new/", HTTP_ACCEPT="text/html")
    assert response.status_code == 405 and response["Allow"] == "POST"
    page = response.content.decode()
    assert "only takes a form submission" in page
    assert f'href="/t/{tenant.slug}/budgets/"' in page
    # The API keeps its own 405 answer.
    api = client.get("/api/deployments/1/check/", HTTP_ACCEPT="text/html")
    assert api.status_code in (403, 405) and "form submission" not in api.content.decode()


def test_the_wizard_says_how_to_get_a_deployable_version(client, msp_admin):
    client.force_login(msp_admin)
    page = client.get("/msp/deployments/new/").content.decode()
    assert 'data-testid="no-versions"' in page
    assert 'href="/catalog/upload/"' in page and 'href="/msp/deployments/external/new/"' in page


def test_a_cluster_outside_policy_names_the_setting_and_offers_no_deploy(client, msp_admin,
                                                                         settings):
    settings.ALLOWED_JURISDICTIONS = []
    cluster = deployment_services.cluster_create(
        actor=msp_admin, name="fra", jurisdiction="DE", api_url="https://k8s.example.test",
        credentials="token")
    client.force_login(msp_admin)
    page = client.get(f"/msp/clusters/{cluster.pk}/").content.decode()
    assert "ALLOWED_JURISDICTIONS" in page and "No jurisdiction is allowed yet" in page
    assert "Deploy a model" not in page
    settings.ALLOWED_JURISDICTIONS = ["FR"]
    page = client.get(f"/msp/clusters/{cluster.pk}/").content.decode()
    assert "The platform allows FR." in page


def test_cluster_form_never_sends_credentials_back_and_keeps_errors_short(client, msp_admin):
    client.force_login(msp_admin)
    response = client.post("/msp/clusters/new/", {
        "name": "fra", "api_url": "https://k8s.example.test", "jurisdiction": "DE",
        "credential_kind": "token", "credentials": "s3cret-service-account-token",
        "gateway_namespace": "istio-system", "default_mode": "Standard",
        "capacity": "X" * 5000})
    page = response.content.decode()
    assert response.status_code == 200 and "write PRODUCT=COUNT" in page
    assert "s3cret-service-account-token" not in page
    assert "X" * 61 not in page.replace("X" * 5000, "")  # the textarea keeps it; the error not
    assert 'value="https://k8s.example.test"' in page  # everything else is kept


def test_budget_figures_are_grouped_and_money_has_cents(client, tenant_admin, tenant):
    budget_services.budget_create(actor=tenant_admin, tenant=tenant, name="Tokens",
                                  unit="tokens", amount=Decimal("1000000"), period="monthly")
    budget_services.budget_create(actor=tenant_admin, tenant=tenant, name="Money",
                                  unit="currency", amount=Decimal("250"), currency="EUR",
                                  period="monthly")
    client.force_login(tenant_admin)
    page = client.get(f"/t/{tenant.slug}/budgets/").content.decode()
    assert "0 of 1,000,000 tokens" in page
    assert "0.00 of 250.00 EUR" in page and "0.0000" not in page


@pytest.mark.parametrize("support", ["", "help@msp.example"])
def test_a_suspended_tenant_is_told_to_contact_the_operator(client, tenant_admin, tenant,
                                                            settings, support):
    settings.SUPPORT_EMAIL = support
    tenant.status = TenantStatus.SUSPENDED
    tenant.contact_email = "ops@acme.example"
    tenant.save()
    client.force_login(tenant_admin)
    page = client.get(f"/t/{tenant.slug}/").content.decode()
    assert "suspended by the platform operator" in page
    assert "ops@acme.example" not in page.split("suspended by the platform operator")[1][:300]
    if support:
        assert 'href="mailto:help@msp.example"' in page
    else:
        assert "Contact the platform operator" in page


def test_budget_form_puts_first_and_last_day_side_by_side(tenant):
    from billing.budgets.forms import BudgetForm

    names = list(BudgetForm(tenant=tenant).fields)
    assert names.index("period_end") == names.index("period_start") + 1
    assert names.index("period_start") % 2 == 0  # left column of the two-column grid


def test_client_errors_are_logged_without_a_traceback(client, tenant_admin, other_tenant,
                                                      caplog):
    client.force_login(tenant_admin)
    with caplog.at_level("WARNING", logger="django.request"):
        assert client.get("/msp/clusters/").status_code == 403
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.status_code == 403
    from portal.log_filters import ClientErrorsWithoutTracebacks

    ClientErrorsWithoutTracebacks().filter(record)
    assert record.exc_info is None
