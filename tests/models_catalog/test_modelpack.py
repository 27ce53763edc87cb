"""CNCF ModelPack artifacts beside ModelCar images: an archive uploaded through the wizard's
API, or an artifact already in the landing namespace, goes through the same verification,
scan, SBOM, four-eyes approval and signature to publication in the real registry; attacks
in its layers are caught like a ModelCar's, and `model_scan` reads it offline."""

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from models_catalog import services
from models_catalog.models import ArtifactKind, VersionStatus
from models_catalog.signing import version_verify_registry
from tests.support.modelcar import CLEAN_FILES, malicious_pickle
from tests.support.modelpack import build_modelpack_archive, push_modelpack

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
CHUNK = 16 * 1024
FILES = {**CLEAN_FILES, "README.md": b"# A test model\n", "nested/generation_config.json": b"{}"}


def _new_version(msp_admin, prefix: str = "mp"):
    model = services.model_create(actor=msp_admin, slug=f"{prefix}-{uuid.uuid4().hex[:8]}",
                                  name="ModelPack", task="chat", license="Apache-2.0")
    return services.version_create(actor=msp_admin, model=model, version="1.0",
                                   base_model="hf.co/meta-llama/Llama-3-8B")


def _upload_through_the_api(client, version, archive: bytes) -> None:
    """What the wizard's page does: start a resumable upload, PUT chunks, complete."""
    url = f"/api/models/{version.model.slug}/versions/1.0/upload/"
    session = client.post(url, {"filename": "model.tar", "size_bytes": len(archive)},
                          content_type="application/json").json()
    for offset in range(0, len(archive), CHUNK):
        part = archive[offset:offset + CHUNK]
        response = client.generic(
            "PUT", session["url"], part, content_type="application/octet-stream",
            HTTP_CONTENT_RANGE=f"bytes {offset}-{offset + len(part) - 1}/{len(archive)}")
        assert response.status_code == 200, response.content
    assert client.post(session["complete_url"]).status_code == 200


def _push_and_scan(version):
    services.version_push_upload(version_id=version.pk)
    version.refresh_from_db()
    if version.status == VersionStatus.QUARANTINED:
        services.version_scan(version_id=version.pk)
        version.refresh_from_db()
    return version


def test_a_modelpack_archive_goes_through_the_wizard_to_publication(
        client, tmp_path, registry_settings, registry_client, msp_admin, second_admin):
    version = _new_version(msp_admin)
    archive = build_modelpack_archive(tmp_path / "mp.tar", FILES,
                                      forms={"model.safetensors": "raw",
                                             "config.json": "tar+gzip"}).read_bytes()
    client.force_login(msp_admin)
    _upload_through_the_api(client, version, archive)
    version = _push_and_scan(version)

    assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
    assert version.artifact_kind == ArtifactKind.MODELPACK
    landing = registry_client.manifest_get(version.landing_repository, version.manifest_digest)
    assert landing.data["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert {f.path: f.format for f in version.files.all()} == {
        "README.md": "text", "config.json": "json", "model.safetensors": "safetensors",
        "nested/generation_config.json": "json", "tokenizer.json": "json"}
    assert version.tokenizer == CLEAN_FILES["tokenizer.json"].decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(version.sbom) is None
    assert json.loads(version.sbom)["metadata"]["component"]["version"] == \
        version.manifest_digest

    page = client.get(f"/catalog/{version.model.slug}/v/1.0/").content.decode()
    assert "CNCF ModelPack artifact" in page
    services.version_submit(actor=msp_admin, version=version, note="")
    client.force_login(second_admin)
    response = client.post(f"/api/models/{version.model.slug}/versions/1.0/approve/")
    assert response.status_code == 200, response.content
    version.refresh_from_db()
    assert version.status == VersionStatus.PUBLISHED
    trusted = registry_client.manifest_get(version.trusted_repository, version.manifest_digest)
    assert trusted.raw == landing.raw  # the very same artifact, copied by digest
    check = version_verify_registry(version)
    assert check.ok, check.reason
    assert version.storage_uri("registry.example") == (
        f"oci+native://registry.example/{version.trusted_repository}@{version.manifest_digest}")


