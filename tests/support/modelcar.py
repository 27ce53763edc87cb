"""Small ModelCar images and model files built by the tests: clean ones and each kind of
attack the scanner must catch. Malicious pickles are written, never loaded."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]] | None = None,
                      *, corrupt_offsets: bool = False) -> bytes:
    """A valid safetensors file (zero-filled tensors); `corrupt_offsets` points one tensor
    past the end of the file."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1}
    tensors = tensors or {"embed.weight": ("F32", [4, 2]), "lm_head.weight": ("F16", [2, 4])}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        length = sizes[dtype]
        for dim in shape:
            length *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + length]}
        offset += length
    if corrupt_offsets:
        first = next(k for k in header if k != "__metadata__")
        header[first]["data_offsets"] = [0, offset + 4096]
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + bytes(offset)


class _RunsAShellCommand:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def malicious_pickle(protocol: int = 2) -> bytes:
    return pickle.dumps(_RunsAShellCommand(), protocol=protocol)


def clean_pickle() -> bytes:
    return pickle.dumps({"weights": [1.0, 2.0], "step": 3}, protocol=4)


def pytorch_zip_checkpoint(data_pkl: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", bytes(16))
    return buffer.getvalue()


def legacy_pytorch_bin(payload: bytes) -> bytes:
    """What torch.save wrote before 1.6: magic number, protocol version and sys info pickles,
    then the object pickle — here the malicious one."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    return (magic + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
            + payload + pickle.dumps(["0"], protocol=2))


def numpy_object_array(payload: bytes, descr: str = "'|O'") -> bytes:
    """An .npy file of the dtype `descr` (a Python literal, as NumPy writes it) whose data
    is `payload`: for an object dtype, np.load(allow_pickle=True) unpickles it."""
    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def tar_bytes(files: dict[str, bytes], *, compression: str = "") -> bytes:
    """A tar of `files`; `compression` "gz", "bz2" or "xz" compresses it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_bytes(chat_template: str | None = None) -> bytes:
    kvs = [("general.architecture", 8, _gguf_string("llama")),
           ("llama.context_length", 4, struct.pack("<I", 4096)),
           ("tokenizer.ggml.tokens", 9,
            struct.pack("<IQ", 8, 3) + b"".join(_gguf_string(t) for t in ("a", "b", "c")))]
    if chat_template is not None:
        kvs.append(("tokenizer.chat_template", 8, _gguf_string(chat_template)))
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, value in kvs:
        body += _gguf_string(key) + struct.pack("<I", kind) + value
    return body


CLEAN_FILES = {
    "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}).encode(),
    "model.safetensors": safetensors_bytes(),
    "tokenizer.json": json.dumps({"version": "1.0",
                                  "model": {"type": "BPE", "vocab": {}}}).encode(),
}


def layer_tar(files: dict[str, bytes], *, prefix: str = "models/",
              extra_members: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo(prefix.rstrip("/"))
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, content in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
        for info, content in extra_members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "",
           content: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if content is not None:
        info.size = len(content)
    return info, content


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_modelcar_archive(path: Path, files: dict[str, bytes] | None = None, *,
                           fmt: str = "oci", gzip_layers: bool = True,
                           layers: list[bytes] | None = None,
                           extra_members: list[tuple[tarfile.TarInfo, bytes | None]] = (),
                           layer_media_type: str | None = None,
                           corrupt_blob: bool = False) -> Path:
    """An image archive with one layer holding `files` under models/ (or the given layers).

    fmt "oci": an OCI image layout tar; "docker": what `docker save` writes.
    `corrupt_blob` flips a byte of the first layer after its digest was taken."""
    layers = layers if layers is not None else [layer_tar(files if files is not None
                                                          else CLEAN_FILES,
                                                          extra_members=extra_members)]
    blobs = [gzip.compress(layer, mtime=0) if gzip_layers else layer for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers",
                                    "diff_ids": [_digest(layer) for layer in layers]}}).encode()
    media = layer_media_type or ("application/vnd.oci.image.layer.v1.tar+gzip" if gzip_layers
                                 else "application/vnd.oci.image.layer.v1.tar")
    stored = list(blobs)
    if corrupt_blob:
        stored[0] = stored[0][:-1] + bytes([stored[0][-1] ^ 0xFF])
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        if fmt == "docker":
            names = []
            for index, blob in enumerate(stored):
                names.append(f"layer{index}/layer.tar")
                add(names[-1], blob)
            add("config.json", config)
            add("manifest.json", json.dumps([{"Config": "config.json",
                                              "RepoTags": ["modelcar:latest"],
                                              "Layers": names}]).encode())
            return path
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": media, "digest": _digest(blob), "size": len(blob)}
                       for blob in blobs],
        }).encode()
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": _digest(manifest), "size": len(manifest)}]}).encode())
        # Blobs are stored under the digest the manifest names, so a corrupted one mismatches.
        pairs = [(config, config), (manifest, manifest), *zip(blobs, stored, strict=True)]
        for named, data in pairs:
            add(f"blobs/sha256/{_digest(named).split(':')[1]}", data)
    return path
