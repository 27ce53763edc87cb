"""The `--public-key` option of the commands that verify what the platform key signed."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management.base import CommandError

from portal import signing


def add_public_key_argument(parser) -> None:
    parser.add_argument("--public-key", default="",
                        help="the platform's public key (PEM); default: this portal's key")


def public_key_option(path: str) -> Ed25519PublicKey:
    """The public key in the PEM file at `path`, or without one this portal's own; a
    `CommandError` when it can't be read or used."""
    try:
        return (signing.load_public_key(Path(path).read_bytes()) if path
                else signing.platform_public_key())
    except (OSError, signing.SigningKeyError) as exc:
        raise CommandError(f"Cannot use the public key: {exc}") from None
