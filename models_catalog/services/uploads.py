"""How a version's image enters the landing repository: a reference to an image pushed there
already, or a resumable upload of an archive that a worker then pushes blob by blob.

The upload protocol is one for every client (the wizard's script and API clients alike):
start an upload of a file (the same file name and size resume the interrupted upload), append
chunks at the offset the upload stands at, complete it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from models_catalog import registry as oci
from models_catalog.models import ModelVersion, UploadSession, UploadStatus, VersionStatus
from models_catalog.services import gate
from models_catalog.services.gate import (
    TRANSIENT_ERRORS,
    ImageRefused,
    fail_transiently,
    reject,
    report_progress,
    transition,
)
from portal.api import ApplicationError

logger = logging.getLogger(__name__)


class UploadOffsetMismatch(ApplicationError):
    """The chunk does not start where the upload stands; `received` says where it does."""

    def __init__(self, received: int):
        super().__init__(f"The upload stands at byte {received}: resume from there.")
        self.received = received


def _upload_path(session: UploadSession) -> Path:
    return Path(settings.MODEL_UPLOAD_DIR) / f"{session.pk}.tar"


def _discard(session: UploadSession) -> None:
    _upload_path(session).unlink(missing_ok=True)
    session.delete()


def _refuse_if_image_chosen(version: ModelVersion, upload: UploadSession | None) -> None:
    if version.status != VersionStatus.UPLOADING or (
            upload is not None and upload.status != UploadStatus.RECEIVING):
        raise ApplicationError("This version already has an image.")


# --- An image already in the landing repository -------------------------------------------

def _check_reference(version: ModelVersion, repository: str, reference: str) -> None:
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


def version_register_reference(*, actor, version: ModelVersion, repository: str,
                               reference: str) -> ModelVersion:
    """Pin an image already pushed to the landing namespace (tag or digest) and quarantine
    the version for scanning."""
    partial = UploadSession.objects.filter(version=version).first()
    _refuse_if_image_chosen(version, partial)
    if not oci.registry_configured():
        raise oci.RegistryNotConfigured()
    repository = repository.strip().strip("/")
    reference = reference.strip()
    _check_reference(version, repository, reference)
    try:
        manifest = oci.registry_client().manifest_get(repository, reference)
        config, layers = manifest.image_blobs()
        kind = manifest.artifact_kind
    except oci.RegistryNotFound:
        raise ApplicationError(f"{repository}:{reference} is not in the registry: push it "
                               "first, or check the name.",
                               field_errors={"reference": ["Not found in the registry."]}
                               ) from None
    except oci.RegistryError as exc:
        raise ApplicationError(str(exc)) from None
    size = config.size + sum(layer.size for layer in layers)
    if partial is not None:  # an interrupted browser upload is abandoned for the reference
        _discard(partial)
    moved = transition(version, to=VersionStatus.QUARANTINED, actor=actor,
                       action="quarantined", landing_repository=repository,
                       manifest_digest=manifest.digest, manifest_media_type=manifest.media_type,
                       artifact_kind=kind, size_bytes=size, work_error="",
                       details={"source": "reference", "repository": repository,
                                "reference": reference, "digest": manifest.digest,
                                "artifact_kind": kind})
    if moved:
        transaction.on_commit(lambda: gate.enqueue_scan(version.pk))
    return version


# --- Resumable uploads --------------------------------------------------------------------

@transaction.atomic
def upload_session_create(*, actor, version: ModelVersion, filename: str,
                          size_bytes: int) -> UploadSession:
    """Start receiving `filename`, or resume its interrupted upload: the same file name and
    size continue the version's upload where it stands; another file starts over."""
    filename = Path(filename).name[:255]
    previous = UploadSession.objects.filter(version=version).first()
    if previous is not None and (previous.filename, previous.size_bytes) == (filename,
                                                                             size_bytes):
        return previous
    _refuse_if_image_chosen(version, previous)
    if not oci.registry_configured():
        raise oci.RegistryNotConfigured()
    if size_bytes <= 0:
        raise ApplicationError("The file is empty.", field_errors={"size_bytes": ["Empty."]})
    if size_bytes > settings.MODEL_UPLOAD_MAX_BYTES:
        raise ApplicationError(
            f"The file is larger than the {settings.MODEL_UPLOAD_MAX_BYTES:,} bytes allowed "
            "(MODEL_UPLOAD_MAX_BYTES).", field_errors={"size_bytes": ["Too large."]})
    if previous is not None:  # another file than the interrupted one: start over
        _discard(previous)
        version.upload = None
    session = UploadSession.objects.create(version=version, filename=filename,
                                           size_bytes=size_bytes, created_by=actor)
    path = _upload_path(session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    audit.record(action="model_version.upload_started", actor=actor, target=version,
                 details={"filename": session.filename, "size_bytes": size_bytes})
    return session


def _copy_chunk(path: Path, offset: int, length: int, stream: IO[bytes]) -> int:
    """Write up to `length` bytes of `stream` at `offset`, in small pieces; how many came."""
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
            target.truncate(offset)
    return written


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
        written = _copy_chunk(_upload_path(session), offset, length, stream)
        if written != length:
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
            transaction.on_commit(lambda: gate.enqueue_push(session.version_id))
    return session


# --- The worker's push to the landing repository ------------------------------------------

def _read_archive(path: Path):
    """The OCI image in an uploaded archive (OCI layout or `docker save`)."""
    from models_catalog.scanning import UnreadableArchive, read_oci_archive

    try:
        return read_oci_archive(path)
    except UnreadableArchive as exc:
        raise ImageRefused(f"the archive can't be read: {exc}") from exc


def _push_archive(version: ModelVersion, path: Path) -> tuple[oci.Manifest, int]:
    """Push the archive's blobs and manifest (by digest and by the version's tag) to the
    landing repository — a ModelCar image or a ModelPack artifact; (manifest, size)."""
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
        report_progress(version, "pushing", done, len(blobs))
        with image.open_blob(descriptor.digest) as stream:
            client.blob_upload(repository, descriptor.digest, stream, descriptor.size)
    client.manifest_put(repository, manifest.digest, manifest.raw, manifest.media_type)
    client.manifest_put(repository, version.version, manifest.raw, manifest.media_type)
    return manifest, config.size + sum(layer.size for layer in layers)


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
        manifest, size = _push_archive(version, path)
    except TRANSIENT_ERRORS as exc:
        fail_transiently(version, f"Pushing to the landing repository failed: {exc}")
        return version
    except (ImageRefused, oci.RegistryError) as exc:
        with transaction.atomic():
            UploadSession.objects.filter(pk=session.pk).update(status=UploadStatus.FAILED)
            reject(version, f"The uploaded archive was refused: {exc}", filename=session.filename)
        path.unlink(missing_ok=True)
        return version
    except Exception as exc:  # a bug or an unforeseen failure must not leave it stuck
        logger.exception("Pushing version %s failed", version.pk)
        fail_transiently(version, f"Pushing failed unexpectedly ({exc.__class__.__name__}); "
                                  "retry, and tell the operator if it happens again.")
        return version
    with transaction.atomic():
        UploadSession.objects.filter(pk=session.pk).update(status=UploadStatus.PUSHED)
        moved = transition(version, to=VersionStatus.QUARANTINED, actor=None,
                           action="quarantined", manifest_digest=manifest.digest,
                           manifest_media_type=manifest.media_type, size_bytes=size,
                           artifact_kind=manifest.artifact_kind,
                           work_error="", progress_at=None, scan_progress={},
                           details={"source": "upload", "filename": session.filename,
                                    "repository": version.landing_repository,
                                    "digest": manifest.digest,
                                    "artifact_kind": manifest.artifact_kind})
        if moved:
            transaction.on_commit(lambda: gate.enqueue_scan(version.pk))
    path.unlink(missing_ok=True)
    return version
