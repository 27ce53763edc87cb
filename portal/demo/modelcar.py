"""Pack model files as a ModelCar: an OCI image whose single layer holds them under /models,
saved as an OCI image layout tar — what `podman save --format oci-archive` writes, and what
the catalog's upload wizard accepts. Files are streamed, never held in memory."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1024 * 1024


class _HashingWriter(io.RawIOBase):
    def __init__(self, target):
        self.target, self.digest, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def pack_modelcar(target: Path, files: dict[str, Path | bytes], *, title: str,
                  workdir: Path) -> Path:
    """Write `target`: an OCI archive of one uncompressed layer with `files` (name under
    /models → path or content). Quantized weights don't compress: the layer is left plain."""
    workdir.mkdir(parents=True, exist_ok=True)
    layer_path = workdir / "layer.tar"
    with layer_path.open("wb") as raw:
        writer = _HashingWriter(raw)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as layer:
            directory = tarfile.TarInfo("models")
            directory.type, directory.mode = tarfile.DIRTYPE, 0o755
            layer.addfile(directory)
            for name, source in sorted(files.items()):
                if isinstance(source, bytes):
                    _add_bytes(layer, f"models/{name}", source)
                    continue
                info = tarfile.TarInfo(f"models/{name}")
                info.size, info.mode = source.stat().st_size, 0o644
                with source.open("rb") as handle:
                    layer.addfile(info, handle)
    layer_digest, layer_size = "sha256:" + writer.digest.hexdigest(), writer.size
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": title}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest,
                    "size": layer_size}],
        "annotations": {"org.opencontainers.image.title": title},
    }, sort_keys=True).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": _digest(manifest), "size": len(manifest)}]}).encode()
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(archive, "index.json", index)
        for data in (config, manifest):
            _add_bytes(archive, f"blobs/sha256/{_digest(data).split(':')[1]}", data)
        info = tarfile.TarInfo(f"blobs/sha256/{layer_digest.split(':')[1]}")
        info.size, info.mode = layer_size, 0o644
        with layer_path.open("rb") as handle:
            archive.addfile(info, handle)
    layer_path.unlink()
    partial.replace(target)
    return target
