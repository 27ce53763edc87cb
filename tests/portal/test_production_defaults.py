"""Production defaults: HTTPS enforced whenever TLS is in front (health probes stay on plain
HTTP), the API's schema and docs only for signed-in callers, and `make run`'s .env private.

Settings are read once per process, so each case starts a fresh Python process with the
environment under test, as tests/portal/test_settings.py does."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"SECRET_KEY": "x" * 50, "DEBUG": "false", "PORTAL_IGNORE_DOTENV": "1",
              "DATABASE_URL": "sqlite:////tmp/portal-production-defaults.sqlite3",
              "ALLOWED_HOSTS": "testserver", "SECURE_COOKIES": "false",
              # BEHIND_TLS_PROXY=true needs to know the proxy (X-Forwarded-Proto is believed
              # only from TRUSTED_PROXIES).
              "TRUSTED_PROXIES": "10.0.0.1"}
SETTING_NAMES = ["SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
                 "SECURE_SSL_REDIRECT", "SECURE_REDIRECT_EXEMPT", "API_DOCS_PUBLIC"]

# Requests through the whole middleware stack, in the process with that environment.
PROBE = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
import django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(raise_request_exception=False)
out = {name: getattr(settings, name) for name in sys.argv[1:]}
for path in ("/no-such-page/", "/healthz", "/readyz", "/api/schema/", "/api/docs/"):
    response = client.get(path)
    out[path] = [response.status_code, response.get("Location", "")]
out["hsts"] = client.get("/healthz", secure=True).get("Strict-Transport-Security", "")
print(json.dumps(out))
"""


def _probe(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "EMAIL_URL",
                        "SECURE_COOKIES", "BEHIND_TLS_PROXY", "SECURE_HSTS_SECONDS",
                        "SECURE_SSL_REDIRECT", "API_DOCS_PUBLIC", "ALLOWED_HOSTS"}}
    env.update(PRODUCTION)
    env.update(overrides)
    result = subprocess.run([sys.executable, "-c", PROBE, *SETTING_NAMES], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("tls_in_front", [{"BEHIND_TLS_PROXY": "true"},
                                          {"SECURE_COOKIES": "true"}])
def test_tls_in_front_means_hsts_for_a_year_and_a_redirect_but_probes_stay_on_http(
        tls_in_front):
    seen = _probe(**tls_in_front)
    assert seen["SECURE_HSTS_SECONDS"] == 31536000
    assert seen["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True and seen["SECURE_HSTS_PRELOAD"] is False
    assert seen["SECURE_SSL_REDIRECT"] is True
    assert seen["/no-such-page/"] == [301, "https://testserver/no-such-page/"]
    assert seen["/healthz"][0] == 200
    assert seen["/readyz"][0] in (200, 503) and seen["/readyz"][1] == ""
    assert seen["hsts"] == "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def plain_production():
    return _probe()


def test_plain_http_deployments_get_neither_hsts_nor_a_redirect(plain_production):
    seen = plain_production
    assert seen["SECURE_HSTS_SECONDS"] == 0 and seen["SECURE_SSL_REDIRECT"] is False
    assert seen["hsts"] == ""


def test_the_operator_can_tune_hsts_and_the_redirect():
    seen = _probe(BEHIND_TLS_PROXY="true", SECURE_HSTS_SECONDS="300",
                  SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_SSL_REDIRECT="false")
    assert seen["/no-such-page/"][0] == 404
    assert seen["hsts"] == "max-age=300"


def test_deploy_check_is_satisfied_behind_a_tls_proxy():
    env = {k: v for k, v in os.environ.items()
           if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "SECURE_COOKIES"}}
    env.update(PRODUCTION, BEHIND_TLS_PROXY="true", SECURE_COOKIES="true")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    for warning in ("security.W004", "security.W005", "security.W008", "security.W012",
                    "security.W016"):
        assert warning not in report, report


def test_api_schema_and_docs_need_a_signed_in_caller_in_production(plain_production):
    seen = plain_production
    assert seen["API_DOCS_PUBLIC"] is False
    assert seen["/api/schema/"][0] == 401
    assert seen["/api/docs/"] == [302, "/accounts/login/?next=/api/docs/"]


@pytest.mark.parametrize("opened", [{"API_DOCS_PUBLIC": "true"}, {"DEBUG": "true"}])
def test_api_docs_can_be_opened_and_are_open_in_development(opened):
    seen = _probe(**opened)
    assert seen["API_DOCS_PUBLIC"] is True
    assert seen["/api/schema/"][0] == 200 and seen["/api/docs/"][0] == 200


def test_signed_in_people_read_the_schema_and_docs(client, developer):
    client.force_login(developer)
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def _copy_scripts(target: Path) -> None:
    (target / "scripts").mkdir()
    for name in ("_common.sh", "write-dev-env.sh"):
        shutil.copy2(ROOT / "scripts" / name, target / "scripts" / name)
    (target / ".venv" / "bin").mkdir(parents=True)
    (target / ".venv" / "bin" / "python").symlink_to(sys.executable)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_make_run_writes_env_readable_by_its_owner_only(tmp_path):
    _copy_scripts(tmp_path)
    script = tmp_path / "scripts" / "write-dev-env.sh"
    # A permissive umask, as on many desktops: the file must still be 0600.
    subprocess.run(["bash", "-c", f"umask 022 && {script}"], check=True, capture_output=True)
    env_file = tmp_path / ".env"
    assert _mode(env_file) == 0o600
    assert "SECRET_KEY=" in env_file.read_text()

    env_file.chmod(0o644)  # written by an earlier version of `make run`
    subprocess.run([str(script)], check=True, capture_output=True)
    assert _mode(env_file) == 0o600

    env_file.write_text("SECRET_KEY=mine\n")  # somebody else's .env is left alone
    env_file.chmod(0o640)
    subprocess.run([str(script)], check=True, capture_output=True)
    assert _mode(env_file) == 0o640 and env_file.read_text() == "SECRET_KEY=mine\n"
