"""Checks of a published version's signed statement, recorded on the version with their time.

The statement is checked on publication, before each deploy, and when an MSP admin asks
("verify now"); pages show the recorded outcome instead of checking on every render. Other
apps ask here, never `models_catalog.signing` itself.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

import audit
from models_catalog.models import ModelVersion, SignatureCheck
from models_catalog.signing import Verification, version_verify, version_verify_registry
from portal.api import ApplicationError


def record_check(version: ModelVersion, check: Verification, *, at: datetime | None = None
                 ) -> None:
    """Store the outcome of a check on the version (and on `version` in memory). The row's
    `updated_at` is left alone: a check is not a change of the version."""
    fields = {"signature_status": SignatureCheck.VERIFIED if check.ok else SignatureCheck.FAILED,
              "signature_checked_at": at or timezone.now(), "signature_detail": check.reason}
    ModelVersion.objects.filter(pk=version.pk).update(**fields)
    for name, value in fields.items():
        setattr(version, name, value)


def version_verify_for_deploy(*, version: ModelVersion) -> Verification:
    """Before a deploy: does the signed statement still match the version exactly? Checked
    for real (signature and database, no network), and recorded."""
    check = version_verify(version)
    record_check(version, check)
    return check


def version_signature_verify(*, actor, version: ModelVersion) -> Verification:
    """"Verify now": the full check — the signature, the database, and the image and its
    signature artifact in the trusted registry — recorded and audited. The registry is asked
    before anything is written, outside any transaction."""
    if not version.signature:
        raise ApplicationError("This version is not signed: there is nothing to verify.")
    check = version_verify_registry(version)
    with transaction.atomic():
        record_check(version, check)
        audit.record(action="model_version.signature_checked", actor=actor, target=version,
                     details={"model": version.model.slug, "version": version.version,
                              "outcome": version.signature_status, "detail": check.reason})
    return check
