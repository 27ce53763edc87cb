"""A scan's scratch space: enough free disk before it starts, and a quota on what it writes.

OCI manifests declare each layer's compressed size only. Before downloading, a scan needs
room for the layers and, as a first estimate, as much again for what they unpack to (model
weights hardly compress). Before unpacking, the estimate is each layer's own account of its
unpacked size (a gzip stream's trailer), at least its compressed size. The quota is the hard
stop when an estimate is wrong: every byte a scan writes to its work directory (downloaded
layers, unpacked files) is charged before it is written.
"""

from __future__ import annotations

import io
import math
import shutil
import struct
from pathlib import Path
from typing import IO

MARGIN = 0.10


class ScanAborted(Exception):
    """The scan can't finish for lack of scratch space; the message says what to do."""


class InsufficientDiskSpace(ScanAborted):
    pass


class DiskQuotaExceeded(ScanAborted):
    pass


def size_text(count: int) -> str:
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if count >= scale:
            return f"{count / scale:.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def unpacked_size(media_type: str, stream: IO[bytes]) -> int:
    """What a layer (a seekable stream at its start) says it unpacks to: a gzip stream's
    trailer holds its size modulo 4 GiB, so never less than the compressed size."""
    size = stream.seek(0, io.SEEK_END)
    declared = 0
    if media_type.endswith("gzip") and size >= 4:
        stream.seek(-4, io.SEEK_END)
        declared = struct.unpack("<I", stream.read(4))[0]
    stream.seek(0)
    return max(size, declared)


class DiskQuota:
    """Bytes a scan may write to its work directory (MODEL_SCAN_DISK_QUOTA_BYTES); None
    means no quota."""

    def __init__(self, limit: int | None, directory: Path):
        self.limit, self.directory, self.used = limit, Path(directory), 0

    def ensure_free_space(self, count: int, what: str) -> None:
        """Refuse to start writing `count` bytes (for `what`) unless the disk has room for
        them and a margin, or for what is left of the quota if that is less."""
        needed = math.ceil(count * (1 + MARGIN))
        if self.limit is not None:
            needed = min(needed, self.limit - self.used)
        existing = self.directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        free = shutil.disk_usage(existing).free
        if free < needed:
            raise InsufficientDiskSpace(
                f"Not enough free disk space to scan this image: {self.directory} has "
                f"{size_text(free)} free, and the scan needs {size_text(needed)} to {what} "
                f"(with a {MARGIN:.0%} margin). Free space there or point MODEL_SCAN_WORKDIR "
                "at a larger disk, then retry the scan.")

    def charge(self, count: int, what: str) -> None:
        """Count `count` bytes about to be written for `what`; stop the scan past the quota."""
        self.used += count
        if self.limit is not None and self.used > self.limit:
            raise DiskQuotaExceeded(
                f"The scan stopped at its disk quota: writing {what} would take its scratch "
                f"space in {self.directory} past MODEL_SCAN_DISK_QUOTA_BYTES "
                f"({size_text(self.limit)}), and its scratch files were removed. If the image "
                "is really that large, raise MODEL_SCAN_DISK_QUOTA_BYTES, then retry the scan.")
