"""The usage dashboard in Chromium: plotly.js from the portal itself draws the charts, the
range control swaps the dashboard in place, and nothing is fetched from another host."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from billing.usage.services import usage_records_ingest
from gateway import services as gateway_services
from tenants.models import TenantRole
from tests.billing.budget_helpers import make_model
from tests.billing.test_usage_dashboards import event
from tests.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory
from tests.support.browser import ForeignRequests, sign_in

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_tenant_admin_reads_the_usage_dashboard(page, transactional_db, live_server, tmp_path):
    call_command("collectstatic", "--no-input", "-v", "0")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tenant = TenantFactory(slug="acme", name="Acme Research")
    admin = MembershipFactory(tenant=tenant, role=TenantRole.TENANT_ADMIN,
                              user=UserFactory(email="admin@acme.test")).user
    model = make_model()
    key, _ = gateway_services.apikey_create(actor=admin, tenant=tenant, name="ci-pipeline",
                                            owner=admin)
    now = datetime.now(UTC)
    usage_records_ingest(events=[
        event(tenant, model, n, key=key, at=now - timedelta(days=n % 5), latency=50 * (n + 1))
        for n in range(30)])
    foreign = ForeignRequests(page, live_server.url)
    sign_in(page, admin.email, PASSWORD)
    page.get_by_role("link", name="Usage").first.click()
    expect(page.locator('[data-figure="requests"]')).to_have_text("30")
    expect(page.locator('[data-chart="tokens"] svg.main-svg').first).to_be_visible()
    expect(page.locator('[data-chart="cost_by_key"]')).to_contain_text("ci-pipeline")
    page.screenshot(path=str(SCREENSHOTS / "usage-tenant.png"), full_page=True)

    page.select_option("#id_range", "1")
    expect(page.locator('[data-figure="requests"]')).not_to_have_text("30")
    expect(page.locator('[data-figure="requests"]')).to_have_text("6")  # today's only
    expect(page).to_have_url(re.compile(r"range=1"))
    assert foreign.foreign == []
