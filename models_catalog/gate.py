"""Services of the supply-chain gate: every status change of a ModelVersion happens here.

uploading → quarantined → scanning → rejected | awaiting_approval → published → deprecated →
retired, following `VERSION_TRANSITIONS`. Each change is a compare-and-set on the current
status (so two workers, or a worker and a person, never both move a version) and is audited
in the same transaction. Background steps (push, scan) never leave a version stuck: content
problems reject it with the reason; registry problems keep its status, say what went wrong
in `work_error`, and may be retried; beat takes over work whose worker died.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from models_catalog import registry as oci
from models_catalog.models import (
    VERSION_TRANSITIONS,
    Model,
    ModelFile,
    ModelVersion,
    ScanVerdict,
    UploadSession,
    UploadStatus,
    VersionStatus,
)
from models_catalog.signing import canonical, version_sign
from portal.api import ApplicationError
from portal.gateway_config import bump_gateway_config

if TYPE_CHECKING:
    from models_catalog.scanning.disk import DiskQuota

logger = logging.getLogger(__name__)

APPROVAL_ARTIFACT_TYPE = "application/vnd.sovereign-portal.model-approval.v1+json"
MAX_SCAN_ATTEMPTS = 3
# What a registry outage looks like: the version keeps its status and can be retried.
TRANSIENT_ERRORS = (oci.RegistryUnavailable, oci.RegistryAuthError, oci.RegistryNotConfigured)


class ImageRefused(Exception):
    """The image's content can't pass the gate (unreadable archive, bad layout)."""


class UploadOffsetMismatch(ApplicationError):
    """The chunk does not start where the upload stands; `received` says where it does."""

    def __init__(self, received: int):
        super().__init__(f"The upload stands at byte {received}: resume from there.")
        self.received = received


def landing_repository(model: Model) -> str:
    return f"{settings.REGISTRY_LANDING_NAMESPACE}/{model.slug}"


def trusted_repository(model: Model) -> str:
    return f"{settings.REGISTRY_TRUSTED_NAMESPACE}/{model.slug}"


def _transition(version: ModelVersion, *, to: str, actor, action: str, reason: str = "",
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


# --- Creating versions -----------------------------------------------------------------

@transaction.atomic
def version_create(*, actor, model: Model, version: str, base_model: str = "",
                   training_data: str = "", source_commit: str = "",
                   hyperparameters: dict | None = None) -> ModelVersion:
    if ModelVersion.objects.filter(model=model, version=version).exists():
        message = f"{model.slug} already has a version “{version}”: choose a new label."
        raise ApplicationError(message, field_errors={"version": [message]})
    mv = ModelVersion(model=model, version=version, status=VersionStatus.UPLOADING,
                      landing_repository=landing_repository(model), base_model=base_model,
                      training_data=training_data, source_commit=source_commit,
                      hyperparameters=hyperparameters or {}, uploaded_by=actor)
    mv.full_clean()
    mv.save()
    audit.record(action="model_version.created", actor=actor, target=mv,
                 details={"model": model.slug, "version": version, "base_model": base_model,
                          "source_commit": source_commit})
    return mv


def version_register_reference(*, actor, version: ModelVersion, repository: str,
                               reference: str) -> ModelVersion:
    """Pin an image already pushed to the landing namespace (tag or digest) and quarantine
    the version for scanning."""
    partial = UploadSession.objects.filter(version=version).first()
    if version.status != VersionStatus.UPLOADING or (
            partial is not None and partial.status != UploadStatus.RECEIVING):
        raise ApplicationError("This version already has an image.")
    if not oci.registry_configured():
        raise oci.RegistryNotConfigured()
    repository = repository.strip().strip("/")
    reference = reference.strip()
    prefix = settings.REGISTRY_LANDING_NAMESPACE + "/"
    errors: dict[str, list[str]] = {}
    if not repository.startswith(prefix):
        errors["repository"] = [f"Use a repository in the landing namespace, e.g. "
                                f"{prefix}{version.model.slug}."]
    else:
        try:
            oci.check_repository(repository)
        except oci.RegistryError as exc:
            errors["repository"] = [str(exc)]
    if not (oci.DIGEST_RE.match(reference) or oci.TAG_RE.match(reference)):
        errors["reference"] = ["Give a tag (e.g. 1.0) or a digest (sha256:…)."]
    if errors:
        raise ApplicationError("The image reference is not valid.", field_errors=errors)
    try:
        manifest = oci.registry_client().manifest_get(repository, reference)
        config, layers = manifest.image_blobs()
    except oci.RegistryNotFound:
        raise ApplicationError(f"{repository}:{reference} is not in the registry: push it "
                               "first, or check the name.",
                               field_errors={"reference": ["Not found in the registry."]}
                               ) from None
    except oci.RegistryError as exc:
        raise ApplicationError(str(exc)) from None
    size = config.size + sum(layer.size for layer in layers)
    if partial is not None:  # an interrupted browser upload is abandoned for the reference
        _upload_path(partial).unlink(missing_ok=True)
        partial.delete()
    moved = _transition(version, to=VersionStatus.QUARANTINED, actor=actor,
                        action="quarantined", landing_repository=repository,
                        manifest_digest=manifest.digest, manifest_media_type=manifest.media_type,
                        size_bytes=size, work_error="",
                        details={"source": "reference", "repository": repository,
                                 "reference": reference, "digest": manifest.digest})
    if moved:
        transaction.on_commit(lambda: _enqueue_scan(version.pk))
    return version


# --- Resumable browser uploads ---------------------------------------------------------

def _upload_path(session: UploadSession) -> Path:
    return Path(settings.MODEL_UPLOAD_DIR) / f"{session.pk}.tar"


@transaction.atomic
def upload_session_create(*, actor, version: ModelVersion, filename: str,
                          size_bytes: int) -> UploadSession:
    previous = UploadSession.objects.filter(version=version).first()
    if version.status != VersionStatus.UPLOADING or (
            previous is not None and previous.status != UploadStatus.RECEIVING):
        raise ApplicationError("This version already has an image.")
    if not oci.registry_configured():
        raise oci.RegistryNotConfigured()
    if size_bytes <= 0:
        raise ApplicationError("The file is empty.", field_errors={"size_bytes": ["Empty."]})
    if size_bytes > settings.MODEL_UPLOAD_MAX_BYTES:
        raise ApplicationError(
            f"The file is larger than the {settings.MODEL_UPLOAD_MAX_BYTES:,} bytes allowed "
            "(MODEL_UPLOAD_MAX_BYTES).", field_errors={"size_bytes": ["Too large."]})
    if previous is not None:  # another file than the interrupted one: start over
        _upload_path(previous).unlink(missing_ok=True)
        previous.delete()
        version.upload = None
    session = UploadSession.objects.create(version=version, filename=Path(filename).name[:255],
                                           size_bytes=size_bytes, created_by=actor)
    path = _upload_path(session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    audit.record(action="model_version.upload_started", actor=actor, target=version,
                 details={"filename": session.filename, "size_bytes": size_bytes})
    return session


def upload_chunk_append(*, session: UploadSession, offset: int, length: int,
                        stream: IO[bytes]) -> UploadSession:
    """Append `length` bytes read from `stream` at `offset`, which must be where the upload
    stands; the chunk is copied in small pieces, never held whole in memory."""
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session.pk)
        if session.status != UploadStatus.RECEIVING:
            raise ApplicationError("This upload is complete; nothing more is accepted.")
        if offset != session.received_bytes:
            raise UploadOffsetMismatch(session.received_bytes)
        if length <= 0 or offset + length > session.size_bytes:
            raise ApplicationError(f"The chunk goes past the announced size of "
                                   f"{session.size_bytes} bytes.")
        path = _upload_path(session)
        written = 0
        with path.open("r+b") as target:
            target.truncate(offset)  # drop the tail of a chunk that broke off mid-way
            target.seek(offset)
            while written < length:
                piece = stream.read(min(1024 * 1024, length - written))
                if not piece:
                    break
                target.write(piece)
                written += len(piece)
        if written != length:
            # The connection dropped mid-chunk: keep only whole chunks; the client resumes.
            with path.open("r+b") as target:
                target.truncate(offset)
            raise ApplicationError(f"The chunk ended after {written} of {length} bytes: "
                                   f"resume from byte {offset}.")
        session.received_bytes = offset + length
        session.save(update_fields=["received_bytes", "updated_at"])
    return session


def upload_complete(*, actor, session: UploadSession) -> UploadSession:
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session.pk)
        if session.status == UploadStatus.RECEIVING:
            if session.received_bytes != session.size_bytes:
                raise ApplicationError(f"Only {session.received_bytes} of {session.size_bytes} "
                                       "bytes have arrived: send the rest first.")
            session.status = UploadStatus.RECEIVED
            session.save(update_fields=["status", "updated_at"])
            ModelVersion.objects.filter(pk=session.version_id).update(
                progress_at=timezone.now(), work_error="",
                scan_progress={"phase": "pushing", "done": 0, "total": 0})
            audit.record(action="model_version.upload_received", actor=actor,
                         target=session.version,
                         details={"filename": session.filename, "size_bytes": session.size_bytes})
            transaction.on_commit(lambda: _enqueue_push(session.version_id))
    return session


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
            transaction.on_commit(lambda: _enqueue_push(version.pk))
        elif version.status == VersionStatus.QUARANTINED:
            transaction.on_commit(lambda: _enqueue_scan(version.pk))
    version.refresh_from_db()
    return version


def _enqueue_push(version_id: int) -> None:
    from models_catalog.tasks import push_upload

    push_upload.delay(version_id)


def _enqueue_scan(version_id: int) -> None:
    from models_catalog.tasks import scan_version

    scan_version.delay(version_id)


def _progress(version: ModelVersion, phase: str, done: int = 0, total: int = 0, **extra) -> None:
    ModelVersion.objects.filter(pk=version.pk, status=version.status).update(
        scan_progress={"phase": phase, "done": done, "total": total, **extra},
        progress_at=timezone.now())


def _reject(version: ModelVersion, reason: str, **details) -> None:
    _transition(version, to=VersionStatus.REJECTED, actor=None, action="rejected",
                reason=reason, details=details, progress_at=None, work_error="",
                scan_progress={})


def _fail_transiently(version: ModelVersion, message: str) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(work_error=message, progress_at=None)
    audit.record(action="model_version.work_failed", actor=None, target=version,
                 details={"status": version.status, "error": message})


def version_push_upload(*, version_id: int) -> ModelVersion | None:
    """Push the received archive to the landing repository blob by blob, digest-checked,
    then quarantine the version. Idempotent: blobs already there are skipped."""
    version = ModelVersion.objects.select_related("model", "upload").filter(
        pk=version_id, status=VersionStatus.UPLOADING,
        upload__status=UploadStatus.RECEIVED).first()
    if version is None:
        return None
    session = version.upload
    path = _upload_path(session)
    try:
        image = _read_archive(path)
        manifest = oci.Manifest(raw=image.manifest_bytes, digest=image.manifest_digest,
                                media_type=oci.manifest_media_type(image.manifest_bytes))
        if oci.sha256_digest(image.manifest_bytes) != image.manifest_digest:
            raise oci.DigestMismatch("The archive's manifest does not match its digest.")
        config, layers = manifest.image_blobs()
        client = oci.registry_client()
        repository = version.landing_repository
        blobs = [config, *layers]
        for done, descriptor in enumerate(blobs):
            _progress(version, "pushing", done, len(blobs))
            with image.open_blob(descriptor.digest) as stream:
                client.blob_upload(repository, descriptor.digest, stream, descriptor.size)
        client.manifest_put(repository, manifest.digest, manifest.raw, manifest.media_type)
        client.manifest_put(repository, version.version, manifest.raw, manifest.media_type)
    except TRANSIENT_ERRORS as exc:
        _fail_transiently(version, f"Pushing to the landing repository failed: {exc}")
        return version
    except (ImageRefused, oci.RegistryError) as exc:
        with transaction.atomic():
            UploadSession.objects.filter(pk=session.pk).update(status=UploadStatus.FAILED)
            _reject(version, f"The uploaded archive was refused: {exc}",
                    filename=session.filename)
        path.unlink(missing_ok=True)
        return version
    except Exception as exc:  # a bug or an unforeseen failure must not leave it stuck
        logger.exception("Pushing version %s failed", version.pk)
        _fail_transiently(version, f"Pushing failed unexpectedly ({exc.__class__.__name__}); "
                                   "retry, and tell the operator if it happens again.")
        return version
    size = config.size + sum(layer.size for layer in layers)
    with transaction.atomic():
        UploadSession.objects.filter(pk=session.pk).update(status=UploadStatus.PUSHED)
        moved = _transition(version, to=VersionStatus.QUARANTINED, actor=None,
                            action="quarantined", manifest_digest=manifest.digest,
                            manifest_media_type=manifest.media_type, size_bytes=size,
                            work_error="", progress_at=None, scan_progress={},
                            details={"source": "upload", "filename": session.filename,
                                     "repository": version.landing_repository,
                                     "digest": manifest.digest})
        if moved:
            transaction.on_commit(lambda: _enqueue_scan(version.pk))
    path.unlink(missing_ok=True)
    return version


def _read_archive(path: Path):
    """The OCI image in an uploaded archive (OCI layout or `docker save`)."""
    from models_catalog.scanning import UnreadableArchive, read_oci_archive

    try:
        return read_oci_archive(path)
    except UnreadableArchive as exc:
        raise ImageRefused(f"the archive can't be read: {exc}") from exc


# --- Scanning ----------------------------------------------------------------------------

def version_scan(*, version_id: int) -> ModelVersion | None:
    """Claim a quarantined version, fetch its image from the landing repository by digest
    (every blob verified), scan it, store inventory, report, verdict and SBOM."""
    version = ModelVersion.objects.select_related("model").filter(
        pk=version_id, status=VersionStatus.QUARANTINED, work_error="").first()
    if version is None:
        return None
    if not _transition(version, to=VersionStatus.SCANNING, actor=None, action="scan_started",
                       scan_attempts=version.scan_attempts + 1, progress_at=timezone.now(),
                       scan_progress={"phase": "fetching", "done": 0, "total": 0}):
        return None  # another worker claimed it
    from models_catalog.scanning import DiskQuota, ScanAborted

    workdir = Path(settings.MODEL_SCAN_WORKDIR) / f"version-{version.pk}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    quota = DiskQuota(settings.MODEL_SCAN_DISK_QUOTA_BYTES, workdir)
    try:
        layers = _fetch_layers(version, workdir, quota)
        report, sbom = _scan_layers(version, layers, workdir, quota)
    except ScanAborted as exc:  # no room: nothing is wrong with the image, retry when there is
        _transition(version, to=VersionStatus.QUARANTINED, actor=None, action="scan_interrupted",
                    reason="", work_error=str(exc), progress_at=None, scan_progress={})
        return version
    except TRANSIENT_ERRORS as exc:
        _transition(version, to=VersionStatus.QUARANTINED, actor=None, action="scan_interrupted",
                    reason="", work_error=f"The scan could not reach the registry: {exc}",
                    progress_at=None, scan_progress={})
        return version
    except (ImageRefused, oci.RegistryError) as exc:
        _reject(version, f"The image failed verification: {exc}")
        return version
    except Exception as exc:  # a bug or an unforeseen failure must not leave it "scanning"
        logger.exception("Scanning version %s failed", version.pk)
        _transition(version, to=VersionStatus.QUARANTINED, actor=None, action="scan_interrupted",
                    work_error=f"The scan failed unexpectedly ({exc.__class__.__name__}); "
                               "retry, and tell the operator if it happens again.",
                    progress_at=None, scan_progress={})
        return version
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _store_scan_result(version, report, sbom)
    return version


def _fetch_layers(version: ModelVersion, workdir: Path,
                  quota: DiskQuota) -> list[tuple[oci.Descriptor, Path]]:
    """Check there is disk space for the image's layers and what they unpack to, then
    download every layer of the pinned manifest to `workdir`, each digest-verified and
    charged to the scan's disk quota."""
    from models_catalog.scanning.disk import size_text

    client = oci.registry_client()
    manifest = client.manifest_get(version.landing_repository, version.manifest_digest)
    config, layers = manifest.image_blobs()
    total = sum(layer.size for layer in layers)
    quota.ensure_free_space(2 * total, f"download the image's layers ({size_text(total)}) "
                                       "and unpack them")
    for _chunk in client.blob_chunks(version.landing_repository, config):
        pass  # the config blob is verified too, though only the layers are scanned
    fetched = 0
    paths = []
    for index, descriptor in enumerate(layers):
        path = workdir / f"layer-{index}"
        with path.open("wb") as target:
            for chunk in client.blob_chunks(version.landing_repository, descriptor):
                quota.charge(len(chunk), f"layer {index + 1} of {len(layers)}")
                target.write(chunk)
                fetched += len(chunk)
                if fetched % (64 * 1024 * 1024) < len(chunk):
                    _progress(version, "fetching", fetched, total)
        paths.append((descriptor, path))
    return paths


