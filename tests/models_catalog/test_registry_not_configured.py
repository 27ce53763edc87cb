"""Without REGISTRY_URL every catalog page, API, command and worker step that needs the
registry (an image reference, an upload, the push or scan, approval, registry verification)
says the registry is not configured and what to set — never a 500."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from models_catalog import services
from models_catalog.models import ModelVersion, ScanVerdict, VersionStatus
from tests.factories import published_version

SAYS = "No OCI registry is configured: set REGISTRY_URL"


@pytest.fixture(autouse=True)
def _no_registry(settings):
    settings.REGISTRY_URL = ""


def _version(actor, slug: str, **fields) -> ModelVersion:
    model = services.model_create(actor=actor, slug=slug, name=slug, task="chat")
    version = services.version_create(actor=actor, model=model, version="1.0")
    ModelVersion.objects.filter(pk=version.pk).update(**fields)
    version.refresh_from_db()
    return version


def test_approval_says_so_and_publishes_nothing(client, msp_admin, second_admin):
    version = _version(
        msp_admin, "awaiting", status=VersionStatus.AWAITING_APPROVAL,
        scan_verdict=ScanVerdict.CLEAN, uploaded_by=msp_admin, submitted_by=msp_admin,
        submitted_at=timezone.now(), landing_repository="landing/awaiting",
        manifest_digest="sha256:" + "a" * 64)
    client.force_login(second_admin)
    page = client.get("/catalog/awaiting/v/1.0/").content.decode()
    assert "nothing can be published until it is set" in page
    assert 'id="approve-button" disabled' in page

    response = client.post("/catalog/awaiting/v/1.0/approve/", follow=True)
    assert response.status_code == 200 and SAYS in response.content.decode()
    api = client.post("/api/models/awaiting/versions/1.0/approve/")
    assert api.status_code == 400 and SAYS in api.json()["detail"]
    version.refresh_from_db()
    assert version.status == VersionStatus.AWAITING_APPROVAL and not version.signature


def test_an_image_reference_is_refused_with_the_reason(client, msp_admin):
    _version(msp_admin, "by-reference")
    client.force_login(msp_admin)
    fields = {"repository": "landing/by-reference", "reference": "1.0"}
    page = client.post("/catalog/by-reference/v/1.0/reference/", fields)
    assert page.status_code == 422 and SAYS in page.content.decode()
    api = client.post("/api/models/by-reference/versions/1.0/reference/", fields,
                      content_type="application/json")
    assert api.status_code == 400 and SAYS in api.json()["detail"]


def test_a_retried_scan_stops_again_with_the_reason_on_the_page(client, msp_admin):
    version = _version(msp_admin, "stuck", status=VersionStatus.QUARANTINED,
                       landing_repository="landing/stuck", manifest_digest="sha256:" + "b" * 64,
                       work_error="The scan could not reach the registry.")
    client.force_login(msp_admin)
    client.post("/catalog/stuck/v/1.0/retry/")
    services.version_scan(version_id=version.pk)  # what the worker runs
    version.refresh_from_db()
    assert version.status == VersionStatus.QUARANTINED and SAYS in version.work_error
    assert SAYS in client.get("/catalog/stuck/v/1.0/").content.decode()


def test_model_verify_says_so_and_offers_the_offline_check(msp_admin, capsys):
    version = published_version(approver=msp_admin)
    with pytest.raises(CommandError, match=SAYS) as refused:
        call_command("model_verify", version.model.slug, "1.0")
    assert "--offline" in str(refused.value) and "NOT verified" not in str(refused.value)
    call_command("model_verify", version.model.slug, "1.0", "--offline")
    assert "verified" in capsys.readouterr().out
