"""Check the OpenSSF Model Signing (OMS) signatures an evidence bundle carries — offline, with
`cryptography` alone.

A bundle holds, under `evidence/model-signatures/`, each model version's OMS signature (a
Sigstore bundle, `<model>-<version>.sigstore.json`) and the public key they verify with
(`model-signing-key.pub.pem`). Each signature is a DSSE envelope over an in-toto statement:
the statement lists every model file's SHA-256 and names, as its one subject, the SHA-256 of
those digests in order. This module checks what can be checked without the model files:

- the key is an EC P-256/384/521 public key, and the bundle's key hint (SHA-256 of the key's
  PEM) names it;
- the DSSE signature (ECDSA with the curve's hash, over DSSE's pre-authentication encoding of
  the payload) verifies with it;
- the payload is an in-toto Statement v1 of predicate type
  `https://model_signing/signature/v1.0` whose subject digest is the digest of its resources.

Why not the `model_signing` package itself: the bundle verifier is the auditor's tool and needs
only `cryptography`, `rfc3161-client` and this app (see `audit.bundle_verify`), while
`model_signing` pulls in the whole Sigstore client; its public verifier needs the model files,
which a bundle does not carry, and checking a signature alone would mean calling its private
modules (`model_signing._signing`). The checks here are the ones that verifier makes before it
hashes the files, in the same order and on the same bytes; the tests run both on the same
signatures. To check the files too, unpack the model and run `model_signing verify key`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DIRECTORY = "evidence/model-signatures/"
KEY_FILE = f"{DIRECTORY}model-signing-key.pub.pem"
SIGNATURE_SUFFIX = ".sigstore.json"
BUNDLE_MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
CURVE_HASHES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384,
                "secp521r1": hashes.SHA512}


class ModelSignatureError(Exception):
    """The signature or the key is not what it should be (the message says what)."""


@dataclass(frozen=True)
class SignedModel:
    name: str  # the statement's subject: the model's name as signed
    files: int


def load_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ModelSignatureError("the model-signing key is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVE_HASHES:
        raise ModelSignatureError("the model-signing key is not an EC P-256, P-384 or P-521 "
                                  "key, which is what OpenSSF Model Signing uses")
    return key


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the key's PEM: the hint `model_signing` writes into each bundle."""
    return hashlib.sha256(key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature is over."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload),
                                    payload)


def _b64(value, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ModelSignatureError(f"the {what} is not base64") from exc


def verify(bundle: bytes, key: ec.EllipticCurvePublicKey) -> SignedModel:
    """Check one OMS signature (the Sigstore bundle's bytes) with the key; raises
    ModelSignatureError with the reason."""
    try:
        document = json.loads(bundle)
        media_type = document["mediaType"]
        hint = document.get("verificationMaterial", {}).get("publicKey", {}).get("hint", "")
        envelope = document["dsseEnvelope"]
        payload_type, encoded = envelope["payloadType"], envelope["payload"]
        signatures = envelope["signatures"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelSignatureError(f"not a Sigstore bundle with a DSSE envelope ({exc})") \
            from None
    if not str(media_type).startswith(BUNDLE_MEDIA_TYPE_PREFIX):
        raise ModelSignatureError(f"media type {media_type!r} is not a Sigstore bundle's")
    if hint and hint != key_id(key):
        raise ModelSignatureError(f"it names the key {str(hint)[:16]}…, not {key_id(key)[:16]}…")
    if payload_type != PAYLOAD_TYPE:
        raise ModelSignatureError(f"the payload is {payload_type!r}, not an in-toto statement")
    if not isinstance(signatures, list) or not signatures or \
            not isinstance(signatures[0], dict):
        raise ModelSignatureError("the envelope carries no signature")
    payload = _b64(encoded, "payload")
    signature = _b64(signatures[0].get("sig", ""), "signature")
    try:
        key.verify(signature, pae(payload_type, payload),
                   ec.ECDSA(CURVE_HASHES[key.curve.name]()))
    except InvalidSignature:
        raise ModelSignatureError(f"the DSSE signature does not verify with the key "
                                  f"{key_id(key)[:16]}…: the signature or the statement was "
                                  "changed, or another key signed it") from None
    return _statement(payload)


def _statement(payload: bytes) -> SignedModel:
    """The signed statement is an OMS one and consistent: its subject digest is the SHA-256
    of its resources' digests, in order (as `model_signing` checks)."""
    try:
        statement = json.loads(payload)
        kind, predicate_type = statement["_type"], statement["predicateType"]
        (subject,) = statement["subject"]
        name, root = subject["name"], subject["digest"]["sha256"]
        resources = statement["predicate"]["resources"]
        digest = hashlib.sha256()
        for resource in resources:
            digest.update(bytes.fromhex(resource["digest"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelSignatureError(f"the signed statement is not an OMS statement ({exc})") \
            from None
    if kind != STATEMENT_TYPE or predicate_type != PREDICATE_TYPE:
        raise ModelSignatureError(f"the signed statement is {kind} of {predicate_type}, not "
                                  f"{STATEMENT_TYPE} of {PREDICATE_TYPE}")
    if digest.hexdigest() != root:
        raise ModelSignatureError("the signed statement is inconsistent: its subject digest is "
                                  "not the digest of the files it lists")
    return SignedModel(name=str(name), files=len(resources))