def _scan_layers(version: ModelVersion, layers: list[tuple[oci.Descriptor, Path]],
                 workdir: Path, quota: DiskQuota):
    """Run the scanner over the downloaded layers; build the SBOM. (report, sbom)."""
    from models_catalog.sbom import build_sbom
    from models_catalog.scanning import UnreadableArchive, policy_from_settings, scan_layers

    _progress(version, "scanning", 0, len(layers))

    def progress(done: int, total: int, path: str = "") -> None:
        _progress(version, "scanning", done, total, current=path)

    streams = []
    try:
        for descriptor, path in layers:
            streams.append((descriptor.media_type, path.open("rb")))
        report = scan_layers(streams, policy=policy_from_settings(), limits=None,
                             workdir=workdir / "extract", progress=progress,
                             keep=("tokenizer.json",), quota=quota)
    except UnreadableArchive as exc:
        raise ImageRefused(str(exc)) from exc
    finally:
        for _, stream in streams:
            stream.close()
    image_reference = (f"{oci.registry_host()}/{version.landing_repository}"
                       f"@{version.manifest_digest}")
    sbom = build_sbom(model=version.model, image_reference=image_reference,
                      manifest_digest=version.manifest_digest, report=report, version=version)
    return report, sbom


def _store_scan_result(version: ModelVersion, report, sbom: str) -> None:
    data = report.to_dict()
    with transaction.atomic():
        ModelFile.objects.filter(version=version).delete()
        ModelFile.objects.bulk_create([
            ModelFile(version=version, path=f.path, size_bytes=f.size, sha256=f.sha256,
                      format=f.format) for f in report.files])
        tokenizer = report.kept.get("tokenizer.json", b"").decode("utf-8", "replace")
        common = {"scan_verdict": report.verdict, "scan_report": data, "tokenizer": tokenizer,
                  "scanned_at": timezone.now(), "sbom": sbom,
                  "sbom_digest": oci.sha256_digest(sbom.encode()), "progress_at": None,
                  "scan_progress": {"phase": "done", "done": len(report.files),
                                    "total": len(report.files)}}
        details = {"verdict": report.verdict, "files": len(report.files),
                   "findings": len(report.findings)}
        if report.verdict == ScanVerdict.MALICIOUS or not report.passes_policy:
            worst = [f for f in report.findings if f.severity in ("critical", "high")] \
                or report.findings
            what = ("Malicious content" if report.verdict == ScanVerdict.MALICIOUS
                    else "Refused by the platform's scan policy")
            reason = f"{what}: " + "; ".join(f"{f.path}: {f.message}" for f in worst[:3])
            _transition(version, to=VersionStatus.REJECTED, actor=None, action="rejected",
                        reason=reason, details=details, **common)
        else:
            _transition(version, to=VersionStatus.AWAITING_APPROVAL, actor=None,
                        action="scanned", details=details, **common)


