"""The gate's scan: a worker claims a quarantined version, fetches its image from the landing
repository by digest (every blob verified, every byte charged to a disk quota), scans the
layers, and stores the inventory, report, verdict and SBOM — awaiting approval, or rejected."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_catalog import registry as oci
from models_catalog.models import ModelFile, ModelVersion, ScanVerdict, VersionStatus
from models_catalog.services.gate import (
    TRANSIENT_ERRORS,
    ImageRefused,
    reject,
    report_progress,
    transition,
)

if TYPE_CHECKING:
    from models_catalog.scanning.disk import DiskQuota

logger = logging.getLogger(__name__)

def _interrupt(version: ModelVersion, work_error: str) -> None:
    """Nothing is wrong with the image, the scan could not finish: back to quarantine, with
    the reason, for a retry."""
    transition(version, to=VersionStatus.QUARANTINED, actor=None, action="scan_interrupted",
               work_error=work_error, progress_at=None, scan_progress={})


def version_scan(*, version_id: int) -> ModelVersion | None:
    """Claim a quarantined version, fetch its image from the landing repository by digest
    (every blob verified), scan it, store inventory, report, verdict and SBOM."""
    version = ModelVersion.objects.select_related("model").filter(
        pk=version_id, status=VersionStatus.QUARANTINED, work_error="").first()
    if version is None:
        return None
    if not transition(version, to=VersionStatus.SCANNING, actor=None, action="scan_started",
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
        _interrupt(version, str(exc))
        return version
    except TRANSIENT_ERRORS as exc:
        _interrupt(version, f"The scan could not reach the registry: {exc}")
        return version
    except (ImageRefused, oci.RegistryError) as exc:
        reject(version, f"The image failed verification: {exc}")
        return version
    except Exception as exc:  # a bug or an unforeseen failure must not leave it "scanning"
        logger.exception("Scanning version %s failed", version.pk)
        _interrupt(version, f"The scan failed unexpectedly ({exc.__class__.__name__}); "
                            "retry, and tell the operator if it happens again.")
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
    if manifest.artifact_kind == "modelpack":
        _check_modelpack(config, layers)
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
                    report_progress(version, "fetching", fetched, total)
        paths.append((descriptor, path))
    return paths


def _check_modelpack(config: oci.Descriptor, layers: list[oci.Descriptor]) -> None:
    """A ModelPack artifact's config and every layer must be of the ModelPack types: a layer
    the scanner would not unpack could carry anything past it."""
    from models_catalog.scanning import modelpack

    if config.media_type != modelpack.CONFIG_MEDIA_TYPE:
        raise ImageRefused(f"the ModelPack artifact's config has the media type "
                           f"{config.media_type!r}, not {modelpack.CONFIG_MEDIA_TYPE!r}")
    if not layers:
        raise ImageRefused("the ModelPack artifact has no layers")
    for layer in layers:
        problem = modelpack.layer_problem(layer.media_type,
                                          layer.annotations.get(modelpack.FILEPATH_ANNOTATION,
                                                                ""))
        if problem:
            raise ImageRefused(f"layer {layer.digest}: {problem}")


def _scan_layers(version: ModelVersion, layers: list[tuple[oci.Descriptor, Path]],
                 workdir: Path, quota: DiskQuota):
    """Run the scanner over the downloaded layers; build the SBOM. (report, sbom)."""
    from models_catalog.scanning import UnreadableArchive, policy_from_settings, scan_layers
    from models_catalog.scanning.modelpack import FILEPATH_ANNOTATION

    report_progress(version, "scanning", 0, len(layers))

    def progress(done: int, total: int, path: str = "") -> None:
        report_progress(version, "scanning", done, total, current=path)

    streams = []
    try:
        for descriptor, path in layers:
            streams.append((descriptor.media_type, path.open("rb"),
                            descriptor.annotations.get(FILEPATH_ANNOTATION, "")))
        report = scan_layers(streams, policy=policy_from_settings(), limits=None,
                             workdir=workdir / "extract", progress=progress,
                             keep=("tokenizer.json",), quota=quota)
    except UnreadableArchive as exc:
        raise ImageRefused(str(exc)) from exc
    finally:
        for _, stream, _ in streams:
            stream.close()
    return report, sbom_build(version, report)


def sbom_build(version: ModelVersion, report) -> str:
    """The version's SBOM, its model card filled with the model's current Annex XII
    information (built at the scan, and again at approval just before it is signed)."""
    from models_catalog.sbom import build_sbom
    from models_catalog.selectors import annex_xii_get

    image_reference = (f"{oci.registry_host()}/{version.landing_repository}"
                       f"@{version.manifest_digest}")
    annex_xii = annex_xii_get(model=version.model)
    return build_sbom(model=version.model, image_reference=image_reference,
                      manifest_digest=version.manifest_digest, report=report, version=version,
                      annex_xii=annex_xii if annex_xii.pk else None)


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
            transition(version, to=VersionStatus.REJECTED, actor=None, action="rejected",
                       reason=reason, details=details, **common)
        else:
            transition(version, to=VersionStatus.AWAITING_APPROVAL, actor=None,
                       action="scanned", details=details, **common)

