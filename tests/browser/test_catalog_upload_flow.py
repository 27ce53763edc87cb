"""Done-when of the catalog: an MSP admin takes a real ModelCar archive from upload to
published in the browser — chunked upload by the page's script, push and scan by a real
Celery worker against the real registry, submission, and approval by a second admin."""

from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from models_catalog.models import ModelVersion, VersionStatus
from models_catalog.signing import version_verify
from tests.factories import PASSWORD, TOTP_SECRET, make_msp_admin
from tests.support.browser import ForeignRequests, new_page, sign_in
from tests.support.modelcar import CLEAN_FILES, build_modelcar_archive

pytestmark = [pytest.mark.browser]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "catalog"


def test_upload_scan_submit_and_four_eyes_approval(browser, live_server, catalog_worker,
                                                   tmp_path):
    call_command("collectstatic", "--no-input", "-v", "0")
    SHOTS.mkdir(parents=True, exist_ok=True)
    uploader = make_msp_admin(email="uploader@msp.test")
    approver = make_msp_admin(email="approver@msp.test")
    archive = build_modelcar_archive(tmp_path / "acme-chat.tar", CLEAN_FILES)

    page = new_page(browser, live_server.url)
    foreign = ForeignRequests(page, live_server.url)
    try:
        sign_in(page, uploader.email, PASSWORD, TOTP_SECRET)
        page.goto("/catalog/upload/")
        page.fill("#id_slug", "acme-chat")
        page.fill("#id_name", "Acme Chat")
        page.select_option("#id_task", "chat")
        page.fill("#id_version", "1.0")
        page.fill("#id_base_model", "llama-3-8b")
        page.get_by_role("button", name="Continue: the image").click()
        expect(page.locator("#upload-panel")).to_be_visible()
        page.set_input_files("#modelcar-file", str(archive))
        page.click("#modelcar-start")
        # The script uploads in chunks, completes, and the page follows the worker's push and
        # scan until the findings are ready.
        expect(page.locator("#submit-panel")).to_be_visible(timeout=90_000)
        expect(page.locator("#scan-report")).to_contain_text("model.safetensors")
        page.screenshot(path=str(SHOTS / "10-scanned-from-upload.png"), full_page=True)
        page.get_by_role("button", name="Submit for approval").click()
        expect(page.locator("#version-status")).to_have_text("Awaiting approval")
        # The uploader can't approve their own version.
        expect(page.locator("#approve-button")).to_have_count(0)
        assert foreign.foreign == []
    finally:
        page.context.close()

    page = new_page(browser, live_server.url)
    try:
        sign_in(page, approver.email, PASSWORD, TOTP_SECRET)
        page.goto("/catalog/acme-chat/v/1.0/")
        page.click("#approve-button")
        expect(page.locator("#version-status")).to_have_text("Published", timeout=30_000)
        page.screenshot(path=str(SHOTS / "11-published.png"), full_page=True)
    finally:
        page.context.close()

    version = ModelVersion.objects.get(model__slug="acme-chat", version="1.0")
    assert version.status == VersionStatus.PUBLISHED
    assert version.uploaded_by == uploader and version.approved_by == approver
    assert version.trusted_repository == "trusted/acme-chat"
    assert version_verify(version).ok