def versions_recover_stale() -> dict:
    """Beat: a push or scan whose worker stopped reporting is retried, or failed after
    MAX_SCAN_ATTEMPTS; nothing stays in "scanning" forever."""
    cutoff = timezone.now() - timedelta(minutes=settings.MODEL_SCAN_STALE_MINUTES)
    requeued, failed = [], []
    for version in ModelVersion.objects.filter(status=VersionStatus.SCANNING,
                                               progress_at__lt=cutoff):
        if version.scan_attempts >= MAX_SCAN_ATTEMPTS:
            if _transition(version, to=VersionStatus.REJECTED, actor=None, action="rejected",
                           reason=f"The scan did not finish in {version.scan_attempts} "
                                  "attempts; upload the image again or check the workers.",
                           progress_at=None, scan_progress={}):
                failed.append(version.pk)
        elif _transition(version, to=VersionStatus.QUARANTINED, actor=None,
                         action="scan_requeued", progress_at=None, scan_progress={}):
            transaction.on_commit(lambda pk=version.pk: _enqueue_scan(pk))
            requeued.append(version.pk)
    for version in ModelVersion.objects.filter(
            status=VersionStatus.UPLOADING, upload__status=UploadStatus.RECEIVED,
            work_error="", progress_at__lt=cutoff):
        ModelVersion.objects.filter(pk=version.pk).update(progress_at=timezone.now())
        transaction.on_commit(lambda pk=version.pk: _enqueue_push(pk))
        requeued.append(version.pk)
    return {"requeued": requeued, "failed": failed}


