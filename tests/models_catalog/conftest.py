import io
import json
import tarfile

import pytest

from models_catalog import registry as oci
from tests.factories import make_msp_admin


@pytest.fixture
def second_admin(db):
    return make_msp_admin(email="msp2@example.test")


@pytest.fixture
def registry_client(registry_settings):
    return oci.registry_client()


def models_layer(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar layer with `files` under /models."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"models/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def push_image(client: oci.RegistryClient, repository: str, tag: str,
               files: dict[str, bytes]) -> str:
    """Push a one-layer image straight to the registry (as `skopeo copy` would). Blobs are
    shared by content across repositories: tests that tamper with one use unique files."""
    layer = models_layer(files)
    config = client.blob_put(repository, json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
         "diff_ids": [oci.sha256_digest(layer)]}}).encode())
    client.blob_upload(repository, oci.sha256_digest(layer), io.BytesIO(layer), len(layer))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": oci.sha256_digest(layer), "size": len(layer)}],
    }).encode()
    return client.manifest_put(repository, tag, manifest, oci.OCI_MANIFEST)


FILES = {"config.json": b'{"architecture": "llama"}', "model.safetensors": b"\x08" + b"0" * 64,
         "tokenizer.json": b"{}"}


def make_submitted_version(registry_client, uploader, *, slug: str = ""):
    """A version pushed to the landing repository, pinned by reference, scanned clean (the
    scan's results written directly: for tests of what happens after the scan) and submitted
    by its uploader."""
    import hashlib
    import uuid

    from django.utils import timezone

    from models_catalog import services
    from models_catalog.models import ModelFile, ModelVersion, ScanVerdict, VersionStatus

    model = services.model_create(actor=uploader, slug=slug or f"approve-{uuid.uuid4().hex[:8]}",
                                  name="Approval test", task="chat")
    version = services.version_create(actor=uploader, model=model, version="1.0",
                                      base_model="llama-3")
    push_image(registry_client, f"landing/{model.slug}", "1.0", FILES)
    services.version_register_reference(actor=uploader, version=version,
                                        repository=f"landing/{model.slug}", reference="1.0")
    for path, content in FILES.items():
        ModelFile.objects.create(version=version, path=path, size_bytes=len(content),
                                 sha256=hashlib.sha256(content).hexdigest(), format="json")
    sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"})
    ModelVersion.objects.filter(pk=version.pk).update(
        status=VersionStatus.AWAITING_APPROVAL, scan_verdict=ScanVerdict.CLEAN,
        scanned_at=timezone.now(),
        scan_report={"verdict": "clean", "files": [], "findings": [
            {"path": "tokenizer.json", "severity": "info", "code": "example",
             "message": "A finding the reviewer reads."}]},
        sbom=sbom, sbom_digest=oci.sha256_digest(sbom.encode()))
    version.refresh_from_db()
    return services.version_submit(actor=uploader, version=version)
