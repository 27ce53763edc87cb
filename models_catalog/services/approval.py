"""Review, four-eyes approval and publication of a scanned version, or its rejection."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from models_catalog import oms
from models_catalog import registry as oci
from models_catalog.models import VERSION_TRANSITIONS, ModelVersion, ScanVerdict, VersionStatus
from models_catalog.scanning.report import ScanReport
from models_catalog.services.gate import transition, trusted_repository
from models_catalog.services.scan import sbom_build
from models_catalog.services.signatures import record_check
from models_catalog.signing import (
    APPROVAL_ARTIFACT_TYPE,
    canonical,
    version_sign,
    version_verify,
)
from portal.api import ApplicationError
from portal.gateway_config import bump_gateway_config


def version_submit(*, actor, version: ModelVersion, note: str = "") -> ModelVersion:
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != VersionStatus.AWAITING_APPROVAL or version.submitted_at:
            raise ApplicationError("Only a scanned version that was not yet submitted can be "
                                   "submitted for approval.")
        if version.scan_verdict == ScanVerdict.SUSPICIOUS and not note.strip():
            raise ApplicationError(
                "The scan found suspicious content: explain why it is acceptable.",
                field_errors={"note": ["Required for a suspicious verdict."]})
        version.submitted_by = actor
        version.submitted_at = timezone.now()
        version.submit_note = note.strip()
        version.save(update_fields=["submitted_by", "submitted_at", "submit_note", "updated_at"])
        audit.record(action="model_version.submitted", actor=actor, target=version,
                     details={"verdict": version.scan_verdict, "note": version.submit_note})
    return version


def _publishing(version: ModelVersion) -> bool:
    """An approval is copying the image right now (it claimed the version with `progress_at`;
    a claim older than MODEL_SCAN_STALE_MINUTES lost its request and counts no more)."""
    cutoff = timezone.now() - timedelta(minutes=settings.MODEL_SCAN_STALE_MINUTES)
    return (version.status == VersionStatus.AWAITING_APPROVAL
            and version.progress_at is not None and version.progress_at > cutoff)


def _claim_for_approval(*, actor, version: ModelVersion) -> tuple[ModelVersion, datetime]:
    """Check the approval rules under the row lock and claim the version (`progress_at`), so
    that a second approval or a rejection waits its turn; (version, claim)."""
    with transaction.atomic():
        version = (ModelVersion.objects.select_for_update().select_related("model")
                   .get(pk=version.pk))
        if version.status != VersionStatus.AWAITING_APPROVAL or not version.submitted_at:
            raise ApplicationError("Only a version submitted for approval can be approved.")
        if actor.pk in (version.uploaded_by_id, version.submitted_by_id):
            raise ApplicationError("Four-eyes rule: the person who uploaded or submitted this "
                                   "version can't approve it. Ask another MSP admin.")
        if version.scan_verdict not in (ScanVerdict.CLEAN, ScanVerdict.SUSPICIOUS):
            raise ApplicationError("The version has no passing scan.")
        if _publishing(version):
            raise ApplicationError("Another approval is publishing this version right now; "
                                   "reload in a minute.")
        if not oci.registry_configured():  # refused before anything is claimed
            raise oci.RegistryNotConfigured()
        claimed_at = timezone.now()
        ModelVersion.objects.filter(pk=version.pk).update(progress_at=claimed_at)
    return version, claimed_at


def _sign_and_copy(*, actor, version: ModelVersion) -> tuple[str, str]:
    """Copy the image by digest to the trusted repository, sign its files (OMS) and the
    statement, and attach both signatures to the copied image; (statement artifact digest,
    OMS artifact digest). Fills in the signature fields of `version` (not saved)."""
    client = oci.registry_client()
    target = trusted_repository(version.model)
    copied = client.copy_by_digest(source=version.landing_repository, target=target,
                                   digest=version.manifest_digest, tag=version.version)
    version.trusted_repository = target
    # The SBOM that is signed carries the model's Annex XII information as it is now.
    version.sbom = sbom_build(version, ScanReport.from_dict(version.scan_report or {}))
    version.sbom_digest = oci.sha256_digest(version.sbom.encode())
    version_sign(version, approver_email=actor.email)
    payload = canonical({"statement": json.loads(version.signed_statement),
                         "signature": version.signature, "key_id": version.signature_key_id})
    created = version.signed_at.isoformat()
    approval = client.artifact_attach(
        target, subject=copied, artifact_type=APPROVAL_ARTIFACT_TYPE, payload=payload,
        payload_media_type=APPROVAL_ARTIFACT_TYPE,
        annotations={"org.opencontainers.image.created": created,
                     "org.opencontainers.image.title": f"{version} approval"})
    model_signature = client.artifact_attach(
        target, subject=copied, artifact_type=oms.BUNDLE_MEDIA_TYPE,
        payload=version.model_signature.encode(), payload_media_type=oms.BUNDLE_MEDIA_TYPE,
        annotations={"org.opencontainers.image.created": created,
                     "org.opencontainers.image.title": f"{version} model signature",
                     "dev.sigstore.bundle.predicateType": oms.PREDICATE_TYPE})
    return approval, model_signature


@transaction.atomic
def _publish(*, actor, version: ModelVersion, claimed_at: datetime, artifact: str,
             model_signature_artifact: str) -> None:
    """Mark the signed, copied version published (if the claim still holds), and record the
    first check of its signature."""
    now = timezone.now()
    published = ModelVersion.objects.filter(
        pk=version.pk, status=VersionStatus.AWAITING_APPROVAL, progress_at=claimed_at
    ).update(
        status=VersionStatus.PUBLISHED, status_reason="",
        trusted_repository=version.trusted_repository,
        sbom=version.sbom, sbom_digest=version.sbom_digest,
        signed_statement=version.signed_statement, signature=version.signature,
        signature_key_id=version.signature_key_id, signed_at=version.signed_at,
        signature_artifact_digest=artifact, model_signature=version.model_signature,
        model_signature_artifact_digest=model_signature_artifact,
        approved_by=actor, approved_at=now,
        progress_at=None, updated_at=now)
    if not published:
        raise ApplicationError("The version changed while it was being published; "
                               "reload and check its status.")
    version.refresh_from_db()
    check = version_verify(version)
    record_check(version, check, at=now)
    audit.record(action="model_version.published", actor=actor, target=version,
                 details={"model": version.model.slug, "version": version.version,
                          "from": VersionStatus.AWAITING_APPROVAL,
                          "to": VersionStatus.PUBLISHED, "digest": version.manifest_digest,
                          "trusted_repository": version.trusted_repository,
                          "key_id": version.signature_key_id, "signature_artifact": artifact,
                          "model_signature_artifact": model_signature_artifact,
                          "signature_check": version.signature_status})
    bump_gateway_config()


def version_approve(*, actor, version: ModelVersion) -> ModelVersion:
    """Four-eyes approval: copy the image by digest from landing to trusted, sign its files
    (OMS) and the statement, attach both signatures to it in the registry, publish. The
    database says "published" only after every registry step succeeded.

    No lock is held while the registry works: a short transaction checks the rules and claims
    the version, the registry steps run outside any transaction, and a second short
    transaction publishes."""
    version, claimed_at = _claim_for_approval(actor=actor, version=version)
    try:
        artifact, model_signature_artifact = _sign_and_copy(actor=actor, version=version)
    except BaseException as exc:
        # Whatever stopped the registry steps, the claim goes: the next approval may try again.
        ModelVersion.objects.filter(pk=version.pk, progress_at=claimed_at).update(
            progress_at=None)
        if isinstance(exc, oci.RegistryError):
            raise ApplicationError(f"Publishing failed, nothing was published: {exc}") from None
        if isinstance(exc, oms.ModelSigningKeyError):
            raise ApplicationError(f"The model files could not be signed, nothing was "
                                   f"published: {exc}. Check PLATFORM_MODEL_SIGNING_KEY_FILE."
                                   ) from None
        raise
    _publish(actor=actor, version=version, claimed_at=claimed_at, artifact=artifact,
             model_signature_artifact=model_signature_artifact)
    return version


def version_reject(*, actor, version: ModelVersion, reason: str) -> ModelVersion:
    reason = reason.strip()
    if not reason:
        raise ApplicationError("Say why the version is rejected.",
                               field_errors={"reason": ["Required."]})
    if VersionStatus.REJECTED not in VERSION_TRANSITIONS[version.status] or \
            version.status == VersionStatus.SCANNING:
        raise ApplicationError(f"A {version.get_status_display().lower()} version can't be "
                               "rejected.")
    with transaction.atomic():
        # Under the row lock an approval takes to claim the version: either the approval
        # claimed it first (refused here) or it will find the version rejected.
        if _publishing(ModelVersion.objects.select_for_update().get(pk=version.pk)):
            raise ApplicationError("An approval is publishing this version right now; "
                                   "reload in a minute.")
        if not transition(version, to=VersionStatus.REJECTED, actor=actor, action="rejected",
                          reason=reason, work_error="", progress_at=None):
            raise ApplicationError("The version changed meanwhile; reload and try again.")
    return version
