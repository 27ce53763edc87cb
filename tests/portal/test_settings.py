"""Wrong or missing configuration stops the process at start-up, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"SECRET_KEY": "x" * 50, "DEBUG": "false", "PORTAL_IGNORE_DOTENV": "1",
        "DATABASE_URL": "sqlite:////tmp/portal-settings-test.sqlite3"}


def _check(**overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "EMAIL_URL"}}
    env.update(GOOD)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_good_settings_pass():
    result = _check()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overrides,named", [
    ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
    ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL must be a postgres://"),
    ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL='http://127.0.0.1:6379'"),
    ({"SECRET_KEY": None, "SECRET_KEY_FILE": "/nonexistent/secret"}, "SECRET_KEY_FILE"),
    ({"SECRET_KEY_FILE": "/etc/hostname"}, "Set either SECRET_KEY or SECRET_KEY_FILE"),
    ({"ALLOWED_HOSTS": "a", "CSRF_TRUSTED_ORIGINS": "portal.example"}, "CSRF_TRUSTED_ORIGINS"),
    ({"SESSION_COOKIE_AGE": "soon"}, "SESSION_COOKIE_AGE='soon' is not a whole number"),
    ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES"),
    ({"PLATFORM_SIGNING_KEY_FILE": None}, "PLATFORM_SIGNING_KEY_FILE is not set"),
    ({"PLATFORM_SIGNING_KEY_FILE": "/nonexistent/key.pem"}, "is not a readable file"),
    ({"PLATFORM_MODEL_SIGNING_KEY_FILE": None}, "PLATFORM_MODEL_SIGNING_KEY_FILE is not set"),
    ({"PLATFORM_MODEL_SIGNING_KEY_FILE": "/nonexistent/key.pem"},
     "PLATFORM_MODEL_SIGNING_KEY_FILE='/nonexistent/key.pem' is not a"),
    ({"AUDIT_CHECKPOINT_INTERVAL_MINUTES": "0"}, "AUDIT_CHECKPOINT_INTERVAL_MINUTES=0"),
    ({"AUDIT_RETENTION_CLASSES": "auth.=forever"}, "AUDIT_RETENTION_CLASSES: 'auth.=forever'"),
    ({"TSA_URL": "ftp://tsa.example"}, "TSA_URL='ftp://tsa.example' must be the http://"),
    ({"TSA_URL": "https://tsa.example/tsr"}, "TSA_URL is set but TSA_CA_FILE is not"),
    ({"TSA_URL": "https://user:secret@tsa.example/"}, "TSA_URL must not hold a user name"),
    ({"TSA_CA_FILE": "/etc/hostname"}, "TSA_CA_FILE='/etc/hostname' holds no PEM certificate"),
    ({"TSA_CA_FILE": "/nonexistent/ca.pem"}, "TSA_CA_FILE: cannot read '/nonexistent/ca.pem'"),
    ({"TSA_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"},
     "is not a time-stamping certificate"),
    ({"TSA_POLICY_OID": "policy-1"}, "TSA_POLICY_OID='policy-1' is not an object identifier"),
    ({"TSA_HASH_ALGORITHM": "md5"}, "TSA_HASH_ALGORITHM='md5' must be sha256 or sha512"),
    ({"TSA_TIMEOUT_SECONDS": "0"}, "TSA_TIMEOUT_SECONDS=0 must be at least 1"),
])
def test_bad_settings_fail_fast_naming_the_variable(overrides, named):
    result = _check(**overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_timestamp_settings_pass(tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.support.tsa import make_ca, make_tsa_certificate

    ca_key, ca = make_ca("Settings Test TSA CA")
    _, signer = make_tsa_certificate(ca_key, ca, "Settings Test TSA")
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(Encoding.PEM))
    (tmp_path / "tsa.pem").write_bytes(signer.public_bytes(Encoding.PEM))
    result = _check(TSA_URL="https://tsa.example/tsr", TSA_CA_FILE=str(tmp_path / "ca.pem"),
                    TSA_CERT_FILE=str(tmp_path / "tsa.pem"), TSA_POLICY_OID="1.2.3.4.1",
                    TSA_HASH_ALGORITHM="SHA512")
    assert result.returncode == 0, result.stderr


def test_behind_tls_proxy_needs_trusted_proxies():
    """X-Forwarded-Proto is a forwarded header like the others: only TRUSTED_PROXIES may set
    it, so a TLS proxy the portal does not know as a proxy can't be believed."""
    result = _check(BEHIND_TLS_PROXY="true", TRUSTED_PROXIES="")
    assert result.returncode != 0
    assert "BEHIND_TLS_PROXY=true needs TRUSTED_PROXIES" in result.stderr
    assert _check(BEHIND_TLS_PROXY="true", TRUSTED_PROXIES="10.0.0.1").returncode == 0


def test_secret_from_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 50 + "\n")
    assert _check(SECRET_KEY=None, SECRET_KEY_FILE=str(secret)).returncode == 0


def test_env_example_documents_every_variable_settings_read():
    import re

    readers = r"(?:env_\w+|os\.environ\.get)"
    settings_source = (ROOT / "portal" / "settings.py").read_text()
    read = set(re.findall(readers + r'\(\s*"([A-Z_]+)"', settings_source))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    internal = {"PORTAL_IGNORE_DOTENV", "PORTAL_VAR_DIR"}
    assert read - internal <= documented, f"undocumented: {sorted(read - internal - documented)}"
