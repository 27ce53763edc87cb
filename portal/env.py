"""Readers for `portal.settings`: each takes a variable's name, reads the environment, checks
the value and returns it typed, or stops start-up with an `ImproperlyConfigured` error that
names the variable and says what a right value looks like. Settings call these and nothing
else reads the environment."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import environ
from cryptography import x509
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true or false.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_origins(name: str) -> list[str]:
    """Comma-separated origins, each with its scheme (https://portal.example)."""
    origins = env_list(name, [])
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ImproperlyConfigured(f"{name}: {origin!r} must start with http:// or https://.")
    return origins


def env_secret(name: str, default: str = "") -> str:
    """Read `NAME`, or the contents of the file named by `NAME_FILE`; both set is an error."""
    file_var = f"{name}_FILE"
    path = os.environ.get(file_var)
    if path and os.environ.get(name):
        raise ImproperlyConfigured(f"Set either {name} or {file_var}, not both.")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{file_var}: cannot read {path!r} ({exc.strerror}).") from exc
    return os.environ.get(name, default)


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated CIDRs (or single addresses) as networks; empty when unset."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP network (e.g. 10.20.0.0/16).") from None
    return networks


def env_http_url(name: str, *, what: str, credentials_allowed: bool = True) -> str:
    """An http(s) URL with a host, or "" when unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"{name}={value!r} must be the http:// or https:// URL of "
                                   f"{what}.")
    if not credentials_allowed and (parts.username or parts.password):
        raise ImproperlyConfigured(
            f"{name} must not hold a user name or password: the URL is shown on pages and "
            "written into evidence.")
    return value


_GENERATE_FERNET_KEY = ("python -c 'from cryptography.fernet import Fernet; "
                        "print(Fernet.generate_key().decode())'")


def fernet_keys(*, debug: bool) -> list[str]:
    """FIELD_ENCRYPTION_KEYS: Fernet keys, comma-separated; the first encrypts, all decrypt."""
    # The former single-key name is refused rather than aliased: one name per setting, so
    # nobody has to work out which of two variables a rotation applies to.
    if any(os.environ.get(old) for old in ("FIELD_ENCRYPTION_KEY", "FIELD_ENCRYPTION_KEY_FILE")):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY was renamed FIELD_ENCRYPTION_KEYS (a comma-separated list "
            "whose first key encrypts): rename the variable (or FIELD_ENCRYPTION_KEY_FILE to "
            "FIELD_ENCRYPTION_KEYS_FILE); its value works unchanged as the only key.")
    keys = [key.strip() for key in env_secret("FIELD_ENCRYPTION_KEYS").split(",") if key.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key #{position} is not a Fernet key (32 url-safe "
                f"base64-encoded bytes); generate one with {_GENERATE_FERNET_KEY}.") from None
    if not keys and not debug:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is not set: set it (or FIELD_ENCRYPTION_KEYS_FILE) to a "
            f"Fernet key, generated with {_GENERATE_FERNET_KEY}. Only a DEBUG=true development "
            "server may start without one (it derives a key from SECRET_KEY).")
    return keys


def database(default_url: str) -> dict:
    """DATABASE_URL (or _FILE) as Django's DATABASES["default"]: PostgreSQL, or SQLite for the
    quickstart."""
    url = env_secret("DATABASE_URL", default_url)
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # environ raises a mix of errors for malformed URLs
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL ({exc}).") from exc
    if config["ENGINE"] not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(
            "DATABASE_URL must be a postgres:// URL (or sqlite:// for the quickstart).")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE transactions take the write lock up front, which serializes audit appends.
        config.setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
    else:
        config["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
        config["CONN_HEALTH_CHECKS"] = True
    return config


def _pem_certificates(name: str, path: str) -> list[x509.Certificate]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}: cannot read {path!r} ({exc.strerror}).") from exc
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={path!r} holds no PEM certificate.") from None


def check_tsa_files(*, url: str, ca_file: str, cert_file: str) -> None:
    """The time-stamping authority's certificates: a CA to verify against whenever a TSA is
    used, and, if pinned, a signing certificate that is one for time-stamping (RFC 3161)."""
    if url and not ca_file:
        raise ImproperlyConfigured(
            "TSA_URL is set but TSA_CA_FILE is not: point TSA_CA_FILE at the PEM "
            "certificate(s) of the authority's CA, so that its timestamps can be verified.")
    if ca_file:
        _pem_certificates("TSA_CA_FILE", ca_file)
    if cert_file:
        signer = _pem_certificates("TSA_CERT_FILE", cert_file)[0]
        try:
            usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            usage = None
        if not (usage and usage.critical
                and x509.oid.ExtendedKeyUsageOID.TIME_STAMPING in usage.value):
            raise ImproperlyConfigured(
                f"TSA_CERT_FILE={cert_file!r} is not a time-stamping certificate (RFC 3161 "
                "requires a critical extended key usage of timeStamping).")


def env_oid(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if value and not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", value):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not an object identifier such as 1.2.3.4.1.")
    return value


def env_retention_classes(name: str) -> dict[str, int]:
    """Days of retention per audit action prefix: `auth.=365,inference.=183`."""
    classes = {}
    for item in env_list(name, []):
        prefix, _, days = item.partition("=")
        if not prefix.strip() or not days.strip().isdigit() or int(days) < 1:
            raise ImproperlyConfigured(
                f"{name}: {item!r} must look like 'auth.=365' (action prefix = days, at least "
                "1).")
        classes[prefix.strip()] = int(days)
    return classes


def env_directory(name: str, *, needed_for: str = "") -> str:
    """The path of an existing directory, or "" when unset (an error if `needed_for` names
    what needs it)."""
    value = os.environ.get(name, "").strip()
    if not value and needed_for:
        raise ImproperlyConfigured(f"{needed_for} needs {name}: an empty directory for this "
                                   "server's processes to share their counts in (the "
                                   "container's entrypoint sets one).")
    if value and not Path(value).is_dir():
        raise ImproperlyConfigured(f"{name}={value!r} is not a directory: create it (empty) "
                                   "before the server starts.")
    return value


def env_key_file(name: str, *, debug_default: Path | None, what: str, created_by: str) -> str:
    """The path of a private key file kept outside the database. Unset, a development server
    (`debug_default`) uses one under var/, created on first use; production refuses to start."""
    path = os.environ.get(name, "")
    if not path:
        if debug_default is None:
            filename = f"/path/{name.removesuffix('_FILE').lower().replace('_', '-')}.pem"
            raise ImproperlyConfigured(
                f"{name} is not set: point it at {what}. Create one with: python -c \"from "
                f"{created_by} import write_new_key; write_new_key('{filename}')\"")
        return str(debug_default)
    if not Path(path).is_file():
        raise ImproperlyConfigured(f"{name}={path!r} is not a readable file.")
    return path
