"""Verify a compliance evidence bundle with the platform's public key alone — offline.

    python -m audit.bundle_verify BUNDLE.zip --public-key platform.pem [--tsa-ca tsa-ca.pem]

Needs only Python, `cryptography`, `rfc3161-client` and this repository's `audit` and
`portal/signing.py` modules; no database, no settings, no network. A bundle is a zip of

    report.json          the report's figures, section by section
    report.pdf           the same report for people
    audit-events.jsonl   the audit events of the period, one JSON object per line, with
                         their hashes; out-of-scope links appear as {seq, prev_hash, hash}
    checkpoints.json     the signed checkpoints that anchor and cross the extract, each with
                         its RFC 3161 timestamp (base64 of the TSA's answer) once it has one
    tsa-ca.pem           the certificate(s) of the operator's time-stamping authority (when
                         configured)
    manifest.json        SHA-256 and size of every file above
    manifest.sig         Ed25519 signature of manifest.json (base64), the detached signature
    manifest.tsr         RFC 3161 timestamp of manifest.json from the TSA (when timestamps
                         are on), the answer as `openssl ts -reply` writes it
    evidence/…           what the report's sections attach: SBOMs, scan reports, Annex XII
                         information, and the models' OpenSSF Model Signing (OMS) signatures
                         under evidence/model-signatures/ with the key they verify with

and the archive comment carries a second signature over every other byte of the zip, so that
no byte of the bundle can change unnoticed (not even one a zip reader would ignore).

Timestamps are checked against the TSA certificates the auditor passes (--tsa-ca); without
them, against the bundle's own tsa-ca.pem, which only the platform's signature vouches for —
the output says which. `--export-timestamps DIR` writes each timestamp beside the exact
bytes it covers, for `openssl ts -verify`. OMS signatures are checked cryptographically (see
`audit.model_signatures`) with the key the auditor passes (--model-signing-key) or, without
it, the bundle's own copy, which is said in the same way.
"""

from __future__ import annotations

import argparse
import base64
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

from audit import model_signatures
from audit.integrity import SignedCheckpoint, verify_chain
from audit.timestamps import (
    TimestampError,
    TsaTrust,
    checkpoint_message,
    trust_from_pem,
    verify_checkpoint_stamps,
)
from audit.timestamps import verify as verify_timestamp
from portal.signing import SigningKeyError, key_id, load_public_key, verify

BUNDLE_FORMAT = "sovereign-portal-evidence/1"
ARCHIVE_SIGNATURE_PREFIX = b"sovereign-portal-signature:"
MANIFEST, MANIFEST_SIG, MANIFEST_TSR = "manifest.json", "manifest.sig", "manifest.tsr"
EVENTS, CHECKPOINTS, REPORT_JSON, REPORT_PDF, TSA_CA = (
    "audit-events.jsonl", "checkpoints.json", "report.json", "report.pdf", "tsa-ca.pem")
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
    notes: list[str] = field(default_factory=list)  # what the verdict rests on

    @property
    def ok(self) -> bool:
        return not self.problems


def _member_lines(archive: zipfile.ZipFile, name: str) -> Iterator[dict[str, Any]]:
    with archive.open(name) as handle:
        for line in handle:
            yield json.loads(line)


def verify_bundle(path: str | Path, public_key: Ed25519PublicKey, *,
                  tsa_trust: TsaTrust | None = None,
                  model_signing_key: bytes | None = None) -> BundleCheck:
    """Check everything; `tsa_trust`: the TSA certificates the auditor trusts, and
    `model_signing_key`: the PEM public key the OMS signatures must verify with (None: the
    bundle's own, which is said in `notes`)."""
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
            _verify_members(archive, public_key, check, tsa_trust, model_signing_key)
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, TypeError, EOFError, OSError,
            NotImplementedError, RuntimeError, struct.error) as exc:
        # Whatever a damaged archive makes the zip reader raise, it is a failed verification.
        check.problems.append(f"the archive cannot be read: {exc}")
    return check


