"""Writing the signed evidence bundle (see `audit.bundle_verify` for its layout)."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from audit import selectors, tsa
from audit.bundle_verify import (
    ARCHIVE_SIGNATURE_PREFIX,
    BUNDLE_FORMAT,
    CHECKPOINTS,
    EVENTS,
    MANIFEST,
    MANIFEST_SIG,
    MANIFEST_TSR,
    REPORT_JSON,
    REPORT_PDF,
    TSA_CA,
    archive_message,
)
from audit.chain import canonical_time
from audit.reports.sections import ReportScope
from audit.timestamps import TimestampError
from portal import signing


class _HashingWriter:
    """Counts and hashes what goes into one zip member while it streams."""

    def __init__(self, handle):
        self.handle, self.sha256, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.sha256.update(data)
        self.size += len(data)


def extract_range(scope: ReportScope) -> tuple[int, int] | None:
    """The seq range the audit extract spans: the period's events, widened to the signed
    checkpoint before them (or the chain's start) and the first one at or after them, so
    both ends of the extract are anchored by signatures."""
    low, high = selectors.seq_bounds(since=scope.period.start, until=scope.period.end)
    if low == -1 or high == -1 or high < low:
        return None
    before = selectors.signed_checkpoints(high=low - 1)
    after = selectors.signed_checkpoints(low=high)
    start = before[-1].last_seq + 1 if before else (selectors.chain_tail_seq() or low)
    end = after[0].last_seq if after else high
    return start, end


def _extract_lines(scope: ReportScope, span: tuple[int, int] | None, stats: dict[str, Any]):
    if span is None:
        return
    start, end = (canonical_time(scope.period.start), canonical_time(scope.period.end))
    # JSON Lines as orjson writes them: the verifier parses each line and re-encodes it
    # canonically, so only the values matter here, not the bytes.
    dumps, pending = orjson.dumps, []
    for row in selectors.chain_rows(low=span[0], high=span[1]):
        in_scope = (start <= row["created_at"] < end
                    and (scope.tenant_id is None or row["tenant_id"] == scope.tenant_id))
        if in_scope:
            stats["events_in_scope"] += 1
            line = row
        else:
            line = {"seq": row["seq"], "prev_hash": row["prev_hash"], "hash": row["hash"],
                    "redacted": True}
        stats["links"] += 1
        pending.append(dumps(line, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
        if len(pending) == 1000:  # the zip's compressor works best on large writes
            yield b"".join(pending)
            pending.clear()
    if pending:
        yield b"".join(pending)


def write_bundle(path: Path, *, scope: ReportScope, report_json: bytes, pdf: bytes,
                 report_meta: dict[str, Any], attachments: dict[str, bytes] | None = None
                 ) -> None:
    """Write the complete, signed bundle to `path` (the caller moves it into place).

    With timestamps on, the TSA timestamps manifest.json — the bytes the platform signs — and
    the answer goes in as manifest.tsr. This runs outside any transaction (report generation
    holds none), so the TSA call holds no lock. A TSA that does not answer fails the bundle
    with the reason: a bundle is sealed by its archive signature and cannot be stamped later,
    so the report is retried instead."""
    span = extract_range(scope)
    checkpoints = (selectors.signed_checkpoints(low=span[0] - 1, high=span[1],
                                                with_timestamps=True) if span else [])
    stats: dict[str, Any] = {"links": 0, "events_in_scope": 0,
                             "first_seq": span[0] if span else None,
                             "last_seq": span[1] if span else None}
    files = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                         # Level 1: half of level 6's time for about a fifth more bytes
                         # on the JSON Lines that make up nearly all of a bundle.
                         compresslevel=1) as zf:
        def add(name: str, chunks) -> None:
            with zf.open(name, "w", force_zip64=True) as handle:
                writer = _HashingWriter(handle)
                for chunk in chunks:
                    writer.write(chunk)
            files.append({"name": name, "sha256": writer.sha256.hexdigest(),
                          "size": writer.size})

        add(REPORT_JSON, [report_json])
        add(REPORT_PDF, [pdf])
        add(EVENTS, _extract_lines(scope, span, stats))
        add(CHECKPOINTS, [json.dumps([cp.as_dict() for cp in checkpoints], indent=1).encode()])
        trust_pem = tsa.trust_pem()
        if trust_pem is not None:
            add(TSA_CA, [trust_pem])
        for name, data in sorted((attachments or {}).items()):
            add(f"evidence/{name}", [data])
        manifest = _manifest(report_meta, stats, files)
        zf.writestr(MANIFEST, manifest)
        zf.writestr(MANIFEST_SIG, signing.sign(manifest))
        if tsa.enabled():
            zf.writestr(MANIFEST_TSR, _timestamp(manifest))
    _sign_archive(path)


def _manifest(report_meta: dict[str, Any], stats: dict[str, Any],
              files: list[dict[str, Any]]) -> bytes:
    """manifest.json, the bytes the platform signs: the report, the signing key, the audit
    extract's figures, every file with its SHA-256 and size, and (with timestamps on) where
    the TSA's answer over it is."""
    document = {
        "format": BUNDLE_FORMAT,
        "report": report_meta,
        "key_id": signing.platform_key_id(),
        "audit_extract": stats,
        "files": files,
    }
    if tsa.enabled():
        document["timestamp"] = {"file": MANIFEST_TSR, "covers": MANIFEST,
                                 "tsa_url": settings.TSA_URL,
                                 "hash_algorithm": settings.TSA_HASH_ALGORITHM}
    return json.dumps(document, indent=1, sort_keys=True).encode()


def _timestamp(manifest: bytes) -> bytes:
    try:
        response, _ = tsa.stamp(manifest)
    except TimestampError as exc:
        raise TimestampError(f"the evidence bundle could not be timestamped: {exc}. Retry the "
                             "report once the time-stamping authority answers.") from None
    return response


def _sign_archive(path: Path) -> None:
    """Put a signature over every other byte of the archive into its comment. The archive
    was written without a comment, so the signed region is exactly the file as it is."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    comment = ARCHIVE_SIGNATURE_PREFIX + signing.sign(archive_message(digest.hexdigest())).encode()
    with path.open("r+b") as handle:
        handle.seek(-2, 2)  # the comment length of the end record
        handle.write(struct.pack("<H", len(comment)) + comment)
