"""Reading a ModelCar saved as an archive: an OCI image layout tar (`podman save --format
oci-archive`, `skopeo copy … oci-archive:`) or a `docker save` tar — or a CNCF ModelPack
artifact in an OCI image layout tar (`kit`, `oras copy --to-oci-layout`, then tar).

Every blob is hashed while streaming from the tar and compared with the digest and size the
manifest names, so nothing unverified is pushed or scanned. Blobs are never held in memory.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from models_catalog.scanning import modelpack

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TYPES = frozenset({LAYER_TAR, LAYER_GZIP,
                         "application/vnd.docker.image.rootfs.diff.tar.gzip",
                         "application/vnd.docker.image.rootfs.diff.tar"})
_CHUNK = 1024 * 1024


class UnreadableArchive(Exception):
    """The archive can't be used; the message says why and what to do."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    filepath: str = ""  # a ModelPack layer's org.cncf.model.filepath annotation


@dataclass
class OciImage:
    path: Path
    manifest_bytes: bytes
    manifest_digest: str
    manifest_media_type: str
    config: Descriptor
    layers: list[Descriptor]
    _members: dict[str, str]  # digest → member name in the tar
    kind: str = "modelcar"  # or "modelpack"

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[IO[bytes]]:
        name = self._members.get(digest)
        if name is None:
            raise KeyError(digest)
        with tarfile.open(self.path, "r:") as tar:
            handle = tar.extractfile(tar.getmember(name))
            if handle is None:
                raise UnreadableArchive(f"{name} in the archive is not a regular file.")
            yield handle


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_oci_archive(path: Path) -> OciImage:
    path = Path(path)
    try:
        with tarfile.open(path, "r:") as tar:
            members = {_clean(m.name): m for m in tar.getmembers() if m.isfile()}
            if "index.json" in members:
                return _read_layout(path, tar, members)
            if "manifest.json" in members:
                return _read_docker(path, tar, members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnreadableArchive(
            f"The archive is truncated or not a tar file ({exc}). Save the image again "
            "(podman save --format oci-archive, or docker save) and upload the whole file."
        ) from None
    raise UnreadableArchive("The file holds neither an OCI image layout (index.json) nor a "
                            "docker save manifest (manifest.json).")


def _clean(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> tuple[bytes, dict]:
    if member.size > 4 * 1024 * 1024:
        raise UnreadableArchive(f"The {what} is implausibly large ({member.size} bytes).")
    data = tar.extractfile(member).read()
    try:
        return data, json.loads(data)
    except ValueError:
        raise UnreadableArchive(f"The {what} is not valid JSON.") from None


def _hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> tuple[str, int, bytes]:
    """(digest, size, first bytes) of a member, streamed."""
    digest, size, head = hashlib.sha256(), 0, b""
    handle = tar.extractfile(member)
    while chunk := handle.read(_CHUNK):
        if not head:
            head = chunk[:4]
        digest.update(chunk)
        size += len(chunk)
    if size != member.size:
        raise UnreadableArchive(f"{member.name} is cut short: the archive is truncated.")
    return "sha256:" + digest.hexdigest(), size, head


def _blob_member(members: dict[str, tarfile.TarInfo], digest: str) -> tarfile.TarInfo:
    algorithm, _, hexdigest = digest.partition(":")
    member = members.get(f"blobs/{algorithm}/{hexdigest}")
    if algorithm != "sha256" or member is None:
        raise UnreadableArchive(f"The archive lacks blob {digest} that its manifest names.")
    return member


def _verify(tar, members, descriptor: Descriptor) -> None:
    member = _blob_member(members, descriptor.digest)
    actual, size, _ = _hash_member(tar, member)
    if actual != descriptor.digest:
        raise UnreadableArchive(f"Blob {descriptor.digest} does not match its digest (its "
                                f"content hashes to {actual}): the archive is corrupt.")
    if size != descriptor.size:
        raise UnreadableArchive(f"Blob {descriptor.digest} is {size} bytes, but the manifest "
                                f"says {descriptor.size}: the archive is corrupt.")


def _descriptor(data: dict, what: str) -> Descriptor:
    from models_catalog.scanning.modelpack import FILEPATH_ANNOTATION

    try:
        annotations = data.get("annotations") or {}
        return Descriptor(str(data["mediaType"]), str(data["digest"]), int(data["size"]),
                          str(annotations.get(FILEPATH_ANNOTATION, "")))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UnreadableArchive(f"The manifest's {what} descriptor is incomplete.") from None


def _read_layout(path, tar, members) -> OciImage:
    _, index = _read_json(tar, members["index.json"], "image index (index.json)")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not manifests:
        raise UnreadableArchive("index.json names no image.")
    entry = _descriptor(manifests[0], "image")
    if entry.media_type in (OCI_INDEX, DOCKER_LIST):
        raise UnreadableArchive("The archive holds a multi-platform index; save a single "
                                "platform image (e.g. --platform linux/amd64).")
    if entry.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise UnreadableArchive(f"Unsupported manifest media type {entry.media_type!r}: "
                                "a ModelCar is an OCI image.")
    member = _blob_member(members, entry.digest)
    raw, manifest = _read_json(tar, member, "image manifest")
    if sha256_digest(raw) != entry.digest:
        raise UnreadableArchive(f"The image manifest does not match its digest {entry.digest}: "
                                "the archive is corrupt.")
    media_type = manifest.get("mediaType") or entry.media_type
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise UnreadableArchive(f"Unsupported manifest media type {media_type!r}.")
    if not isinstance(manifest, dict):
        raise UnreadableArchive("The image manifest is not a JSON object.")
    if modelpack.is_modelpack(manifest):
        return _read_modelpack(path, tar, members, raw, entry.digest, media_type, manifest)
    config = _descriptor(manifest.get("config") or {}, "config")
    if config.media_type not in (OCI_CONFIG, DOCKER_CONFIG):
        raise UnreadableArchive(f"Unsupported config media type {config.media_type!r}: this "
                                "is not a container image (an artifact?).")
    layers = [_descriptor(layer, "layer") for layer in manifest.get("layers") or []]
    if not layers:
        raise UnreadableArchive("The image has no layers.")
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise UnreadableArchive(f"Layer {layer.digest} has the unsupported media type "
                                    f"{layer.media_type!r}; use tar or tar+gzip layers.")
    for descriptor in (config, *layers):
        _verify(tar, members, descriptor)
    names = {d.digest: _blob_member(members, d.digest).name for d in (config, *layers)}
    return OciImage(path, raw, entry.digest, media_type, config, layers, names)


def _read_modelpack(path, tar, members, raw: bytes, digest: str, media_type: str,
                    manifest: dict) -> OciImage:
    """A ModelPack artifact: its config and every layer must be of the ModelPack types."""
    config = _descriptor(manifest.get("config") or {}, "config")
    if config.media_type != modelpack.CONFIG_MEDIA_TYPE:
        raise UnreadableArchive(f"The ModelPack artifact's config has the media type "
                                f"{config.media_type!r}, not {modelpack.CONFIG_MEDIA_TYPE!r}.")
    layers = [_descriptor(layer, "layer") for layer in manifest.get("layers") or []]
    if not layers:
        raise UnreadableArchive("The ModelPack artifact has no layers.")
    for layer in layers:
        problem = modelpack.layer_problem(layer.media_type, layer.filepath)
        if problem:
            raise UnreadableArchive(f"Layer {layer.digest}: {problem}.")
    for descriptor in (config, *layers):
        _verify(tar, members, descriptor)
    names = {d.digest: _blob_member(members, d.digest).name for d in (config, *layers)}
    return OciImage(path, raw, digest, media_type, config, layers, names, kind="modelpack")


def _read_docker(path, tar, members) -> OciImage:
    _, saved = _read_json(tar, members["manifest.json"], "docker save manifest")
    if not isinstance(saved, list) or not saved or not isinstance(saved[0], dict):
        raise UnreadableArchive("manifest.json names no image.")
    entry = saved[0]
    config_name, layer_names = entry.get("Config"), entry.get("Layers") or []
    if config_name not in members or not layer_names:
        raise UnreadableArchive("manifest.json names a config or layers the archive lacks.")
    config_digest, config_size, _ = _hash_member(tar, members[config_name])
    names = {config_digest: members[config_name].name}
    layers = []
    for name in layer_names:
        member = members.get(name)
        if member is None:
            raise UnreadableArchive(f"The archive lacks layer {name} that manifest.json names.")
        digest, size, head = _hash_member(tar, member)
        layers.append(Descriptor(LAYER_GZIP if head[:2] == b"\x1f\x8b" else LAYER_TAR,
                                 digest, size))
        names[digest] = member.name
    config = Descriptor(OCI_CONFIG, config_digest, config_size)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest,
                   "size": config.size},
        "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size}
                   for d in layers],
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return OciImage(path, raw, sha256_digest(raw), OCI_MANIFEST, config, layers, names)
