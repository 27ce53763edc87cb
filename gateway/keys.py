"""The API key token format, shared by the portal (minting) and the gateway (checking)."""

from __future__ import annotations

import hashlib
import secrets
import string

TOKEN_PREFIX = "smp_"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 10


def new_token() -> tuple[str, str]:
    """A fresh (prefix, token) pair: `smp_<10 chars>_<43 chars = 256 random bits>`."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return prefix, token_for(prefix)


def token_for(prefix: str) -> str:
    return f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def prefix_of(token: str) -> str | None:
    """The public prefix of a well-formed token, else None (no lookup for garbage)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    prefix, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(prefix) != PREFIX_LENGTH or len(secret) < 32:
        return None
    return prefix