# --- Review, approval, publication --------------------------------------------------------

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


def version_approve(*, actor, version: ModelVersion) -> ModelVersion:
    """Four-eyes approval: sign the statement, copy the image by digest from landing to
    trusted, attach the signature to it in the registry, publish. The database says
    "published" only after every registry step succeeded.

    No lock is held while the registry works: a short transaction checks the rules and claims
    the version (so a second approval or a rejection waits its turn), the registry steps run
    outside any transaction, and a second short transaction publishes."""
    client = oci.registry_client()  # no registry configured: refused before anything is claimed
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
        claimed_at = timezone.now()
        ModelVersion.objects.filter(pk=version.pk).update(progress_at=claimed_at)
    target = trusted_repository(version.model)
    try:
        copied = client.copy_by_digest(source=version.landing_repository, target=target,
                                       digest=version.manifest_digest, tag=version.version)
        version.trusted_repository = target
        version_sign(version, approver_email=actor.email)
        payload = canonical({"statement": json.loads(version.signed_statement),
                             "signature": version.signature,
                             "key_id": version.signature_key_id})
        artifact = client.artifact_attach(
            target, subject=copied, artifact_type=APPROVAL_ARTIFACT_TYPE, payload=payload,
            payload_media_type=APPROVAL_ARTIFACT_TYPE,
            annotations={"org.opencontainers.image.created": version.signed_at.isoformat(),
                         "org.opencontainers.image.title": f"{version} approval"})
    except BaseException as exc:
        # Whatever stopped the registry steps, the claim goes: the next approval may try again.
        ModelVersion.objects.filter(pk=version.pk, progress_at=claimed_at).update(
            progress_at=None)
        if isinstance(exc, oci.RegistryError):
            raise ApplicationError(f"Publishing failed, nothing was published: {exc}") from None
        raise
    with transaction.atomic():
        now = timezone.now()
        published = ModelVersion.objects.filter(
            pk=version.pk, status=VersionStatus.AWAITING_APPROVAL, progress_at=claimed_at
        ).update(
            status=VersionStatus.PUBLISHED, status_reason="", trusted_repository=target,
            signed_statement=version.signed_statement, signature=version.signature,
            signature_key_id=version.signature_key_id, signed_at=version.signed_at,
            signature_artifact_digest=artifact, approved_by=actor, approved_at=now,
            progress_at=None, updated_at=now)
        if not published:
            raise ApplicationError("The version changed while it was being published; "
                                   "reload and check its status.")
        version.refresh_from_db()
        audit.record(action="model_version.published", actor=actor, target=version,
                     details={"model": version.model.slug, "version": version.version,
                              "from": VersionStatus.AWAITING_APPROVAL,
                              "to": VersionStatus.PUBLISHED, "digest": version.manifest_digest,
                              "trusted_repository": target, "key_id": version.signature_key_id,
                              "signature_artifact": artifact})
        bump_gateway_config()
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
        if not _transition(version, to=VersionStatus.REJECTED, actor=actor, action="rejected",
                           reason=reason, work_error="", progress_at=None):
            raise ApplicationError("The version changed meanwhile; reload and try again.")
    return version


