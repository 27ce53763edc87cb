"""OpenSSF Model Signing (OMS) signatures of a version's /models files, with the platform's key.

The signature is what the `model-signing` package (and Sigstore's model-validation tooling)
produces and checks: a Sigstore bundle holding a DSSE envelope over an in-toto statement whose
predicate lists every file's SHA-256 ("files" serialization). It is signed with a bare key —
no Fulcio certificate, no Rekor entry, nothing outside the boundary is contacted.

The format's key signer supports only ECDSA keys (P-256/384/521), while the platform key that
signs audit checkpoints and approval statements is Ed25519. So model files are signed with a
key of their own, `PLATFORM_MODEL_SIGNING_KEY_FILE` (EC P-256), kept like the other one.

The manifest is built from the file digests the gate computed when it scanned the image,
pinned by digest: approval signs exactly what was scanned, without downloading the weights a
second time. The resulting bundle is byte-for-byte what `model_signing` would produce for the
/models directory (same serialization, same ignored paths), which the tests prove by running
the upstream verifier over the unpacked tree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from portal.signing import create_missing_debug_key, write_private_key

# How the signature is attached to the image (the media type of a Sigstore bundle, as cosign
# and the Sigstore model-validation tooling attach them).
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# Paths model_signing leaves out of every model it hashes: a manifest that listed them could
# never verify.
IGNORED_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
SYMLINK_FORMAT = "symlink"


class ModelSigningKeyError(Exception):
    """The model-signing key file is missing, unreadable or not an EC P-256/384/521 key."""


def write_new_key(path: str | os.PathLike) -> Path:
    """Create a new EC P-256 private key file readable by its owner only (never overwrites)."""
    return write_private_key(path, ec.generate_private_key(ec.SECP256R1()))


def _check_key(key, where: str) -> None:
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or \
            key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise ModelSigningKeyError(f"{where} is not an EC P-256, P-384 or P-521 key, which is "
                                   "what OpenSSF Model Signing needs")


@lru_cache(maxsize=1)
def _key_path() -> Path:
    from django.conf import settings

    path = Path(settings.PLATFORM_MODEL_SIGNING_KEY_FILE)
    create_missing_debug_key(path, write_new_key)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ModelSigningKeyError(f"cannot read {str(path)!r} ({exc.strerror})") from exc
    except (ValueError, TypeError) as exc:
        raise ModelSigningKeyError(f"{str(path)!r} is not an unencrypted PEM private key") \
            from exc
    _check_key(key, repr(str(path)))
    return path


def platform_public_key_pem() -> bytes:
    """The public half of the model-signing key: all a third party needs to verify."""
    key = serialization.load_pem_private_key(_key_path().read_bytes(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key_pem: bytes) -> str:
    """The key hint the bundle carries: SHA-256 of the public key's PEM (model_signing's)."""
    return hashlib.sha256(public_key_pem).hexdigest()


@dataclass(frozen=True)
class SignedFile:
    """One file under /models as the gate recorded it. A symbolic link has `format`
    "symlink" and the SHA-256 of its target path."""

    path: str
    sha256: str
    format: str = ""


def _resolve_links(files: list[SignedFile]) -> tuple[dict[str, str], bool]:
    """path → SHA-256 of the content a reader of the tree gets (model_signing follows a
    symbolic link to a file and hashes the file), and whether there were any links."""
    regular = {f.path: f.sha256 for f in files if f.format != SYMLINK_FORMAT}
    # The scan records a link as the SHA-256 of its target's path in the image (models/…).
    by_target_digest = {hashlib.sha256(f"models/{path}".encode()).hexdigest(): path
                        for path in regular}
    digests = dict(regular)
    links = [f for f in files if f.format == SYMLINK_FORMAT]
    for link in links:
        target = by_target_digest.get(link.sha256)
        if target is not None:  # a link to a file of the model; others are not content
            digests[link.path] = regular[target]
    return digests, bool(links)


def _library():
    """model_signing, imported when first needed: it pulls in sigstore, which takes seconds
    to import — too long for every process that imports the catalog (the gateway, workers).

    It keeps its manifest, payload and key signer in modules it calls internal; the version
    is pinned in requirements/constraints.txt and the tests run the public verifier."""
    from model_signing import manifest
    from model_signing._hashing.hashing import Digest
    from model_signing._signing import sign_ec_key, signing
    from model_signing._signing.sign_sigstore_pb import Signature

    return manifest, Digest, sign_ec_key, signing, Signature


def build_manifest(files: list[SignedFile], *, name: str):
    """model_signing's manifest of the files (a `model_signing.manifest.Manifest`)."""
    oms_manifest, Digest, *_ = _library()
    digests, has_links = _resolve_links(files)
    serialization_type = oms_manifest.SerializationType.from_args({
        "method": "files", "hash_type": "sha256", "allow_symlinks": has_links,
        "ignore_paths": list(IGNORED_PATHS)})
    items = [oms_manifest.FileManifestItem(path=PurePosixPath(path),
                                           digest=Digest("sha256", bytes.fromhex(digest)))
             for path, digest in sorted(digests.items())
             if PurePosixPath(path).parts[0] not in IGNORED_PATHS]
    return oms_manifest.Manifest(name, items, serialization_type)


