"""The portal's OCI image, run with rootful podman against the local PostgreSQL and Redis.

Builds take minutes, so these tests run from `make image-test`, which builds the image and
names the archive in PORTAL_IMAGE_ARCHIVE; without it `make test` does not collect them
(tests/deploy/conftest.py).

The container runs as OpenShift would run it: an arbitrary uid in group 0, a read-only root
filesystem, the writable paths as volumes and the secrets as files (the chart's layout)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from portal import signing
from portal.image_attestation import REF_NAME, verify_archive
from tests.support.processes import free_port

ARCHIVE = os.environ.get("PORTAL_IMAGE_ARCHIVE", "")

# Rootful podman here: crun 1.8 refuses this kernel's hybrid cgroups (runc copes), and root
# lacks CAP_SYS_RESOURCE, so the container may not raise podman's default rlimits.
PODMAN = ["podman", "--runtime", "runc"]
RUN = ["run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
       "--network", "host", "--read-only", "--user", "1000770000:0",
       "--tmpfs", "/tmp:rw,size=256m", "--tmpfs", "/var/cache/portal:rw,size=256m"]
COMPILERS = {"gcc", "cc", "c++", "g++", "cpp", "clang", "tcc", "x86_64-linux-gnu-gcc-12",
             "x86_64-linux-gnu-g++-12", "x86_64-linux-gnu-cpp-12", "as", "ld"}


def _layout(archive: Path) -> tuple[dict, dict, list[tarfile.TarInfo]]:
    """(image config, index, every file of every layer)."""
    with tarfile.open(archive) as outer:
        def blob(digest: str) -> bytes:
            return outer.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}").read()

        index = json.loads(outer.extractfile("index.json").read())
        image = next(d for d in index["manifests"] if REF_NAME in d.get("annotations", {}))
        manifest = json.loads(blob(image["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        members = []
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(
                    blob(layer["digest"])))) as inner:
                members += inner.getmembers()
    return config, index, members


@pytest.fixture(scope="module")
def layout():
    return _layout(Path(ARCHIVE))


def test_archive_verifies_with_the_platform_key():
    result = verify_archive(Path(ARCHIVE), public_key=signing.platform_public_key())
    assert result, result.reason
    assert len(result.checked) == 3


def test_image_runs_as_non_root_with_its_writable_paths_as_volumes(layout):
    config, _index, members = layout
    assert config["config"]["User"] == "10001:0"
    assert set(config["config"]["Volumes"]) == {"/var/lib/portal", "/var/cache/portal", "/tmp"}
    assert config["config"]["Entrypoint"] == ["/opt/portal/venv/bin/python", "-m",
                                              "portal.entrypoint"]
    writable = {m.name.removeprefix("./"): m for m in members
                if m.name.removeprefix("./") in ("var/lib/portal", "var/cache/portal")}
    for name, member in writable.items():
        # Group 0 may write: OpenShift's random uid is in group 0.
        assert member.gid == 0 and member.mode & 0o070 == 0o070, name


def test_image_holds_no_compiler_and_no_pip(layout):
    _config, _index, members = layout
    names = {m.name.removeprefix("./") for m in members}
    binaries = {Path(n).name for n in names if n.startswith(("usr/bin/", "bin/", "usr/local/bin/",
                                                             "opt/portal/venv/bin/"))}
    assert not binaries & COMPILERS, binaries & COMPILERS
    assert not any(n.startswith("usr/lib/gcc/") for n in names)
    assert not {"opt/portal/venv/bin/pip", "usr/bin/pip3"} & names
    assert "opt/portal/venv/bin/python" in names
    assert "opt/portal/static/staticfiles.json" in names


@pytest.fixture(scope="module")
def image_id():
    shutil.which("podman") or pytest.fail("podman is missing: make image-test installs it")
    tag = json.loads(tarfile.open(ARCHIVE).extractfile("index.json").read())
    tag = next(d["annotations"][REF_NAME] for d in tag["manifests"]
               if REF_NAME in d.get("annotations", {}))
    pulled = subprocess.run([*PODMAN, "pull", "-q", f"oci-archive:{ARCHIVE}:{tag}"],
                            capture_output=True, text=True, check=True, timeout=600)
    image = pulled.stdout.strip().splitlines()[-1]
    yield image
    subprocess.run([*PODMAN, "rmi", "-f", image], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def container_database():
    """A database of its own for the container, created empty: the image migrates it."""
    base = settings.DATABASES["default"]
    name = f"{base['NAME']}_image_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(host=base["HOST"], port=base["PORT"], user=base["USER"],
                            password=base["PASSWORD"], dbname="postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    yield (f"postgres://{base['USER']}:{base['PASSWORD']}@{base['HOST']}:{base['PORT']}/"
           f"{name}")
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory, container_database):
    """The secrets as files, as the chart mounts them (readable by any uid in group 0)."""
    directory = tmp_path_factory.mktemp("secrets")
    files = {"database-url": container_database, "redis-url": settings.REDIS_URL,
             "secret-key": "image-test-secret-key-" + uuid.uuid4().hex,
             "field-encryption-keys": ",".join(settings.FIELD_ENCRYPTION_KEYS),
             "platform-signing-key.pem": Path(settings.PLATFORM_SIGNING_KEY_FILE).read_text(),
             "platform-model-signing-key.pem":
                 Path(settings.PLATFORM_MODEL_SIGNING_KEY_FILE).read_text()}
    for name, value in files.items():
        (directory / name).write_text(value)
        (directory / name).chmod(0o444)
    directory.chmod(0o755)
    return directory


def _env(secrets: Path, **extra: str) -> list[str]:
    variables = {"DATABASE_URL_FILE": "/run/secrets/portal/database-url",
                 "REDIS_URL_FILE": "/run/secrets/portal/redis-url",
                 "SECRET_KEY_FILE": "/run/secrets/portal/secret-key",
                 "FIELD_ENCRYPTION_KEYS_FILE": "/run/secrets/portal/field-encryption-keys",
                 "PLATFORM_SIGNING_KEY_FILE": "/run/secrets/portal/platform-signing-key.pem",
                 "PLATFORM_MODEL_SIGNING_KEY_FILE":
                     "/run/secrets/portal/platform-model-signing-key.pem",
                 "ALLOWED_HOSTS": "127.0.0.1", "SECURE_COOKIES": "false", **extra}
    args = ["-v", f"{secrets}:/run/secrets/portal:ro"]
    for key, value in variables.items():
        args += ["-e", f"{key}={value}"]
    return args


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    os.chown(directory, 0, 0)
    directory.chmod(0o770)  # group 0 writes, as fsGroup or the SCC would arrange
    return directory


@pytest.fixture(scope="module")
def migrated(image_id, secrets_dir):
    completed = subprocess.run([*PODMAN, *RUN, "--rm", *_env(secrets_dir), image_id, "migrate"],
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def web(image_id, secrets_dir, data_dir, migrated):
    port = free_port()
    name = f"portal-image-test-{uuid.uuid4().hex[:8]}"
    subprocess.run([*PODMAN, *RUN, "-d", "--name", name, "-v", f"{data_dir}:/var/lib/portal",
                    *_env(secrets_dir, PORT=str(port)), image_id, "web"],
                   capture_output=True, text=True, check=True, timeout=120)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            state = subprocess.run([*PODMAN, "inspect", "-f", "{{.State.Running}}", name],
                                   capture_output=True, text=True).stdout.strip()
            assert state == "true", subprocess.run([*PODMAN, "logs", name], capture_output=True,
                                                   text=True).stderr[-3000:]
            time.sleep(1)
        yield base
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "10", name], capture_output=True,
                       timeout=120)


def test_migrate_role_applies_every_migration(migrated):
    assert "Applying audit." in migrated.stdout


def test_web_role_is_ready_and_the_gateway_asks_for_a_key(web):
    ready = requests.get(web + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    models = requests.get(web + "/v1/models", timeout=10)
    assert models.status_code == 401
    assert models.json()["error"]["type"]
    login = requests.get(web + "/accounts/login/", timeout=10)
    assert login.status_code == 200
    static = requests.get(web + "/static/css/portal.css", timeout=10)  # the portal's own
    assert static.status_code == 200


@pytest.mark.parametrize("role", ["gateway", "worker"])
def test_a_role_that_cannot_start_exits_non_zero(image_id, secrets_dir, tmp_path, role):
    """A missing secret file stops the container at once with the variable named: the
    orchestrator sees the failure (crash loop with back-off), nothing keeps respawning."""
    started = time.monotonic()
    completed = subprocess.run(
        [*PODMAN, *RUN, "--rm", *_env(secrets_dir, SECRET_KEY_FILE="/run/secrets/portal/none"),
         image_id, role], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 78, completed.stderr[-2000:]
    assert "SECRET_KEY_FILE" in completed.stderr
    assert time.monotonic() - started < 300


def test_a_gateway_whose_database_is_gone_exits(image_id, secrets_dir, tmp_path):
    broken = tmp_path / "secrets"
    shutil.copytree(secrets_dir, broken)
    (broken / "database-url").chmod(0o644)
    (broken / "database-url").write_text(f"postgres://portal:x@127.0.0.1:{free_port()}/none")
    completed = subprocess.run(
        [*PODMAN, *RUN, "--rm", *_env(broken, PORT=str(free_port())), image_id, "gateway"],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert completed.stderr.count("Application startup failed") == 1, completed.stderr[-2000:]
