"""The supply-chain scanner: verify an image, unpack /models safely, inventory and check
every file, and judge the result against the platform's policy.

Pure library code: no database, no registry. The catalog's scan task feeds it layers it
fetched by digest; `manage.py model_scan` feeds it a local archive or directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO

from models_catalog.scanning import formats, gguf_vocab
from models_catalog.scanning.disk import DiskQuota, ScanAborted, size_text, unpacked_size
from models_catalog.scanning.extract import ROOT, extract_models
from models_catalog.scanning.oci import OciImage, UnreadableArchive, read_oci_archive
from models_catalog.scanning.policy import (
    ScanLimits,
    ScanPolicy,
    limits_from_settings,
    policy_from_settings,
)
from models_catalog.scanning.report import POLICY_CODE, FileEntry, Finding, ScanReport

__all__ = ["DiskQuota", "FileEntry", "Finding", "OciImage", "ScanAborted", "ScanLimits",
           "ScanPolicy", "ScanReport", "UnreadableArchive", "policy_from_settings",
           "read_oci_archive", "scan_directory", "scan_layers", "scan_oci_archive"]

Progress = Callable[[int, int, str], None]
_CHUNK = 1024 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    found = {}
    for package in ("picklescan",):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _inventory(root: Path, report: ScanReport, policy: ScanPolicy, limits: ScanLimits,
               progress: Progress | None, links: dict[str, str] | None = None) -> None:
    """Hash, identify and check every regular file under `root` (paths relative to it)."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    if len(paths) > limits.max_files:
        report.findings.append(Finding(".", "high", "file_count_limit",
                                       f"The model holds {len(paths)} files, more than the "
                                       f"platform's cap of {limits.max_files}."))
        return
    for done, path in enumerate(paths):
        rel = path.relative_to(root).as_posix()
        if progress:
            progress(done, len(paths), rel)
        fmt, findings = formats.examine(path, rel, limits)
        report.files.append(FileEntry(rel, path.stat().st_size, _sha256(path), fmt))
        report.findings += findings
        refusal = policy.refusal(rel, fmt)
        if refusal:
            report.findings.append(Finding(rel, "high", POLICY_CODE, refusal))
    for link, target in sorted((links or {}).items()):
        report.files.append(FileEntry(link, 0, hashlib.sha256(target.encode()).hexdigest(),
                                      "symlink"))
    if progress:
        progress(len(paths), len(paths), "")


def scan_directory(root: Path, *, policy: ScanPolicy, limits: ScanLimits | None = None,
                   progress: Progress | None = None) -> ScanReport:
    """Scan a directory that holds the model files (what /models would hold)."""
    limits = limits or limits_from_settings()
    report = ScanReport(policy=policy.name, scanner_versions=_versions(), started_at=_now())
    _inventory(Path(root), report, policy, limits, progress)
    report.finished_at = _now()
    return report


KEEP_LIMIT = 64 * 1024 * 1024


def scan_layers(layers: list[tuple[str, IO[bytes]] | tuple[str, IO[bytes], str]], *,
                policy: ScanPolicy,
                limits: ScanLimits | None, workdir: Path,
                progress: Progress | None = None, keep: tuple[str, ...] = (),
                quota: DiskQuota | None = None) -> ScanReport:
    """Unpack /models from an image's layers (media type, seekable stream, and for a
    ModelPack raw layer the file path it names) into `workdir`, then scan. Files named in
    `keep` (paths under /models, up to 64 MiB) come back in `report.kept`. What is unpacked
    is charged to `quota` (by default a fresh one of the limits' size). A "tokenizer.json"
    asked for in an image that has none but holds a GGUF comes back as the GGUF's
    vocabulary (see `gguf_tokenizer`).

    Raises UnreadableArchive when a layer isn't a readable tar, and ScanAborted (with
    `workdir` removed) when the disk has no room for the layers' unpacked size or unpacking
    would pass the quota."""
    limits = limits or limits_from_settings()
    report = ScanReport(policy=policy.name, scanner_versions=_versions(), started_at=_now())
    dest = Path(workdir)
    quota = quota or DiskQuota(limits.disk_quota_bytes, dest)
    shutil.rmtree(dest, ignore_errors=True)
    layers = [(layer[0], layer[1], layer[2] if len(layer) > 2 else "") for layer in layers]
    unpacked = sum(unpacked_size(media_type, stream) for media_type, stream, _ in layers)
    quota.ensure_free_space(unpacked, f"unpack the image's layers ({size_text(unpacked)})")
    try:
        extraction = extract_models(layers, dest, limits, quota, progress)
        report.findings += extraction.findings
        stopped = any(f.code in ("size_limit", "file_count_limit") for f in extraction.findings)
        models = dest / ROOT
        if not stopped:
            if models.is_dir():
                _inventory(models, report, policy, limits, progress,
                           {p[len(ROOT) + 1:]: t for p, t in extraction.links.items()})
            for name in keep:
                path = models / name
                if (path.is_file() and not path.is_symlink()
                        and path.stat().st_size <= KEEP_LIMIT):
                    report.kept[name] = path.read_bytes()
            if "tokenizer.json" in keep and "tokenizer.json" not in report.kept:
                document = gguf_tokenizer(models, report)
                if document:
                    report.kept["tokenizer.json"] = document.encode()
            if not report.files:
                report.findings.append(Finding(
                    "/models", "high", "no_model_files",
                    "The image has no model files: a ModelCar keeps its weights under "
                    "/models (COPY them there in the Containerfile), a ModelPack artifact in "
                    "its weight layers."))
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    report.finished_at = _now()
    return report


def gguf_tokenizer(models: Path, report: ScanReport) -> str | None:
    """The tokenizer document of the first GGUF under `models` with a SentencePiece
    vocabulary, with the chat template of its metadata or else of tokenizer_config.json —
    only from files the scan found free of findings."""
    flagged = {f.path for f in report.findings}
    for entry in report.files:
        if entry.format != "gguf" or entry.path in flagged:
            continue
        try:
            document = gguf_vocab.tokenizer_document(models / entry.path)
        except (gguf_vocab.GgufError, OSError, ValueError):
            continue
        if document is None:
            continue
        config = models / "tokenizer_config.json"
        data = json.loads(document)
        if (not data["chat_template"] and "tokenizer_config.json" not in flagged
                and config.is_file() and not config.is_symlink()
                and config.stat().st_size <= KEEP_LIMIT):
            try:
                template = json.loads(config.read_bytes()).get("chat_template")
            except (ValueError, AttributeError):
                template = None
            if isinstance(template, str):
                data["chat_template"] = template
                document = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return document
    return None


def scan_oci_archive(path: Path, *, policy: ScanPolicy, limits: ScanLimits | None = None,
                     workdir: Path, progress: Progress | None = None) -> ScanReport:
    """Verify an image archive (every blob against its digest), then scan its layers.
    Raises ScanAborted for lack of disk space."""
    image = read_oci_archive(path)
    with ExitStack() as stack:
        streams = [(layer.media_type, stack.enter_context(image.open_blob(layer.digest)),
                    layer.filepath) for layer in image.layers]
        return scan_layers(streams, policy=policy, limits=limits, workdir=workdir,
                           progress=progress)
