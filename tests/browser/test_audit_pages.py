"""The audit trail explorer in a real browser, wide and narrow: readable details, human
targets, and a table that scrolls inside its card instead of widening the page. Screenshots
go to var/screenshots/audit/ for review."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

import audit
from audit.models import AuditEvent
from tests.factories import PASSWORD, TOTP_SECRET
from tests.support.browser import ForeignRequests, new_page, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "audit"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _seed(tenant, other_tenant, msp_admin):
    rows = [
        ("tenant.created", tenant, ("tenants.tenant", tenant.pk), {"name": tenant.name}),
        ("user.created", None, ("tenants.user", "1"), {"email": "new.person@acme.test"}),
        ("auth.login_failed", None, None, {"email": "someone@example.test",
                                           "reason": "password"}),
        ("billing.budget_create", tenant, ("billing.budget", "1"),
         {"name": "Monthly spend", "amount": "250.00", "currency": "EUR",
          "notify_email": True, "all_tenants": False, "api_key_id": None,
          "thresholds": [50, 80, 100]}),
        ("billing.budget_update", tenant, ("billing.budget", "1"),
         {"changes": {"amount": ["250.00", "400.00"], "notify_email": [True, False]}}),
        ("api_key.created", tenant, ("gateway.apikey", "7"),
         {"name": "CI pipeline", "scopes": ["chat", "embeddings"], "expires_at": None,
          "prefix": "sk-portal-4f2a"}),
        ("membership.created", tenant, ("tenants.membership", "3"),
         {"user": "dev@acme.test", "role": "developer"}),
        ("deployment.created", other_tenant, ("deployments.deployment", "12"),
         {"name": "mistral-7b-prod", "replicas": 2, "gpu": "nvidia-l4",
          "model_version": "mistral-7b 1.0", "autoscaling": {"min": 1, "max": 4},
          "endpoint": "https://inference.globex.example/v1/models/mistral-7b-prod/"
                      "predictions?with=a-very-long-query-string-that-goes-on-and-on"}),
        ("catalog.version_created", None, ("models_catalog.modelversion", "5"),
         {"model": "mistral-7b", "version": "1.0", "base_model": "mistral-7b",
          "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
        ("billing.webhook_create", other_tenant, ("billing.webhookendpoint", "2"),
         {"name": "Ops", "url": "https://hooks.globex.example/portal"}),
        ("tenant.quotas_changed", tenant, ("tenants.tenant", tenant.pk),
         {"max_deployments": 4, "max_gpus": 8, "max_api_keys": 20, "max_members": 50,
          "max_storage_gb": 500, "allow_external": True, "allow_upload": False,
          "note": ""}),
        ("audit.chain_verified", None, None, {"ok": True, "checked": 11, "errors": []}),
    ]
    for i, (action, owner, target, details) in enumerate(rows):
        audit.record(action=action, actor=msp_admin if i % 2 else "system:beat", tenant=owner,
                     target=target, details=details)


_WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(e => !e.closest('.table-wrap') || e.matches('.table-wrap'))
  .slice(0, 8)
  .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""


_WRAP_SCROLLS = """() => { const w = document.querySelector('#event-table .table-wrap');
  return w.scrollWidth > w.clientWidth; }"""


def _no_page_overflow(page) -> None:
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, page.evaluate(_WIDEST)


def test_audit_explorer_reads_well_wide_and_narrow(browser, live_server, msp_admin, tenant,
                                                   other_tenant):
    _seed(tenant, other_tenant, msp_admin)
    page = new_page(browser, live_server.url)
    foreign = ForeignRequests(page, live_server.url)
    try:
        sign_in(page, msp_admin.email, PASSWORD, TOTP_SECRET)
        page.goto("/audit/")
        expect(page.locator("h1")).to_have_text("Audit trail")
        table = page.locator("#event-table table")
        expect(table).to_contain_text("Budget #1")
        expect(table).to_contain_text("API key #7")
        expect(table).to_contain_text("Model version #5")
        expect(table).not_to_contain_text("=None")
        expect(page.locator("span[title='billing.budget 1']").first).to_be_visible()
        _no_page_overflow(page)
        # Rows stay short: no row is taller than its details need (QA saw ~450 px).
        heights = page.eval_on_selector_all("#event-table tbody tr",
                                            "rows => rows.map(r => r.offsetHeight)")
        assert heights and max(heights) < 220, heights
        # On a desktop the whole table fits its card: nothing to scroll sideways.
        assert page.evaluate(_WRAP_SCROLLS) is False
        shot(page, "01-audit-1280")

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(table).to_contain_text("Budget #1")
        _no_page_overflow(page)
        # The table scrolls inside its wrapper instead.
        assert page.evaluate(_WRAP_SCROLLS) is True
        shot(page, "02-audit-390")

        page.set_viewport_size({"width": 1280, "height": 900})
        seq = AuditEvent.objects.get(action="billing.budget_create").seq
        page.locator(f"#event-table a[href='/audit/events/{seq}/']").click()
        expect(page.locator("#audit-raw-record")).to_contain_text('"target_type": "billing.budget"')
        expect(page.locator("main")).to_contain_text("Budget #1")
        _no_page_overflow(page)
        shot(page, "03-audit-event-1280")
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        _no_page_overflow(page)
        shot(page, "04-audit-event-390")
        assert foreign.foreign == []
    finally:
        page.context.close()