def sign_files(files: list[SignedFile], *, name: str) -> str:
    """The OMS signature (Sigstore bundle JSON) of the files, with the platform's key."""
    _, _, sign_ec_key, oms_signing, _ = _library()
    payload = oms_signing.Payload(build_manifest(files, name=name))
    signature = sign_ec_key.Signer(_key_path()).sign(payload)
    with tempfile.TemporaryDirectory() as directory:
        target = pathlib.Path(directory) / "model.sig"
        signature.write(target)  # the library's own serialization of the bundle
        return target.read_text()


@dataclass(frozen=True)
class BundleCheck:
    ok: bool
    reason: str
    files: dict[str, str]  # path → SHA-256 as signed

    def __bool__(self) -> bool:
        return self.ok


def verify_bundle(bundle: str, *, public_key_pem: bytes | None = None) -> BundleCheck:
    """Check the bundle's signature with the public key (model_signing's own key verifier)
    and read the files it signs. Never raises."""
    _, _, sign_ec_key, _, Signature = _library()
    public_key_pem = public_key_pem or platform_public_key_pem()
    try:
        _check_key(serialization.load_pem_public_key(public_key_pem), "the public key")
    except (ValueError, TypeError, ModelSigningKeyError) as exc:
        return BundleCheck(False, f"unusable public key: {exc}", {})
    with tempfile.TemporaryDirectory() as directory:
        key_file = pathlib.Path(directory) / "key.pub"
        key_file.write_bytes(public_key_pem)
        sig_file = pathlib.Path(directory) / "model.sig"
        sig_file.write_text(bundle)
        try:
            signed = sign_ec_key.Verifier(key_file).verify(Signature.read(sig_file))
        except Exception as exc:  # noqa: BLE001 — any failure of a foreign format is a "no"
            return BundleCheck(False, f"the OMS signature does not verify with the model-signing "
                                      f"key {key_id(public_key_pem)[:16]} ({exc})", {})
    files = {d.identifier: d.digest.digest_hex for d in signed.resource_descriptors()}
    return BundleCheck(True, f"OMS signature verified with key {key_id(public_key_pem)[:16]}",
                       files)


def statement_of(bundle: str) -> dict:
    """The in-toto statement inside a bundle, unverified (for display)."""
    envelope = json.loads(bundle)["dsseEnvelope"]
    return json.loads(base64.b64decode(envelope["payload"]))


def expected_files(files: list[SignedFile]) -> dict[str, str]:
    """The path → SHA-256 a correct signature of these files lists."""
    return {d.identifier: d.digest.digest_hex
            for d in build_manifest(files, name="-").resource_descriptors()}
