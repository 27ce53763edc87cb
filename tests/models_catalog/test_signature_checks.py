"""A published version's signature is checked on publication, before each deploy and on
request ("verify now"), and the outcome is recorded with its time: pages and the deploy
wizard show the record instead of checking on every render."""

import json

import pytest

from audit.models import AuditEvent
from models_catalog import registry as oci
from models_catalog import services
from models_catalog.models import ModelVersion, SignatureCheck
from tests.models_catalog.conftest import make_submitted_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(registry_client, msp_admin, second_admin, tenant):
    version = make_submitted_version(registry_client, msp_admin)
    return services.version_approve(actor=second_admin, version=version)


@pytest.fixture
def no_checks(monkeypatch):
    """Any signature check from here on fails the test."""
    from portal import signing

    def refuse(*args, **kwargs):
        raise AssertionError("a signature was checked")

    monkeypatch.setattr(signing, "verify", refuse)


def test_publication_records_the_check_with_its_time(published):
    published.refresh_from_db()
    assert published.signature_status == SignatureCheck.VERIFIED
    assert published.signature_checked_at == published.approved_at
    assert published.signature_check_current and "signed by key" in published.signature_detail
    event = AuditEvent.objects.get(action="model_version.published",
                                   target_id=str(published.pk))
    assert event.details["signature_check"] == "verified"


def test_pages_and_the_deploy_wizard_show_the_record_without_checking(
        client, msp_admin, developer, published, no_checks):
    from deployments.selectors import deployable_versions

    slug = published.model.slug
    client.force_login(msp_admin)
    for url in (f"/catalog/{slug}/v/1.0/", f"/catalog/{slug}/"):
        response = client.get(url)
        assert response.status_code == 200
        page = response.content.decode()
        assert "Verified" in page and "Checked " in page and "Checked now" not in page
    assert published in deployable_versions()
    client.force_login(developer)
    page = client.get(f"/t/acme/models/{slug}/").content.decode()
    assert "Verified" in page and "Checked " in page


def test_a_version_changed_since_its_check_is_checked_again_on_the_page(client, msp_admin,
                                                                        published):
    from deployments.selectors import deployable_versions

    published.sbom += " "
    published.save()  # the recorded check no longer describes the version
    client.force_login(msp_admin)
    page = client.get(f"/catalog/{published.model.slug}/v/1.0/").content.decode()
    assert "Does not verify" in page and "SBOM differs" in page and "Checked now" in page
    assert published not in deployable_versions()
    published.refresh_from_db()  # a GET recorded nothing
    assert published.signature_status == SignatureCheck.VERIFIED


def test_verify_now_checks_the_registry_records_and_audits(client, msp_admin, second_admin,
                                                          published, registry_client):
    url = f"/catalog/{published.model.slug}/v/1.0/verify/"
    client.force_login(msp_admin)
    assert client.get(url).status_code == 405
    # Someone replaced the referrers index with an empty one: only the registry shows it.
    empty = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []})
    registry_client.manifest_put(published.trusted_repository,
                                 oci.referrers_tag(published.manifest_digest), empty.encode(),
                                 oci.OCI_INDEX)
    response = client.post(url, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Does not verify" in page and "no approval signature" in page
    published.refresh_from_db()
    assert published.signature_status == SignatureCheck.FAILED
    assert published.signature_checked_at > published.approved_at
    event = AuditEvent.objects.get(action="model_version.signature_checked")
    assert event.actor_id == str(msp_admin.pk) and event.details["outcome"] == "failed"
    # The API does the same, for automation.
    client.force_login(second_admin)
    answer = client.post(f"/api/models/{published.model.slug}/versions/1.0/verify/")
    assert answer.status_code == 200 and answer.json()["signature_status"] == "failed"
    assert "no approval signature" in answer.json()["signature_detail"]


def test_only_msp_admins_verify(client, developer, compliance_officer, published):
    for person in (developer, compliance_officer):
        client.force_login(person)
        assert client.post(f"/catalog/{published.model.slug}/v/1.0/verify/").status_code == 403
        assert client.post(f"/api/models/{published.model.slug}/versions/1.0/verify/"
                           ).status_code == 403
    assert not AuditEvent.objects.filter(action="model_version.signature_checked").exists()


def test_the_check_before_a_deploy_ignores_the_record_and_records_its_own(published):
    ModelVersion.objects.filter(pk=published.pk).update(
        signature="AAAA" + published.signature[4:])  # behind the record's back
    published.refresh_from_db()
    assert published.signature_check_current  # the record still says verified
    check = services.version_verify_for_deploy(version=published)
    assert not check.ok and "signature does not verify" in check.reason
    published.refresh_from_db()
    assert published.signature_status == SignatureCheck.FAILED
