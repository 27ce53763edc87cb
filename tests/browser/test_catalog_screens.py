"""The catalog's pages in a real browser, for people of each kind; screenshots of each page
go to var/screenshots/catalog/ for review."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from models_catalog import services
from tenants.models import TenantRole
from tests.factories import PASSWORD, TOTP_SECRET, MembershipFactory, UserFactory
from tests.support.browser import ForeignRequests, new_page, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "catalog"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_catalog_pages_for_msp_and_tenant(browser, live_server, msp_admin, tenant,
                                          registry_settings):
    chat = services.model_create(
        actor=msp_admin, slug="mistral-7b", name="Mistral 7B Instruct", task="chat",
        provider="Mistral AI", license="Apache-2.0", context_length=32768,
        model_card="# Mistral 7B\n\nA chat model.\n\n## Limitations\n- No medical advice\n"
                   "<script>alert('x')</script>")
    services.model_create(actor=msp_admin, slug="bge-m3", name="BGE-M3", task="embeddings",
                          available_to_all_tenants=False)
    services.version_create(actor=msp_admin, model=chat, version="1.0", base_model="mistral-7b")
    developer = MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER,
                                  user=UserFactory(email="dev@acme.test")).user

    page = new_page(browser, live_server.url)
    foreign = ForeignRequests(page, live_server.url)
    try:
        sign_in(page, msp_admin.email, PASSWORD, TOTP_SECRET)
        page.get_by_role("link", name="Model catalog").click()
        expect(page.locator("h1")).to_have_text("Model catalog")
        shot(page, "01-msp-catalog")
        page.fill("#f-q", "bge")
        expect(page.locator("#model-table")).not_to_contain_text("Mistral")
        page.get_by_role("link", name="BGE-M3").click()
        shot(page, "02-msp-model-detail-empty")
        page.goto("/catalog/mistral-7b/")
        expect(page.locator(".markdown h1")).to_have_text("Mistral 7B")
        shot(page, "03-msp-model-detail")
        page.goto("/catalog/upload/")
        shot(page, "04-wizard-step1")
        page.goto("/catalog/mistral-7b/v/1.0/")
        expect(page.locator("#upload-panel")).to_be_visible()
        shot(page, "05-wizard-step2")
        assert foreign.foreign == []
    finally:
        page.context.close()

    page = new_page(browser, live_server.url)
    try:
        sign_in(page, developer.email, PASSWORD)
        page.get_by_role("link", name="Models").click()
        expect(page.locator("#model-table")).to_contain_text("Mistral 7B Instruct")
        expect(page.locator("#model-table")).not_to_contain_text("BGE-M3")
        shot(page, "06-tenant-catalog")
        page.get_by_role("link", name="Mistral 7B Instruct").click()
        shot(page, "07-tenant-model")
    finally:
        page.context.close()
