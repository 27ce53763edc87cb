"""The gate with the real scanner and the real registry: a ModelCar archive uploaded in
chunks is pushed to the landing repository, scanned and inventoried; attacks and policy
refusals reject the version with the reason; a clean one awaits approval with a valid SBOM."""

import io
import json
import uuid

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from models_catalog import services
from models_catalog.models import VersionStatus
from tests.support.modelcar import (
    CLEAN_FILES,
    build_modelcar_archive,
    clean_pickle,
    malicious_pickle,
    pytorch_zip_checkpoint,
)

pytestmark = pytest.mark.django_db
CHUNK = 16 * 1024


def upload_and_scan(tmp_path, msp_admin, files, *, fmt="oci", mutate=None):
    """Upload an archive through the resumable session in chunks, push it, scan it."""
    model = services.model_create(actor=msp_admin, slug=f"gs-{uuid.uuid4().hex[:8]}",
                                  name="Gate scan", task="chat", license="Apache-2.0")
    version = services.version_create(actor=msp_admin, model=model, version="1.0",
                                      base_model="llama-3-8b")
    archive = build_modelcar_archive(tmp_path / "car.tar", files, fmt=fmt).read_bytes()
    if mutate:
        archive = mutate(archive)
    session = services.upload_session_create(actor=msp_admin, version=version,
                                             filename="car.tar", size_bytes=len(archive))
    for offset in range(0, len(archive), CHUNK):  # as the browser sends it
        part = archive[offset:offset + CHUNK]
        session = services.upload_chunk_append(session=session, offset=offset, length=len(part),
                                               stream=io.BytesIO(part))
    services.upload_complete(actor=msp_admin, session=session)
    services.version_push_upload(version_id=version.pk)
    version.refresh_from_db()
    if version.status == VersionStatus.QUARANTINED:
        services.version_scan(version_id=version.pk)
        version.refresh_from_db()
    return version


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_a_clean_modelcar_goes_from_upload_to_awaiting_approval(tmp_path, registry_settings,
                                                                 msp_admin, fmt):
    version = upload_and_scan(tmp_path, msp_admin, CLEAN_FILES, fmt=fmt)
    assert version.status == VersionStatus.AWAITING_APPROVAL, version.status_reason
    assert version.scan_verdict == "clean"
    assert {f.path: f.format for f in version.files.all()} == {
        "config.json": "json", "model.safetensors": "safetensors", "tokenizer.json": "json"}
    # The gateway counts tokens with the image's own tokenizer when a server reports none.
    assert version.tokenizer == CLEAN_FILES["tokenizer.json"].decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(version.sbom) is None
    sbom = json.loads(version.sbom)
    assert sbom["metadata"]["component"]["version"] == version.manifest_digest
    assert sbom["components"][0]["version"] == "1.0"  # the version's label and lineage
    assert any(p["value"] == "llama-3-8b"
               for p in sbom["components"][0]["modelCard"]["properties"])


@pytest.mark.parametrize("name, content", [
    ("evil.pkl", malicious_pickle()),
    ("pytorch_model.bin", pytorch_zip_checkpoint(malicious_pickle())),
    ("weights.pth", malicious_pickle(protocol=0)),  # plain ASCII, no pickle header
])
def test_code_in_a_pickle_rejects_the_version(tmp_path, registry_settings, msp_admin, name,
                                              content):
    version = upload_and_scan(tmp_path, msp_admin, {**CLEAN_FILES, name: content})
    assert version.status == VersionStatus.REJECTED
    assert version.status_reason.startswith("Malicious content")
    assert name in version.status_reason and "system" in version.status_reason
    assert version.scan_report["verdict"] == "malicious"


def test_a_clean_pickle_is_refused_by_the_default_policy(tmp_path, registry_settings,
                                                         msp_admin):
    version = upload_and_scan(tmp_path, msp_admin, {**CLEAN_FILES, "optimizer.pkl":
                                                    clean_pickle()})
    assert version.status == VersionStatus.REJECTED
    assert "Refused by the platform's scan policy" in version.status_reason
    assert version.scan_verdict == "clean" and not version.scan_report["passes_policy"]


def test_a_truncated_upload_is_rejected_with_the_reason(tmp_path, registry_settings, msp_admin):
    def truncate(data: bytes) -> bytes:
        return data[: data.rfind(b"\x1f\x8b\x08") + 50]

    version = upload_and_scan(tmp_path, msp_admin, CLEAN_FILES, mutate=truncate)
    assert version.status == VersionStatus.REJECTED
    assert "truncated" in version.status_reason


def test_a_path_traversal_in_a_layer_rejects_the_version(tmp_path, registry_settings,
                                                         msp_admin):
    import tarfile

    from tests.support.modelcar import member

    model = services.model_create(actor=msp_admin, slug=f"gs-{uuid.uuid4().hex[:8]}",
                                  name="Traversal", task="chat")
    version = services.version_create(actor=msp_admin, model=model, version="1.0")
    archive = build_modelcar_archive(
        tmp_path / "t.tar", CLEAN_FILES,
        extra_members=[member("models/../../etc/cron.d/x", tarfile.REGTYPE, content=b"* * *")])
    data = archive.read_bytes()
    session = services.upload_session_create(actor=msp_admin, version=version, filename="t.tar",
                                             size_bytes=len(data))
    session = services.upload_chunk_append(session=session, offset=0, length=len(data),
                                           stream=io.BytesIO(data))
    services.upload_complete(actor=msp_admin, session=session)
    services.version_push_upload(version_id=version.pk)
    services.version_scan(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == VersionStatus.REJECTED
    assert "path-traversal" in version.status_reason
