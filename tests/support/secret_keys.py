"""Encryption keys for tests of secrets at rest: a value written under a key that is then
taken out of FIELD_ENCRYPTION_KEYS, as after a careless key change."""

from __future__ import annotations

from cryptography.fernet import Fernet
from django.test import override_settings


def new_key() -> str:
    return Fernet.generate_key().decode()


def keys(*keys: str, legacy_derived: bool = False) -> override_settings:
    """Run with exactly these FIELD_ENCRYPTION_KEYS (a context manager)."""
    return override_settings(FIELD_ENCRYPTION_KEYS=list(keys),
                             FIELD_ENCRYPTION_LEGACY_DERIVED_KEY=legacy_derived)
