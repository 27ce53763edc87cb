"""Encryption at rest for secrets the portal must be able to read back (upstream API keys,
cluster credentials). The key comes from FIELD_ENCRYPTION_KEY, never from the database."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@cache
def _fernet() -> Fernet:
    raw = settings.FIELD_ENCRYPTION_KEY
    if raw:
        return Fernet(raw.encode())
    # Derived from SECRET_KEY when no dedicated key is set (then rotating SECRET_KEY makes stored
    # secrets unreadable, which is why production should set FIELD_ENCRYPTION_KEY).
    digest = hashlib.sha256(b"portal-field-encryption:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("A stored secret can't be decrypted: FIELD_ENCRYPTION_KEY (or "
                         "SECRET_KEY) changed since it was saved. Enter the secret again.") from exc
