"""Unpacking the /models tree of an image's layers without trusting them.

Layers are applied in order, with OCI whiteouts, into a fresh directory. Nothing is written
outside it: absolute paths, `..`, links that leave /models and device files are refused (and
reported), links are never created on disk, and the byte and file caps stop an archive bomb
while it streams. Every file is charged to the scan's disk quota before it is written.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from models_catalog.scanning.disk import DiskQuota
from models_catalog.scanning.oci import UnreadableArchive
from models_catalog.scanning.policy import ScanLimits
from models_catalog.scanning.report import Finding

ROOT = "models"
_CHUNK = 1024 * 1024


class LimitExceeded(Exception):
    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


class Extraction:
    def __init__(self, dest: Path, limits: ScanLimits, quota: DiskQuota):
        self.dest, self.limits, self.quota = dest, limits, quota
        self.findings: list[Finding] = []
        self.links: dict[str, str] = {}  # symlinks inside /models: path → target
        self.files = 0
        self.bytes = 0

    # --- one layer --------------------------------------------------------------------

    def apply_layer(self, stream: IO[bytes], *, at_root: bool = False) -> None:
        """An image layer (/models inside it), or with `at_root` a ModelPack tar layer,
        whose paths are relative to the model's root: they are unpacked under /models."""
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    self._entry(tar, member, at_root=at_root)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UnreadableArchive(f"A layer is not a readable tar ({exc}); the image is "
                                    "corrupt. Build and push it again.") from None

    def apply_raw(self, stream: IO[bytes], filepath: str, size: int) -> None:
        """A ModelPack raw layer: one file, its path from the layer's annotation."""
        from models_catalog.scanning.modelpack import safe_filepath

        relative = safe_filepath(filepath)
        if relative is None:
            self._refuse(filepath or "(no path)", "path_traversal",
                         f"a layer whose file path {filepath!r} is absolute, leaves the "
                         "model's root or names no file")
            return
        path = f"{ROOT}/{relative}"
        self._count(path, size)
        self.quota.charge(size, f"/{path}")
        destination = self._target(path)
        with destination.open("wb") as out:
            while chunk := stream.read(_CHUNK):
                out.write(chunk)

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo, *,
               at_root: bool = False) -> None:
        name = member.name
        if at_root and not name.startswith("/"):
            name = f"{ROOT}/{name}"
            if member.islnk() and not member.linkname.startswith("/"):
                member.linkname = f"{ROOT}/{member.linkname}"
        parts = self._models_parts(name)
        if parts is None:
            return
        path, name = "/".join(parts), parts[-1]
        if name == ".wh..wh..opq":
            self._clear_directory("/".join(parts[:-1]))
        elif name.startswith(".wh."):
            self._remove("/".join([*parts[:-1], name[4:]]))
        elif member.ischr() or member.isblk() or member.isfifo():
            self._refuse(path, "special_file", "a device or FIFO file: a model needs none, "
                         "and one can reach host devices")
        elif member.issym():
            self._symlink(member, path)
        elif member.islnk():
            self._hard_link(member, path)
        elif member.isdir():
            self._target(path, directory=True)
        elif member.isfile():
            self._write(tar, member, path)

    def _models_parts(self, raw: str) -> list[str] | None:
        """The parts of a member's path under /models; None for the rest of the image and
        for a path that would write outside the root (refused, and reported)."""
        if raw.startswith("/"):
            self._refuse(raw, "absolute_path", "an absolute path: unpacking it would write "
                         "outside the image root")
            return None
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            self._refuse(raw, "path_traversal", "a path with '..': unpacking it would write "
                         "outside the image root (a path-traversal attack)")
            return None
        if not parts or parts[0] != ROOT:
            return None  # outside /models: the base image, not the model
        return parts

    def _symlink(self, member: tarfile.TarInfo, path: str) -> None:
        """Remembered, never created on disk; one that leaves /models is refused."""
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
        if member.linkname.startswith("/") or not _inside(target):
            self._refuse(path, "link_escape", f"a symbolic link to {member.linkname!r}, "
                         "outside /models: following it would read or overwrite other files")
            return
        self.links[path] = target

    def _hard_link(self, member: tarfile.TarInfo, path: str) -> None:
        """A copy of a file unpacked before; one that leaves /models is refused."""
        target = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or ".." in member.linkname.split("/") \
                or not _inside(target):
            self._refuse(path, "link_escape", f"a hard link to {member.linkname!r}, "
                         "outside /models")
            return
        source = self.dest / target
        if source.is_file():
            self._count(path, source.stat().st_size)
            self.quota.charge(source.stat().st_size, f"/{path}")
            shutil.copyfile(source, self._target(path))

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        """A regular file, counted against the caps and charged to the quota first."""
        self._count(path, member.size)
        self.quota.charge(member.size, f"/{path}")
        destination = self._target(path)
        handle = tar.extractfile(member)
        with destination.open("wb") as out:
            while chunk := handle.read(_CHUNK):
                out.write(chunk)

    # --- helpers ----------------------------------------------------------------------

    def _refuse(self, path: str, code: str, what: str) -> None:
        self.findings.append(Finding(path, "critical", code, f"The image contains {what}."))

    def _count(self, path: str, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise LimitExceeded(Finding(path, "high", "file_count_limit",
                                        f"/models holds more than {self.limits.max_files} files "
                                        "(the platform's cap; an archive bomb?). Scanning "
                                        "stopped."))
        if self.bytes > self.limits.max_bytes:
            raise LimitExceeded(Finding(path, "high", "size_limit",
                                        f"/models unpacks to more than {self.limits.max_bytes} "
                                        "bytes (the platform's cap; an archive bomb?). Scanning "
                                        "stopped."))

    def _target(self, path: str, *, directory: bool = False) -> Path:
        target = self.dest / path
        if directory:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                shutil.rmtree(target)
        self.links.pop(path, None)
        return target

    def _remove(self, path: str) -> None:
        self.links.pop(path, None)
        target = self.dest / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def _clear_directory(self, path: str) -> None:
        target = self.dest / path
        if target.is_dir():
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        prefix = path + "/"
        for link in [p for p in self.links if p.startswith(prefix)]:
            del self.links[link]


def _inside(path: str) -> bool:
    return path == ROOT or path.startswith(ROOT + "/")


def extract_models(layers: list[tuple[str, IO[bytes], str]], dest: Path, limits: ScanLimits,
                   quota: DiskQuota,
                   progress: Callable[[int, int, str], None] | None = None) -> Extraction:
    """Apply `layers` — (media type, stream, ModelPack file path or "") — in order into `dest`;
    refusals and a stop at a cap are findings. ModelPack layers land under /models like a
    ModelCar's files. Raises DiskQuotaExceeded when the files would pass the scan's disk
    quota, UnreadableArchive for a layer the scanner can't take."""
    from models_catalog.scanning.modelpack import layer_form, layer_problem

    dest.mkdir(parents=True, exist_ok=True)
    extraction = Extraction(dest, limits, quota)
    for index, (media_type, stream, filepath) in enumerate(layers):
        if progress:
            progress(index, len(layers), f"layer {index + 1} of {len(layers)}")
        form = layer_form(media_type)
        if form is not None and (problem := layer_problem(media_type, filepath)):
            raise UnreadableArchive(f"Layer {index + 1} can't be scanned: {problem}.")
        try:
            if form == "raw":
                size = stream.seek(0, 2)
                stream.seek(0)
                extraction.apply_raw(stream, filepath, size)
            else:
                extraction.apply_layer(stream, at_root=form is not None)
        except LimitExceeded as stop:
            extraction.findings.append(stop.finding)
            break
    return extraction
