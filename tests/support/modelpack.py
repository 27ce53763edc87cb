"""CNCF ModelPack artifacts built by the tests, the way KitOps and `modctl` lay them out: an
OCI image manifest with the ModelPack artifact type and config, one layer per file — a raw
blob named by `org.cncf.model.filepath`, or a tar (optionally gzip) of the file relative to
the model's root — saved as an OCI image layout tar, or pushed to the registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
FILEPATH = "org.cncf.model.filepath"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _kind(name: str) -> str:
    if name.endswith((".safetensors", ".gguf", ".bin", ".pt", ".pth", ".pkl")):
        return "weight"
    if name.endswith((".md", ".txt")):
        return "doc"
    return "weight.config"


def modelpack_blobs(files: dict[str, bytes], *, form: str = "tar",
                    forms: dict[str, str] | None = None,
                    layer_media_types: dict[str, str] | None = None
                    ) -> tuple[bytes, bytes, list[bytes]]:
    """(manifest, config, layer blobs) of a ModelPack artifact holding `files`. `form` is
    "raw", "tar" or "tar+gzip" for every layer; `forms` overrides it per file."""
    layers, blobs = [], []
    for name, content in files.items():
        chosen = (forms or {}).get(name, form)
        if chosen == "raw":
            blob = content
        elif chosen == "tar+gzip":
            blob = gzip.compress(_tar_of(name, content), mtime=0)
        else:
            blob = _tar_of(name, content)
        media = (layer_media_types or {}).get(
            name, f"application/vnd.cncf.model.{_kind(name)}.v1.{chosen}")
        layers.append({"mediaType": media, "digest": _digest(blob), "size": len(blob),
                       "annotations": {FILEPATH: name}})
        blobs.append(blob)
    config = json.dumps({
        "descriptor": {"name": "test-model", "version": "1.0", "family": "llama"},
        "config": {"format": "safetensors", "paramSize": "8b"},
        "modelfs": {"type": "layers", "diffIds": [_digest(b) for b in blobs]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
        "layers": layers,
    }, sort_keys=True).encode()
    return manifest, config, blobs


def build_modelpack_archive(path: Path, files: dict[str, bytes], **options) -> Path:
    """The artifact as an OCI image layout tar (what `kit` or `oras` save, tarred)."""
    manifest, config, blobs = modelpack_blobs(files, **options)
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "artifactType": ARTIFACT_TYPE, "digest": _digest(manifest),
             "size": len(manifest)}]}).encode())
        for data in {_digest(b): b for b in (config, manifest, *blobs)}.values():
            add(f"blobs/sha256/{_digest(data).split(':')[1]}", data)
    return path


def push_modelpack(client, repository: str, tag: str, files: dict[str, bytes],
                   **options) -> str:
    """Push the artifact straight to the registry (as `kit push` would); its digest."""
    manifest, config, blobs = modelpack_blobs(files, **options)
    for blob in (config, *blobs):
        client.blob_upload(repository, _digest(blob), io.BytesIO(blob), len(blob))
    return client.manifest_put(repository, tag, manifest,
                               "application/vnd.oci.image.manifest.v1+json")
