"""The upload wizard in a real browser: metadata, then the chunked upload, which survives a
dropped connection and resumes from the offset the server reports."""

import pytest
from playwright.sync_api import expect

from models_catalog.models import ModelVersion, UploadStatus
from tests.browser.test_catalog_screens import shot
from tests.factories import PASSWORD, TOTP_SECRET
from tests.support.browser import ForeignRequests, new_page, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHUNK = 64 * 1024


def test_wizard_metadata_then_resumable_upload(browser, live_server, msp_admin, tmp_path,
                                               registry_settings):
    registry_settings.MODEL_UPLOAD_CHUNK_BYTES = CHUNK
    archive = tmp_path / "modelcar.tar"
    payload = bytes(range(256)) * (5 * CHUNK // 256) + b"tail"
    archive.write_bytes(payload)

    page = new_page(browser, live_server.url)
    foreign = ForeignRequests(page, live_server.url)
    dropped = []

    def drop_third_chunk_once(route):
        if route.request.method == "PUT" and "bytes 131072-" in (
                route.request.headers.get("content-range") or "") and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    try:
        sign_in(page, msp_admin.email, PASSWORD, TOTP_SECRET)
        page.goto("/catalog/")
        page.get_by_role("link", name="Upload a ModelCar").first.click()
        page.fill("#id_slug", "browser-llm")
        page.fill("#id_name", "Browser LLM")
        page.fill("#id_version", "1.0")
        page.fill("#id_base_model", "llama-3-8b")
        page.fill("#id_model_card", "# Browser LLM\n\nUploaded from the browser.")
        page.get_by_role("button", name="Continue: the image").click()
        expect(page.locator("h1")).to_contain_text("Browser LLM 1.0")
        expect(page.locator(".wizard-steps [aria-current=step]")).to_contain_text("Image")

        page.route("**/api/uploads/**", drop_third_chunk_once)
        page.set_input_files("#modelcar-file", str(archive))
        page.get_by_role("button", name="Upload", exact=True).click()
        # After the last chunk the page moves on to the push/scan progress.
        expect(page.locator("#progress-panel")).to_be_visible(timeout=30_000)
        expect(page.locator("#progress-panel h2")).to_have_text(
            "Pushing to the landing repository")
        page.screenshot(path=str(tmp_path / "after-upload.png"))
        assert dropped, "the connection was never dropped"
        assert foreign.foreign == []
    finally:
        page.context.close()

    version = ModelVersion.objects.get(model__slug="browser-llm", version="1.0")
    assert version.upload.status == UploadStatus.RECEIVED
    assert version.upload.received_bytes == len(payload)
    stored = registry_settings.MODEL_UPLOAD_DIR / f"{version.upload.pk}.tar"
    assert stored.read_bytes() == payload


def test_a_second_admin_approves_in_the_browser(browser, live_server, msp_admin, tenant,
                                                registry_settings):
    from models_catalog.registry import registry_client
    from tests.factories import make_msp_admin
    from tests.models_catalog.conftest import make_submitted_version

    second = make_msp_admin(email="msp2@example.test")
    version = make_submitted_version(registry_client(), msp_admin, slug="four-eyes")
    url = f"/catalog/four-eyes/v/{version.version}/"

    page = new_page(browser, live_server.url)
    try:
        sign_in(page, msp_admin.email, PASSWORD, TOTP_SECRET)
        page.goto(url)
        expect(page.locator("#approval-panel")).to_contain_text("Four-eyes rule")
        expect(page.locator("#approve-button")).to_have_count(0)
        shot(page, "08-approval-uploader")
    finally:
        page.context.close()

    page = new_page(browser, live_server.url)
    try:
        sign_in(page, second.email, PASSWORD, TOTP_SECRET)
        page.goto("/catalog/")
        expect(page.locator("#approval-queue")).to_contain_text("Approval test")
        page.locator("#approval-queue a").first.click()
        expect(page.locator(".wizard-steps [aria-current=step]")).to_contain_text("Approval")
        shot(page, "09-approval-second-admin")
        page.locator("#approve-button").click()
        expect(page.locator("#version-status")).to_have_text("Published")
        expect(page.locator("#signature")).to_contain_text("Verified")
        expect(page.locator("#signature")).to_contain_text("trusted/four-eyes@")
        shot(page, "10-published")
    finally:
        page.context.close()
    version.refresh_from_db()
    assert version.approved_by == second and version.signature_artifact_digest
