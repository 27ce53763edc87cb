"""Billing's services refuse with one type, `ApplicationError`, whose field errors name the
fields; its pages show each message on its field and its API answers 400 with them. No
billing view or API catches Django's `ValidationError` any more."""

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from billing.budgets import services as budgets
from billing.models import Budget, WebhookEndpoint
from billing.notifications import services as notifications
from portal.api import ApplicationError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("values", "field"), [
    ({"thresholds": [0, 120]}, "thresholds"),  # the service's own rule
    ({"name": "Bad\x00name"}, "name"),  # the model's validators (full_clean)
    ({"currency": "euro"}, "currency"),  # the model's validators (full_clean)
])
def test_budget_refusals_are_application_errors_with_field_errors(tenant, tenant_admin, values,
                                                                   field):
    arguments = {"name": "Monthly", "amount": Decimal("10"), "currency": "EUR", **values}
    with pytest.raises(ApplicationError) as caught:
        budgets.budget_create(actor=tenant_admin, tenant=tenant, **arguments)
    assert caught.value.field_errors[field] and caught.value.message
    assert not Budget.objects.exists()


def test_a_budget_update_refuses_the_same_way(tenant, tenant_admin):
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Monthly",
                                   amount=Decimal("10"), currency="EUR")
    with pytest.raises(ApplicationError) as caught:
        budgets.budget_update(actor=tenant_admin, budget=budget, unit="tokens",
                              amount=Decimal("10.5"))
    assert "amount" in caught.value.field_errors


@pytest.mark.parametrize(("values", "field"), [
    ({"url": "http://10.1.2.3/hook"}, "url"),  # the outbound policy
    ({"name": "x" * 101, "url": "https://93.184.215.14/hook"}, "name"),  # full_clean
])
def test_webhook_refusals_are_application_errors_with_field_errors(tenant, tenant_admin,
                                                                    settings, values, field):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(ApplicationError) as caught:
        notifications.webhook_endpoint_create(actor=tenant_admin, tenant=tenant,
                                              **{"name": "Ops", **values})
    assert caught.value.field_errors[field] and caught.value.message
    assert not WebhookEndpoint.objects.exists()


def test_the_api_answers_400_with_the_services_field_errors(client, tenant, tenant_admin):
    client.force_login(tenant_admin)
    response = client.post(f"/api/tenants/{tenant.slug}/budgets/", {
        "name": "Pilot", "amount": "10", "currency": "EUR", "period": "custom",
        "period_start": "2026-05-01", "period_end": "2026-04-01"},
        content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["errors"]["period_end"] == ["The last day must not be before the first."]
    assert body["detail"] == "The last day must not be before the first."


def test_the_page_shows_the_services_refusal_on_its_field(client, tenant, tenant_admin):
    client.force_login(tenant_admin)
    response = client.post(f"/t/{tenant.slug}/budgets/new/", {
        "name": "Pilot", "unit": "currency", "amount": "10", "currency": "EUR",
        "period": "custom", "period_start": "2026-05-01", "period_end": "2026-04-01",
        "thresholds": "50, 100", "action": "notify"})
    assert response.status_code == 422
    assert response.context["form"].errors["period_end"] == [
        "The last day must not be before the first."]


def _catches_or_raises_validation_error(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "django.core.exceptions":
            found += [f"imports {a.name}" for a in node.names if a.name == "ValidationError"]
    return found


def test_billing_services_views_and_apis_use_only_application_error():
    modules = [path for package in ("usage", "budgets", "notifications", "statements")
               for name in ("services", "views", "api", "webhooks", "counters", "alerts")
               if (path := ROOT / "billing" / package / f"{name}.py").exists()]
    assert modules
    offending = {str(path.relative_to(ROOT)): found for path in modules
                 if (found := _catches_or_raises_validation_error(path))}
    assert offending == {}
