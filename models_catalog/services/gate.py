"""The supply-chain gate's state machine: every status change of a ModelVersion goes through
`transition`.

uploading → quarantined → scanning → rejected | awaiting_approval → published → deprecated →
retired, following `VERSION_TRANSITIONS`. Each change is a compare-and-set on the current
status (so two workers, or a worker and a person, never both move a version) and is audited
in the same transaction. Background steps (push, scan) never leave a version stuck: content
problems reject it with the reason; registry problems keep its status, say what went wrong
in `work_error`, and may be retried; beat takes over work whose worker died.

The steps themselves live beside this module: `uploads` (the image comes in), `scan`,
`approval` (review, signing, publication), `lifecycle` (deprecate, retire).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from models_catalog import registry as oci
from models_catalog.models import (
    VERSION_TRANSITIONS,
    Model,
    ModelVersion,
    UploadStatus,
    VersionStatus,
)
from portal.api import ApplicationError, full_clean_or_refuse

MAX_SCAN_ATTEMPTS = 3
# What a registry outage looks like: the version keeps its status and can be retried.
TRANSIENT_ERRORS = (oci.RegistryUnavailable, oci.RegistryAuthError, oci.RegistryNotConfigured)


class ImageRefused(Exception):
    """The image's content can't pass the gate (unreadable archive, bad layout)."""


def landing_repository(model: Model) -> str:
    return f"{settings.REGISTRY_LANDING_NAMESPACE}/{model.slug}"


def trusted_repository(model: Model) -> str:
    return f"{settings.REGISTRY_TRUSTED_NAMESPACE}/{model.slug}"


def transition(version: ModelVersion, *, to: str, actor, action: str, reason: str = "",
               details: dict | None = None, **updates) -> bool:
    """Move `version` from the status it was loaded with to `to`, if nobody else did first.
    Returns False (and changes nothing) when the status moved meanwhile."""
    current = version.status
    if to not in VERSION_TRANSITIONS[current]:
        raise ApplicationError(f"A {version.get_status_display().lower()} version can't become "
                               f"{VersionStatus(to).label.lower()}.")
    now = timezone.now()
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk, status=current).update(
            status=to, status_reason=reason, updated_at=now, **updates)
        if not changed:
            return False
        version.refresh_from_db()
        audit.record(action=f"model_version.{action}", actor=actor, target=version,
                     details={"model": version.model.slug, "version": version.version,
                              "from": current, "to": to,
                              **({"reason": reason} if reason else {}), **(details or {})})
    return True


def reject(version: ModelVersion, reason: str, **details) -> None:
    """The image can't pass: rejected by the gate itself (no person), with the reason."""
    transition(version, to=VersionStatus.REJECTED, actor=None, action="rejected",
               reason=reason, details=details, progress_at=None, work_error="",
               scan_progress={})


def report_progress(version: ModelVersion, phase: str, done: int = 0, total: int = 0,
                    **extra) -> None:
    """What the background step is doing, for the progress panel and for beat's recovery."""
    ModelVersion.objects.filter(pk=version.pk, status=version.status).update(
        scan_progress={"phase": phase, "done": done, "total": total, **extra},
        progress_at=timezone.now())


def fail_transiently(version: ModelVersion, message: str) -> None:
    """A step failed for reasons outside the image: the version keeps its status and waits
    for a retry."""
    ModelVersion.objects.filter(pk=version.pk).update(work_error=message, progress_at=None)
    audit.record(action="model_version.work_failed", actor=None, target=version,
                 details={"status": version.status, "error": message})


def enqueue_push(version_id: int) -> None:
    from models_catalog.tasks import push_upload

    push_upload.delay(version_id)


def enqueue_scan(version_id: int) -> None:
    from models_catalog.tasks import scan_version

    scan_version.delay(version_id)


# --- Entering the gate, and getting unstuck ------------------------------------------------

@transaction.atomic
def version_create(*, actor, model: Model, version: str, base_model: str = "",
                   training_data: str = "", source_commit: str = "",
                   hyperparameters: dict | None = None, base_version: ModelVersion | None = None,
                   base_model_digest: str = "",
                   datasets: Iterable[tuple[str, str]] = ()) -> ModelVersion:
    from models_catalog.services.lineage import make_lineage, store_lineage

    if ModelVersion.objects.filter(model=model, version=version).exists():
        message = f"{model.slug} already has a version “{version}”: choose a new label."
        raise ApplicationError(message, field_errors={"version": [message]})
    lineage = make_lineage(base_version=base_version, base_model=base_model,
                           base_model_digest=base_model_digest, datasets=datasets)
    mv = ModelVersion(model=model, version=version, status=VersionStatus.UPLOADING,
                      landing_repository=landing_repository(model),
                      base_model=lineage.base_model, training_data=training_data,
                      source_commit=source_commit, hyperparameters=hyperparameters or {},
                      uploaded_by=actor)
    full_clean_or_refuse(mv)
    mv.save()
    store_lineage(mv, lineage)
    mv.refresh_from_db()
    audit.record(action="model_version.created", actor=actor, target=mv,
                 details={"model": model.slug, "version": version, "base_model": lineage.base_model,
                          "source_commit": source_commit, "lineage": lineage.as_dict()})
    return mv


def version_retry(*, actor, version: ModelVersion) -> ModelVersion:
    """Retry the background step that failed for reasons outside the image."""
    if not version.work_error:
        raise ApplicationError("Nothing to retry: the version is not waiting on a failed step.")
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(work_error="",
                                                          progress_at=timezone.now())
        audit.record(action="model_version.retried", actor=actor, target=version,
                     details={"status": version.status, "error": version.work_error})
        if version.status == VersionStatus.UPLOADING:
            transaction.on_commit(lambda: enqueue_push(version.pk))
        elif version.status == VersionStatus.QUARANTINED:
            transaction.on_commit(lambda: enqueue_scan(version.pk))
    version.refresh_from_db()
    return version


def versions_recover_stale() -> dict:
    """Beat: a push or scan whose worker stopped reporting is retried, or failed after
    MAX_SCAN_ATTEMPTS; nothing stays in "scanning" forever."""
    cutoff = timezone.now() - timedelta(minutes=settings.MODEL_SCAN_STALE_MINUTES)
    requeued, failed = [], []
    for version in ModelVersion.objects.filter(status=VersionStatus.SCANNING,
                                               progress_at__lt=cutoff):
        if version.scan_attempts >= MAX_SCAN_ATTEMPTS:
            if transition(version, to=VersionStatus.REJECTED, actor=None, action="rejected",
                          reason=f"The scan did not finish in {version.scan_attempts} "
                                 "attempts; upload the image again or check the workers.",
                          progress_at=None, scan_progress={}):
                failed.append(version.pk)
        elif transition(version, to=VersionStatus.QUARANTINED, actor=None,
                        action="scan_requeued", progress_at=None, scan_progress={}):
            transaction.on_commit(lambda pk=version.pk: enqueue_scan(pk))
            requeued.append(version.pk)
    for version in ModelVersion.objects.filter(
            status=VersionStatus.UPLOADING, upload__status=UploadStatus.RECEIVED,
            work_error="", progress_at__lt=cutoff):
        ModelVersion.objects.filter(pk=version.pk).update(progress_at=timezone.now())
        transaction.on_commit(lambda pk=version.pk: enqueue_push(pk))
        requeued.append(version.pk)
    return {"requeued": requeued, "failed": failed}
