"""Four-eyes approval: sign, copy by digest from landing to trusted, attach the signature to
the image in the real registry, publish; and verification afterwards."""

import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from models_catalog import registry as oci
from models_catalog import services
from models_catalog.models import ModelVersion, VersionStatus
from models_catalog.signing import version_verify, version_verify_registry
from portal.api import ApplicationError
from tests.models_catalog.conftest import make_submitted_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def submitted_version(registry_client, msp_admin):
    return make_submitted_version(registry_client, msp_admin)


def test_the_uploader_cannot_approve(submitted_version, msp_admin):
    with pytest.raises(ApplicationError, match="Four-eyes"):
        services.version_approve(actor=msp_admin, version=submitted_version)
    submitted_version.refresh_from_db()
    assert submitted_version.status == VersionStatus.AWAITING_APPROVAL


def test_approval_publishes_by_digest_and_attaches_the_signature(
        submitted_version, second_admin, registry_client):
    landing_digest = submitted_version.manifest_digest
    version = services.version_approve(actor=second_admin, version=submitted_version)

    assert version.status == VersionStatus.PUBLISHED
    assert version.approved_by == second_admin
    assert version.trusted_repository == f"trusted/{version.model.slug}"
    trusted = registry_client.manifest_get(version.trusted_repository, landing_digest)
    assert trusted.digest == landing_digest == version.manifest_digest
    assert "1.0" in registry_client.tags_list(version.trusted_repository)
    # Distribution 2.8 has no referrers API: the signature is found through the fallback tag.
    assert oci.referrers_tag(landing_digest) in registry_client.tags_list(
        version.trusted_repository)
    referrers = registry_client.referrers(version.trusted_repository, landing_digest,
                                          services.APPROVAL_ARTIFACT_TYPE)
    assert [r.digest for r in referrers] == [version.signature_artifact_digest]
    artifact = registry_client.manifest_get(version.trusted_repository,
                                            version.signature_artifact_digest).data
    assert artifact["subject"]["digest"] == landing_digest
    assert artifact["artifactType"] == services.APPROVAL_ARTIFACT_TYPE

    assert version_verify(version).ok
    result = version_verify_registry(version)
    assert result.ok, result.reason
    statement = json.loads(version.signed_statement)
    assert statement["approver"] == second_admin.email
    assert statement["image"]["digest"] == landing_digest
    actions = list(AuditEvent.objects.filter(target_id=str(version.pk))
                   .values_list("action", flat=True))
    assert "model_version.published" in actions and "model_version.submitted" in actions


def test_a_changed_sbom_or_digest_fails_verification(submitted_version, second_admin):
    version = services.version_approve(actor=second_admin, version=submitted_version)
    version.sbom += " "
    assert "SBOM" in version_verify(version).reason
    version.refresh_from_db()
    version.manifest_digest = "sha256:" + "1" * 64
    assert not version_verify_registry(version).ok


def test_model_verify_command(submitted_version, second_admin, capsys):
    version = services.version_approve(actor=second_admin, version=submitted_version)
    call_command("model_verify", version.model.slug, "1.0")
    out = capsys.readouterr().out
    assert "verified" in out and version.manifest_digest in out
    ModelVersion.objects.filter(pk=version.pk).update(sbom="{}")
    with pytest.raises(CommandError, match="SBOM differs"):
        call_command("model_verify", version.model.slug, "1.0")
    with pytest.raises(CommandError, match="No version"):
        call_command("model_verify", version.model.slug, "9.9")


def test_a_signature_missing_from_the_registry_fails_registry_verification(
        submitted_version, second_admin, registry_client):
    version = services.version_approve(actor=second_admin, version=submitted_version)
    # Someone replaced the referrers index with an empty one.
    empty = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []})
    registry_client.manifest_put(version.trusted_repository,
                                 oci.referrers_tag(version.manifest_digest), empty.encode(),
                                 oci.OCI_INDEX)
    result = version_verify_registry(version)
    assert not result.ok and "no approval signature" in result.reason


def test_registry_down_during_approval_publishes_nothing(submitted_version, second_admin,
                                                         settings):
    from tests.support.processes import free_port

    settings.REGISTRY_URL = f"http://127.0.0.1:{free_port()}"
    settings.REGISTRY_TIMEOUT_SECONDS = 2
    with pytest.raises(ApplicationError, match="nothing was published"):
        services.version_approve(actor=second_admin, version=submitted_version)
    submitted_version.refresh_from_db()
    assert submitted_version.status == VersionStatus.AWAITING_APPROVAL
    assert not submitted_version.signature


def test_rejection_needs_a_reason_and_is_final(submitted_version, second_admin):
    with pytest.raises(ApplicationError):
        services.version_reject(actor=second_admin, version=submitted_version, reason=" ")
    version = services.version_reject(actor=second_admin, version=submitted_version,
                                      reason="License unclear")
    assert version.status == VersionStatus.REJECTED and version.status_reason == "License unclear"
    with pytest.raises(ApplicationError):
        services.version_approve(actor=second_admin, version=version)
    assert not version.is_deployable


def test_lifecycle_of_a_published_version(submitted_version, second_admin):
    version = services.version_approve(actor=second_admin, version=submitted_version)
    services.version_set_lifecycle(actor=second_admin, version=version, status="deprecated")
    assert version.status == VersionStatus.DEPRECATED and version_verify(version).ok
    services.version_set_lifecycle(actor=second_admin, version=version, status="retired")
    assert version.status == VersionStatus.RETIRED and not version.is_deployable
    with pytest.raises(ApplicationError):
        services.version_set_lifecycle(actor=second_admin, version=version, status="published")


def test_a_status_change_is_a_compare_and_set(submitted_version, second_admin):
    stale = ModelVersion.objects.get(pk=submitted_version.pk)
    services.version_reject(actor=second_admin, version=submitted_version, reason="no")
    # A second actor holding the old state can't move it again.
    with pytest.raises(ApplicationError, match="changed meanwhile"):
        services.version_reject(actor=second_admin, version=stale, reason="again")


def test_reference_outside_the_landing_namespace_or_missing_is_refused(registry_client,
                                                                       msp_admin):
    model = services.model_create(actor=msp_admin, slug=f"refs-{uuid.uuid4().hex[:8]}",
                                  name="Refs", task="chat")
    version = services.version_create(actor=msp_admin, model=model, version="1")
    with pytest.raises(ApplicationError) as exc:
        services.version_register_reference(actor=msp_admin, version=version,
                                            repository=f"trusted/{model.slug}", reference="1")
    assert "repository" in exc.value.field_errors
    with pytest.raises(ApplicationError, match="not in the registry"):
        services.version_register_reference(actor=msp_admin, version=version,
                                            repository=f"landing/{model.slug}", reference="nope")
    version.refresh_from_db()
    assert version.status == VersionStatus.UPLOADING