def test_a_modelpack_in_the_landing_namespace_is_pinned_and_scanned(
        registry_settings, registry_client, msp_admin):
    version = _new_version(msp_admin)
    digest = push_modelpack(registry_client, version.landing_repository, "1.0", FILES,
                            form="tar+gzip")
    services.version_register_reference(actor=msp_admin, version=version,
                                        repository=version.landing_repository, reference="1.0")
    version.refresh_from_db()
    assert version.manifest_digest == digest
    assert version.artifact_kind == ArtifactKind.MODELPACK
    services.version_scan(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
    assert "nested/generation_config.json" in {f.path for f in version.files.all()}


def test_a_pickle_in_a_weight_layer_rejects_the_modelpack(tmp_path, registry_settings,
                                                          registry_client, msp_admin):
    version = _new_version(msp_admin)
    push_modelpack(registry_client, version.landing_repository, "1.0",
                   {**CLEAN_FILES, "optimizer.pkl": malicious_pickle()}, form="raw")
    services.version_register_reference(actor=msp_admin, version=version,
                                        repository=version.landing_repository, reference="1.0")
    services.version_scan(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == VersionStatus.REJECTED
    assert version.status_reason.startswith("Malicious content")
    assert "optimizer.pkl" in version.status_reason


def test_a_raw_layer_naming_a_path_outside_the_model_rejects_it(tmp_path, registry_settings,
                                                                 msp_admin):
    version = _new_version(msp_admin)
    archive = build_modelpack_archive(tmp_path / "evil.tar",
                                      {**CLEAN_FILES, "../../etc/cron.d/x": b"* * * * *"},
                                      form="raw").read_bytes()
    session = services.upload_session_create(actor=msp_admin, version=version,
                                             filename="evil.tar", size_bytes=len(archive))
    session = services.upload_chunk_append(session=session, offset=0, length=len(archive),
                                           stream=io.BytesIO(archive))
    services.upload_complete(actor=msp_admin, session=session)
    version = _push_and_scan(version)
    assert version.status == VersionStatus.REJECTED
    assert "path_traversal" in {f["code"] for f in version.scan_report["findings"]}


def test_zstd_layers_and_unknown_layer_types_are_refused_with_the_reason(
        tmp_path, registry_settings, registry_client, msp_admin):
    zstd = build_modelpack_archive(
        tmp_path / "zstd.tar", CLEAN_FILES,
        layer_media_types={"model.safetensors":
                           "application/vnd.cncf.model.weight.v1.tar+zstd"}).read_bytes()
    version = _new_version(msp_admin)
    session = services.upload_session_create(actor=msp_admin, version=version,
                                             filename="zstd.tar", size_bytes=len(zstd))
    session = services.upload_chunk_append(session=session, offset=0, length=len(zstd),
                                           stream=io.BytesIO(zstd))
    services.upload_complete(actor=msp_admin, session=session)
    version = _push_and_scan(version)
    assert version.status == VersionStatus.REJECTED
    assert "zstd" in version.status_reason and "tar+gzip" in version.status_reason

    other = _new_version(msp_admin)
    push_modelpack(registry_client, other.landing_repository, "1.0", CLEAN_FILES,
                   layer_media_types={"config.json": "application/vnd.example.secret.v1"})
    services.version_register_reference(actor=msp_admin, version=other,
                                        repository=other.landing_repository, reference="1.0")
    services.version_scan(version_id=other.pk)
    other.refresh_from_db()
    assert other.status == VersionStatus.REJECTED
    assert "application/vnd.example.secret.v1" in other.status_reason


def test_model_scan_reads_a_modelpack_archive_offline(tmp_path):
    import os

    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none",
           "PORTAL_IGNORE_DOTENV": "1", "DEBUG": "true", "REDIS_URL": ""}
    clean = build_modelpack_archive(tmp_path / "clean.tar", FILES)
    result = subprocess.run([sys.executable, "manage.py", "model_scan", str(clean)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {f["path"] for f in json.loads(result.stdout)["files"]} == set(FILES)
    evil = build_modelpack_archive(tmp_path / "evil.tar",
                                   {**CLEAN_FILES, "evil.pkl": malicious_pickle()})
    result = subprocess.run([sys.executable, "manage.py", "model_scan", str(evil)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert json.loads(result.stdout)["verdict"] == "malicious"


def test_a_modelcar_reference_stays_a_modelcar(registry_settings, registry_client, msp_admin):
    from tests.models_catalog.conftest import push_image

    version = _new_version(msp_admin)
    push_image(registry_client, version.landing_repository, "1.0", CLEAN_FILES)
    services.version_register_reference(actor=msp_admin, version=version,
                                        repository=version.landing_repository, reference="1.0")
    version.refresh_from_db()
    assert version.artifact_kind == ArtifactKind.MODELCAR
    assert version.storage_uri("r.example").startswith("oci://r.example/")
