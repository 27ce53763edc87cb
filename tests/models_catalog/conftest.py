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
    """Push a one-layer image straight to the registry (as `skopeo copy` would)."""
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