LIFECYCLE_ACTIONS = {
    VersionStatus.DEPRECATED: "deprecated",
    VersionStatus.RETIRED: "retired",
    VersionStatus.PUBLISHED: "reinstated",
}


def version_set_lifecycle(*, actor, version: ModelVersion, status: str) -> ModelVersion:
    """Deprecate (no new deployments), retire (no serving) or reinstate a published version."""
    if status not in LIFECYCLE_ACTIONS or status not in VERSION_TRANSITIONS[version.status]:
        raise ApplicationError(f"A {version.get_status_display().lower()} version can't become "
                               f"{status}.", field_errors={"status": ["Not allowed from here."]})
    with transaction.atomic():
        if not _transition(version, to=status, actor=actor, action=LIFECYCLE_ACTIONS[status]):
            raise ApplicationError("The version changed meanwhile; reload and try again.")
        bump_gateway_config()
    return version


def model_update_card(*, actor, model: Model, **fields) -> Model:
    """Edit a model's descriptive fields (card, license, provider, context length)."""
    allowed = {"name", "description", "model_card", "provider", "license", "context_length"}
    unknown = set(fields) - allowed
    if unknown:
        raise ApplicationError(f"Can't change {', '.join(sorted(unknown))} here.")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(model, name, value)
        model.full_clean()
        model.save()
        audit.record(action="model.updated", actor=actor, target=model,
                     details={"fields": sorted(fields)})
    return model