def _verify_members(archive: zipfile.ZipFile, public_key: Ed25519PublicKey,
                    check: BundleCheck, tsa_trust: TsaTrust | None = None,
                    model_signing_key: bytes | None = None) -> None:
    manifest_bytes = archive.read(MANIFEST)
    if not verify(public_key, manifest_bytes, archive.read(MANIFEST_SIG).decode("ascii")):
        check.problems.append("manifest.sig does not verify manifest.json with this key")
    manifest = json.loads(manifest_bytes)
    if manifest.get("key_id") != key_id(public_key):
        check.problems.append(f"the manifest names key {manifest.get('key_id')}, "
                              f"not {key_id(public_key)}")
    listed = {entry["name"]: entry for entry in manifest["files"]}
    present = set(archive.namelist()) - {MANIFEST, MANIFEST_SIG, MANIFEST_TSR}
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
    _verify_model_signatures(archive, present & set(listed), check, model_signing_key)

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
    _verify_timestamps(archive, manifest, manifest_bytes, checkpoints, check, tsa_trust,
                       carried=TSA_CA in listed and TSA_CA in present)


def _verify_model_signatures(archive: zipfile.ZipFile, names: set[str], check: BundleCheck,
                             given_key: bytes | None) -> None:
    """Each OMS signature under evidence/model-signatures/, with the auditor's model-signing
    key or the bundle's copy."""
    signatures = sorted(name for name in names if name.startswith(model_signatures.DIRECTORY)
                        and name.endswith(model_signatures.SIGNATURE_SUFFIX))
    if not signatures:
        return
    carried = model_signatures.KEY_FILE in names
    if given_key is None and not carried:
        check.problems.append(f"the bundle carries OMS model signatures but not "
                              f"{model_signatures.KEY_FILE}: pass the model-signing key with "
                              "--model-signing-key")
        return
    source = "--model-signing-key" if given_key is not None else model_signatures.KEY_FILE
    try:
        key = model_signatures.load_key(given_key if given_key is not None
                                        else archive.read(model_signatures.KEY_FILE))
    except model_signatures.ModelSignatureError as exc:
        check.problems.append(f"{source}: {exc}")
        return
    verified = 0
    for name in signatures:
        try:
            model_signatures.verify(archive.read(name), key)
        except model_signatures.ModelSignatureError as exc:
            check.problems.append(f"{name}: the OMS model signature does not verify: {exc}")
        else:
            verified += 1
    key_id = model_signatures.key_id(key)
    if verified:
        check.facts.append(f"{verified} of {len(signatures)} OMS model signatures verified "
                           f"with the model-signing key {key_id[:16]}… (signature and signed "
                           "file list; the files themselves: model_signing verify)")
    if given_key is None:
        check.notes.append(
            f"OMS model signatures were checked with the bundle's {model_signatures.KEY_FILE} "
            f"(key {key_id}). Only the platform's signature vouches for it: compare it with "
            "the portal's /catalog/model-signing-key.pem, or pass your own copy with "
            "--model-signing-key.")


def _verify_timestamps(archive: zipfile.ZipFile, manifest: dict[str, Any], manifest_bytes: bytes,
                       checkpoints: list[SignedCheckpoint], check: BundleCheck,
                       given: TsaTrust | None, *, carried: bool) -> None:
    """The manifest's timestamp and each checkpoint's, against the trusted TSA certificates."""
    manifest_stamp = MANIFEST_TSR in archive.namelist()
    if not (manifest_stamp or "timestamp" in manifest
            or any(cp.timestamp for cp in checkpoints)):
        if given is not None:
            check.problems.append("--tsa-ca was given, but the bundle carries no timestamp: it "
                                  "was made while timestamps were off")
        else:
            check.facts.append("the bundle carries no RFC 3161 timestamps (they were off)")
        return
    trust = given
    if trust is None and carried:
        try:
            trust = trust_from_pem(archive.read(TSA_CA), source=f"the bundle's {TSA_CA}")
        except TimestampError as exc:
            check.problems.append(f"{TSA_CA}: {exc}")
            return
        check.notes.append(
            f"Timestamps were checked against {trust.describe()}. Only the platform's signature "
            "vouches for these certificates: to rely on the time-stamping authority "
            "independently of the platform, compare them with the certificates the authority "
            "publishes, or pass your own copy with --tsa-ca.")
    elif trust is not None:
        check.notes.append(f"Timestamps were checked against {trust.describe()}.")
    if trust is None:
        check.problems.append("the bundle carries timestamps but no TSA certificate to check "
                              "them against: pass the authority's certificate with --tsa-ca")
        return
    if manifest_stamp:
        try:
            stamp = verify_timestamp(archive.read(MANIFEST_TSR), manifest_bytes, trust)
        except TimestampError as exc:
            check.problems.append(f"{MANIFEST_TSR} does not vouch for {MANIFEST}: {exc}")
        else:
            check.facts.append(f"{MANIFEST} timestamped at {stamp.describe()}")
    elif "timestamp" in manifest:
        check.problems.append(f"the manifest announces a timestamp, but {MANIFEST_TSR} is "
                              "missing")
    report = verify_checkpoint_stamps(checkpoints, trust)
    if not report.ok:
        check.problems.append(report.error)
        return
    if report.verified:
        check.facts.append(report.summary())
    if report.unstamped:
        seqs = ", ".join(f"#{seq}" for seq in report.unstamped)
        check.facts.append(f"the checkpoint(s) {seqs} had no timestamp yet when the bundle "
                           "was made")


