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


def _htpasswd(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # libxcrypt on Debian does bcrypt, which the registry requires

    path.write_text(f"{REGISTRY_USER}:"
                    f"{crypt.crypt(REGISTRY_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")


def start_registry(directory: Path, *, with_auth: bool = False) -> RunningRegistry:
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
    return RunningRegistry(url=url, storage=storage, process=process,
                           username=REGISTRY_USER if with_auth else "",
                           password=REGISTRY_PASSWORD if with_auth else "")


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
