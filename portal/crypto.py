"""Encryption at rest for secrets the portal must be able to read back (upstream API keys,
cluster credentials, webhook signing secrets).

The keys come from FIELD_ENCRYPTION_KEYS, never from the database: a MultiFernet whose first
key encrypts and whose every key decrypts, so a new key can be put first while values written
under the old ones stay readable until `manage.py secrets_rotate` has re-encrypted them. A
value no key can decrypt raises `SecretUnreadable`; callers disable the one object that holds
it (see `portal.stored_secrets`), never the process.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver


class SecretUnreadable(ValueError):
    """A stored value that none of the configured keys decrypts."""


def derived_key(secret_key: str) -> bytes:
    """The key the portal derived from SECRET_KEY before FIELD_ENCRYPTION_KEYS existed (and
    still uses in a DEBUG development server without FIELD_ENCRYPTION_KEYS)."""
    digest = hashlib.sha256(b"portal-field-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@cache
def _fernets() -> tuple[Fernet, ...]:
    keys = [key.encode() for key in settings.FIELD_ENCRYPTION_KEYS]
    if not keys or settings.FIELD_ENCRYPTION_LEGACY_DERIVED_KEY:
        # Last, so it decrypts what it once wrote but never encrypts (unless it is the only
        # key, which settings allow with DEBUG=true only).
        keys.append(derived_key(settings.SECRET_KEY))
    return tuple(Fernet(key) for key in keys)


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs) -> None:
    if setting in ("FIELD_ENCRYPTION_KEYS", "FIELD_ENCRYPTION_LEGACY_DERIVED_KEY", "SECRET_KEY"):
        _fernets.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernets()[0].encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return MultiFernet(_fernets()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("None of the keys in FIELD_ENCRYPTION_KEYS decrypts this "
                               "stored secret.") from None


def is_current(token: str) -> bool:
    """Whether `token` is empty or already encrypted under the first key."""
    if not token:
        return True
    try:
        _fernets()[0].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    """`token` re-encrypted under the first key (raises SecretUnreadable)."""
    return encrypt(decrypt(token))


class EncryptedTextField(models.TextField):
    """A column holding a token of this module (ciphertext, never plaintext). Services encrypt
    and decrypt explicitly; the field type is how `secrets_rotate` and the pages find every
    stored secret. `secret_name` and `remedy` complete the message people see when the value
    can't be decrypted ("The stored {secret_name} can't be decrypted … {remedy}, or …")."""

    def __init__(self, *args, secret_name: str = "secret", remedy: str = "Enter it again",
                 **kwargs):
        self.secret_name = secret_name
        self.remedy = remedy
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        # The column is plain text: migrations see a TextField, so marking a field as a
        # secret (or un-marking it) never needs a schema migration.
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs
