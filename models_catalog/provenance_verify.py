"""Verify an exported provenance answer with the platform's public key alone — offline.

    python -m models_catalog.provenance_verify ANSWER.json --public-key platform.pem

The file is a DSSE envelope (https://github.com/secure-systems-lab/dsse) whose payload is an
in-toto Statement v1: `subject` names the image digests of every version downstream of what
was asked about, `predicate` the question, the versions, deployments and tenants, and when.
The signature is Ed25519 over DSSE's pre-authentication encoding, so any DSSE verifier that
takes an Ed25519 public key checks it too. Needs only Python, `cryptography` and
`portal/signing.py`: no database, no settings, no network.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from portal.signing import SigningKeyError, key_id, load_public_key, verify

DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://sovereign-portal.example/provenance-query/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass
class EvidenceCheck:
    problems: list[str] = field(default_factory=list)
    statement: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> list[str]:
        predicate = self.statement.get("predicate") or {}
        query = predicate.get("query") or {}
        lines = [f"question: {query.get('kind')} {query.get('identifier')!r}"
                 + (f" ({query['digest']})" if query.get("digest") else "")
                 + f", answered at {predicate.get('answered_at')} for "
                   f"{predicate.get('exported_by')}"]
        for v in predicate.get("versions") or []:
            lines.append(f"version {v.get('model')}:{v.get('version')} ({v.get('status')}, "
                         f"depth {v.get('depth')}): {v.get('derives_from')}")
        for d in predicate.get("deployments") or []:
            lines.append(f"deployment {d.get('name')} ({d.get('status')}) runs "
                         f"{', '.join(d.get('versions') or [])}"
                         f" for {d.get('tenant') or 'every entitled tenant'}")
        for t in predicate.get("tenants") or []:
            lines.append(f"tenant {t.get('slug')}: {'; '.join(t.get('via') or [])}")
        return lines


def verify_envelope(data: bytes, public_key: Ed25519PublicKey) -> EvidenceCheck:
    """Check the envelope's signature and that it carries our kind of statement. Never
    raises for a malformed file: that is a failed check."""
    check = EvidenceCheck()
    try:
        envelope = json.loads(data)
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
        if not isinstance(signatures, list):
            raise TypeError("signatures is not a list")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        check.problems.append(f"not a DSSE envelope ({exc.__class__.__name__}: {exc})")
        return check
    if payload_type != DSSE_PAYLOAD_TYPE:
        check.problems.append(f"payload type {payload_type!r}, not {DSSE_PAYLOAD_TYPE!r}")
    wanted = key_id(public_key)
    message = pae(str(payload_type), payload)
    if not any(isinstance(s, dict) and s.get("keyid") == wanted
               and verify(public_key, message, str(s.get("sig", ""))) for s in signatures):
        check.problems.append(f"no signature by key {wanted} verifies the payload: it was "
                              "changed after signing, or another key signed it")
    try:
        statement = json.loads(payload)
    except ValueError:
        check.problems.append("the payload is not JSON")
        return check
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE \
            or statement.get("predicateType") != PREDICATE_TYPE:
        check.problems.append("the payload is not a provenance-query statement")
        return check
    check.statement = statement
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an exported provenance answer.")
    parser.add_argument("answer")
    parser.add_argument("--public-key", required=True, help="the platform's public key (PEM)")
    args = parser.parse_args(argv)
    try:
        public_key = load_public_key(Path(args.public_key).read_bytes())
        data = Path(args.answer).read_bytes()
    except (OSError, SigningKeyError) as exc:
        print(f"Cannot read the input: {exc}", file=sys.stderr)
        return 2
    check = verify_envelope(data, public_key)
    for problem in check.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not check.ok:
        print("Provenance answer NOT verified.", file=sys.stderr)
        return 1
    for line in check.summary():
        print(f"ok: {line}")
    print(f"Provenance answer verified with key {key_id(public_key)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