def export_timestamps(path: str | Path, directory: str | Path) -> list[Path]:
    """Write each timestamp of the bundle (`.tsr`) beside the exact bytes it covers, and the
    bundle's TSA certificates, for `openssl ts -verify`. Returns the files written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)
        written.append(out / name)

    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if MANIFEST_TSR in names:
            write(MANIFEST, archive.read(MANIFEST))
            write(MANIFEST_TSR, archive.read(MANIFEST_TSR))
        if TSA_CA in names:
            write(TSA_CA, archive.read(TSA_CA))
        for cp in json.loads(archive.read(CHECKPOINTS)):
            checkpoint = SignedCheckpoint(**cp)
            if checkpoint.timestamp:
                write(f"checkpoint-{checkpoint.last_seq}.payload", checkpoint_message(checkpoint))
                write(f"checkpoint-{checkpoint.last_seq}.tsr",
                      base64.b64decode(checkpoint.timestamp, validate=True))
    return written


def load_tsa_trust(path: str) -> TsaTrust:
    return trust_from_pem(Path(path).read_bytes(), source=f"the TSA certificates in {path}")


def export_lines(bundle: str | Path, directory: str | Path) -> list[str]:
    written = export_timestamps(bundle, directory)
    pairs = [(p.with_suffix(".json" if p.stem == "manifest" else ".payload"), p)
             for p in written if p.suffix == ".tsr"]
    lines = [f"Wrote {len(written)} files to {directory}. Check a timestamp with OpenSSL, "
             "where TSA-CA.pem is the authority's certificate you trust (the bundle's own copy "
             f"is {Path(directory) / TSA_CA}):"]
    lines += [f"  openssl ts -verify -data {data} -in {token} -CAfile TSA-CA.pem"
              for data, token in pairs[:3]]
    if len(pairs) > 3:
        lines.append(f"  (and the {len(pairs) - 3} other .tsr files the same way)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a compliance evidence bundle offline.")
    parser.add_argument("bundle")
    parser.add_argument("--public-key", required=True, help="the platform's public key (PEM)")
    parser.add_argument("--tsa-ca", help="the time-stamping authority's certificate(s) you "
                                         "trust (PEM; default: those carried in the bundle)")
    parser.add_argument("--export-timestamps", metavar="DIR",
                        help="also write each timestamp and the bytes it covers to DIR")
    parser.add_argument("--model-signing-key", help="the platform's model-signing public key "
                                                    "(PEM) the OMS signatures must verify with "
                                                    "(default: the one carried in the bundle)")
    args = parser.parse_args(argv)
    try:
        public_key = load_public_key(Path(args.public_key).read_bytes())
    except (OSError, SigningKeyError) as exc:
        print(f"Cannot use the public key: {exc}", file=sys.stderr)
        return 2
    try:
        tsa_trust = load_tsa_trust(args.tsa_ca) if args.tsa_ca else None
    except (OSError, TimestampError) as exc:
        print(f"Cannot use the TSA certificates: {exc}", file=sys.stderr)
        return 2
    try:
        model_signing_key = (Path(args.model_signing_key).read_bytes()
                             if args.model_signing_key else None)
    except OSError as exc:
        print(f"Cannot read the model-signing key: {exc}", file=sys.stderr)
        return 2
    check = verify_bundle(args.bundle, public_key, tsa_trust=tsa_trust,
                          model_signing_key=model_signing_key)
    for fact in check.facts:
        print(f"ok: {fact}")
    for note in check.notes:
        print(f"note: {note}")
    for problem in check.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if args.export_timestamps and check.ok:
        for line in export_lines(args.bundle, args.export_timestamps):
            print(line)
    print("Bundle verified." if check.ok else "Bundle NOT verified.",
          file=sys.stdout if check.ok else sys.stderr)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
