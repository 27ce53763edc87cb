"""Verify a compliance evidence bundle with the platform's public key alone — offline.

    python -m audit.bundle_verify BUNDLE.zip --public-key platform.pem

Needs only Python, `cryptography` and this repository's `audit` and `portal/signing.py`
modules; no database, no settings, no network. A bundle is a zip of

    report.json          the report's figures, section by section
    report.pdf           the same report for people
    audit-events.jsonl   the audit events of the period, one JSON object per line, with
                         their hashes; out-of-scope links appear as {seq, prev_hash, hash}
    checkpoints.json     the signed checkpoints that anchor and cross the extract
    manifest.json        SHA-256 and size of every file above
    manifest.sig         Ed25519 signature of manifest.json (base64), the detached signature

and the archive comment carries a second signature over every other byte of the zip, so that
no byte of the bundle can change unnoticed (not even one a zip reader would ignore).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.integrity import SignedCheckpoint, verify_chain
from portal.signing import SigningKeyError, key_id, load_public_key, verify

BUNDLE_FORMAT = "sovereign-portal-evidence/1"
ARCHIVE_SIGNATURE_PREFIX = b"sovereign-portal-signature:"
MANIFEST, MANIFEST_SIG = "manifest.json", "manifest.sig"
EVENTS, CHECKPOINTS, REPORT_JSON, REPORT_PDF = (
    "audit-events.jsonl", "checkpoints.json", "report.json", "report.pdf")
_EOCD = b"PK\x05\x06"


class BundleFormatError(Exception):
    pass


def archive_message(signed_region_sha256: str) -> bytes:
    return f"{BUNDLE_FORMAT}\n{signed_region_sha256}".encode()


def archive_signature(path: Path) -> tuple[str, str]:
    """(SHA-256 of the signed region, base64 signature from the archive comment).

    The signed region is the whole file as it was before the comment was added: everything
    up to the end record's comment-length field, which then read zero."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        tail_start = max(0, size - (22 + 0xFFFF))
        handle.seek(tail_start)
        tail = handle.read()
        offset, search_end = -1, len(tail)
        while (found := tail.rfind(_EOCD, 0, search_end)) != -1:
            (comment_length,) = struct.unpack("<H", tail[found + 20:found + 22])
            if found + 22 + comment_length == len(tail):
                offset = found
                break
            search_end = found
        if offset == -1:
            raise BundleFormatError("not a zip archive (no end record)")
        comment = tail[offset + 22:]
        if not comment.startswith(ARCHIVE_SIGNATURE_PREFIX):
            raise BundleFormatError("the archive carries no signature")
        digest, remaining = hashlib.sha256(), tail_start + offset + 20
        handle.seek(0)
        while remaining:
            chunk = handle.read(min(remaining, 1 << 20))
            digest.update(chunk)
            remaining -= len(chunk)
        digest.update(b"\x00\x00")
    return digest.hexdigest(), comment[len(ARCHIVE_SIGNATURE_PREFIX):].decode("ascii", "replace")


@dataclass
class BundleCheck:
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _member_lines(archive: zipfile.ZipFile, name: str) -> Iterator[dict[str, Any]]:
    with archive.open(name) as handle:
        for line in handle:
            yield json.loads(line)


def verify_bundle(path: str | Path, public_key: Ed25519PublicKey) -> BundleCheck:
    check = BundleCheck()
    try:
        region, signature = archive_signature(Path(path))
        if not verify(public_key, archive_message(region), signature):
            check.problems.append("the archive signature does not match: the bundle was "
                                  "changed after it was signed, or another key signed it")
    except BundleFormatError as exc:
        check.problems.append(str(exc))
        return check
    try:
        with zipfile.ZipFile(path) as archive:
            _verify_members(archive, public_key, check)
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, TypeError, EOFError, OSError,
            NotImplementedError, RuntimeError, struct.error) as exc:
        # Whatever a damaged archive makes the zip reader raise, it is a failed verification.
        check.problems.append(f"the archive cannot be read: {exc}")
    return check


def _verify_members(archive: zipfile.ZipFile, public_key: Ed25519PublicKey,
                    check: BundleCheck) -> None:
    manifest_bytes = archive.read(MANIFEST)
    if not verify(public_key, manifest_bytes, archive.read(MANIFEST_SIG).decode("ascii")):
        check.problems.append("manifest.sig does not verify manifest.json with this key")
    manifest = json.loads(manifest_bytes)
    if manifest.get("key_id") != key_id(public_key):
        check.problems.append(f"the manifest names key {manifest.get('key_id')}, "
                              f"not {key_id(public_key)}")
    listed = {entry["name"]: entry for entry in manifest["files"]}
    present = set(archive.namelist()) - {MANIFEST, MANIFEST_SIG}
    for name in sorted(present - set(listed)):
        check.problems.append(f"{name} is in the archive but not in the manifest")
    for name, entry in sorted(listed.items()):
        if name not in present:
            check.problems.append(f"{name} is listed in the manifest but missing")
            continue
        digest, size = hashlib.sha256(), 0
        with archive.open(name) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
            check.problems.append(f"{name} does not match its SHA-256 in the manifest")
    check.facts.append(f"{len(listed)} files match the signed manifest")

    checkpoints = [SignedCheckpoint(**cp) for cp in json.loads(archive.read(CHECKPOINTS))]
    result = verify_chain(_member_lines(archive, EVENTS), checkpoints, public_key, extract=True)
    if not result.ok:
        check.problems.append(f"audit extract: {result.error}")
    elif result.count:
        check.facts.append(
            f"audit extract #{result.first_seq}–#{result.last_seq}: {result.count} links "
            f"verified, {result.checkpoints_matched} of {len(checkpoints)} signed checkpoints "
            "matched")
        if result.checkpoints_matched == 0:
            check.problems.append("no signed checkpoint vouches for the audit extract")
    else:
        check.facts.append("the period holds no audit events")
    expected = manifest.get("audit_extract", {}).get("links")
    if expected is not None and expected != result.count and result.ok:
        check.problems.append(f"the manifest announces {expected} audit links, the extract "
                              f"holds {result.count}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a compliance evidence bundle offline.")
    parser.add_argument("bundle")
    parser.add_argument("--public-key", required=True, help="the platform's public key (PEM)")
    args = parser.parse_args(argv)
    try:
        public_key = load_public_key(Path(args.public_key).read_bytes())
    except (OSError, SigningKeyError) as exc:
        print(f"Cannot use the public key: {exc}", file=sys.stderr)
        return 2
    check = verify_bundle(args.bundle, public_key)
    for fact in check.facts:
        print(f"ok: {fact}")
    for problem in check.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print("Bundle verified." if check.ok else "Bundle NOT verified.",
          file=sys.stdout if check.ok else sys.stderr)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
