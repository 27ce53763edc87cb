"""A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on
loopback, with its own config and storage in a temporary directory."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, stop, wait_until_up

REGISTRY_USER = "portal"
REGISTRY_PASSWORD = "registry-test-password"


@dataclass
class RunningRegistry:
    url: str
    storage: Path
    process: subprocess.Popen
    username: str = ""
    password: str = ""
    tokens: object = None


def _htpasswd(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # libxcrypt on Debian does bcrypt, which the registry requires

    path.write_text(f"{REGISTRY_USER}:"
                    f"{crypt.crypt(REGISTRY_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")


def start_registry(directory: Path, *, with_auth: bool = False,
                   token_service=None) -> RunningRegistry:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed: run scripts/ensure-services.sh")
    port = free_port()
    storage = directory / "storage"
    storage.mkdir(parents=True)
    auth = ""
    if with_auth:
        _htpasswd(directory / "htpasswd")
        auth = (f"auth:\n  htpasswd:\n    realm: portal-tests\n"
                f"    path: {directory / 'htpasswd'}\n")
    if token_service is not None:
        auth = (f"auth:\n  token:\n    realm: {token_service.url}\n"
                f"    service: portal-test-registry\n    issuer: portal-test-issuer\n"
                f"    rootcertbundle: {token_service.bundle}\n")
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: portal-tests-upload-state\n"
        f"{auth}")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(directory / "registry.log", "wb"))  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/v2/", process)
    authenticated = with_auth or token_service is not None
    return RunningRegistry(url=url, storage=storage, process=process,
                           username=REGISTRY_USER if authenticated else "",
                           password=REGISTRY_PASSWORD if authenticated else "")


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory):
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    yield registry
    stop(registry.process)


@pytest.fixture(scope="session")
def oci_registry_with_auth(tmp_path_factory):
    registry = start_registry(tmp_path_factory.mktemp("registry-auth"), with_auth=True)
    yield registry
    stop(registry.process)


@pytest.fixture
def registry_settings(settings, oci_registry, tmp_path):
    """Point the portal at the test registry, with fresh upload and scan directories."""
    settings.REGISTRY_URL = oci_registry.url
    settings.REGISTRY_USERNAME = ""
    settings.REGISTRY_PASSWORD = ""
    settings.REGISTRY_TLS_VERIFY = True
    settings.REGISTRY_CA_BUNDLE = ""
    settings.REGISTRY_LANDING_NAMESPACE = "landing"
    settings.REGISTRY_TRUSTED_NAMESPACE = "trusted"
    settings.MODEL_UPLOAD_DIR = tmp_path / "uploads"
    settings.MODEL_SCAN_WORKDIR = tmp_path / "scans"
    return settings


@pytest.fixture
def catalog_worker(transactional_db, registry_settings):
    """A real Celery worker process (fed through Redis) that pushes and scans model versions
    against the test registry, with the same upload and scan directories as the test."""
    import os
    import sys

    from django.conf import settings
    from django.db import connection

    from tests.support.processes import ROOT

    db = connection.settings_dict
    log = open(Path(settings.MODEL_SCAN_WORKDIR).parent / "worker.log", "wb")  # noqa: SIM115
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
                        f"{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "REGISTRY_URL": settings.REGISTRY_URL,
        "MODEL_UPLOAD_DIR": str(settings.MODEL_UPLOAD_DIR),
        "MODEL_SCAN_WORKDIR": str(settings.MODEL_SCAN_WORKDIR),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "--queues", "celery"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield process
    stop(process)
    log.close()


class _TokenService:
    """A minimal Docker token service for the registry's bearer-token challenge: answers
    GET /token with a JWT granting the requested scope to REGISTRY_USER (basic auth)."""

    def __init__(self, directory: Path):
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal-test-token-issuer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1))
                     .not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.bundle = directory / "token-cert.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.der_b64 = __import__("base64").b64encode(
            self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self.issued = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/token"

    def token(self, service: str, scopes: list[str]) -> str:
        import time as _time
        import uuid

        import jwt

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository":
                access.append({"type": "repository", "name": name,
                               "actions": actions.split(",")})
        now = int(_time.time())
        claims = {"iss": "portal-test-issuer", "sub": REGISTRY_USER, "aud": service,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        self.issued += 1
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": [self.der_b64]})

    def serve(self) -> None:
        import base64
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        service = self
        expected = "Basic " + base64.b64encode(
            f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 — http.server's naming
                query = parse_qs(urlparse(self.path).query)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                scopes = " ".join(query.get("scope", [])).split()
                body = json.dumps({"token": service.token(query.get("service", [""])[0],
                                                          scopes)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def oci_registry_with_token_auth(tmp_path_factory):
    """The registry behind a bearer-token challenge, as Harbor or Quay answer."""
    directory = tmp_path_factory.mktemp("registry-token")
    tokens = _TokenService(directory)
    tokens.serve()
    registry = start_registry(directory, token_service=tokens)
    registry.tokens = tokens
    yield registry
    stop(registry.process)
    tokens.server.shutdown()
