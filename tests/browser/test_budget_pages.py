from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from billing.budgets import counters as budgets
from tenants.models import TenantRole
from tests.billing.budget_helpers import event, ingest, make_model
from tests.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory
from tests.support.browser import ForeignRequests, sign_in

pytestmark = pytest.mark.browser


def test_tenant_admin_sets_a_budget_sees_alerts_and_a_statement(page, transactional_db,
                                                                 live_server, tmp_path):
    call_command("collectstatic", "--no-input", "-v", "0")
    tenant = TenantFactory(slug="acme", name="Acme Research")
    admin = MembershipFactory(tenant=tenant, role=TenantRole.TENANT_ADMIN,
                              user=UserFactory(email="admin@acme.test")).user
    chat = make_model()
    foreign = ForeignRequests(page, live_server.url)
    sign_in(page, admin.email, PASSWORD)

    page.goto("/t/acme/budgets/")
    expect(page.get_by_text("No budgets yet")).to_be_visible()
    page.fill("#id_name", "Monthly spend")
    page.fill("#id_amount", "-3")
    page.get_by_role("button", name="Create budget").click()
    expect(page.get_by_text("Ensure this value is greater than or equal to 0.01.")).to_be_visible()
    page.fill("#id_amount", "0.01")
    page.get_by_role("button", name="Create budget").click()
    expect(page.get_by_text("Budget “Monthly spend” created.")).to_be_visible()

    budget = tenant.budgets.get()
    ingest(event(tenant, chat, when=datetime.now(UTC)))  # 0.005 EUR: 50 %
    budgets.budget_reconcile(budget=budget)
    page.goto("/t/acme/budgets/")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "50")
    page.screenshot(path=str(tmp_path / "budgets.png"), full_page=True)
    expect(page.locator(".nav-count")).to_have_text("1")

    page.goto("/t/acme/notifications/")
    expect(page.get_by_text("Budget “Monthly spend” reached 50 %").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "notifications.png"), full_page=True)
    page.get_by_role("button", name="Mark all read").click()
    expect(page.locator(".nav-count")).to_have_count(0)

    page.goto("/t/acme/webhooks/")
    page.fill("#id_name", "Internal")
    page.fill("#id_url", "http://10.0.0.5/hook")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_text("private or reserved address")).to_be_visible()
    page.screenshot(path=str(tmp_path / "webhooks.png"), full_page=True)

    page.goto(f"/t/acme/statements/{datetime.now(UTC):%Y-%m}/")
    expect(page.get_by_text("Total EUR")).to_be_visible()
    page.screenshot(path=str(tmp_path / "statement.png"), full_page=True)
    assert Decimal(budgets.budget_consumption(budget)["consumed"]) == Decimal("0.005")
    assert foreign.foreign == []
