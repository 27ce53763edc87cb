"""The platform's Ed25519 signing key: audit checkpoints, evidence bundles, model statements.

The private key lives in a PEM file outside the database (`PLATFORM_SIGNING_KEY_FILE`), so
someone who can rewrite database rows still cannot forge a signature. Verification needs
only the public key, which is why the verify functions take a key object or PEM bytes and
never touch Django: an auditor runs them offline (see `audit.bundle_verify`).
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(Exception):
    """The key file is missing, unreadable or not an Ed25519 PEM key."""


def write_new_key(path: str | os.PathLike) -> Path:
    """Create a new private key file readable by its owner only (refuses to overwrite)."""
    return write_private_key(path, Ed25519PrivateKey.generate())


def write_private_key(path: str | os.PathLike, key) -> Path:
    """Write `key` as unencrypted PKCS#8 PEM to a new file readable by its owner only
    (refuses to overwrite an existing file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read {str(path)!r} ({exc.strerror})") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{str(path)!r} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{str(path)!r} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"a {type(key).__name__}, not an Ed25519 public key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a key: 16 hex digits of SHA-256 over its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verify(public_key: Ed25519PublicKey, data: bytes, signature_b64: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=1)
def platform_key() -> Ed25519PrivateKey:
    """The configured platform key. With DEBUG (quickstart) a missing key file is created."""
    from django.conf import settings

    path = Path(settings.PLATFORM_SIGNING_KEY_FILE)
    create_missing_debug_key(path, write_new_key)
    return load_private_key(path)


def create_missing_debug_key(path: Path, write_new_key) -> None:
    """With DEBUG (the quickstart) a key file that is missing is created on first use; in
    production settings refuse to start without it."""
    from django.conf import settings

    if settings.DEBUG and not path.exists():
        try:
            write_new_key(path)
        except FileExistsError:
            pass  # another process of the quickstart created it a moment ago


def platform_public_key() -> Ed25519PublicKey:
    return platform_key().public_key()


def platform_key_id() -> str:
    return key_id(platform_public_key())


def sign(data: bytes) -> str:
    """Base64 Ed25519 signature of `data` with the platform key."""
    return base64.b64encode(platform_key().sign(data)).decode()
