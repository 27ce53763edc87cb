"""The tokenizer inside a GGUF file (`tokenizer.ggml.*` metadata), read with bounds.

A GGUF ModelCar usually has no tokenizer.json: its vocabulary, scores and token types live in
the GGUF header. This reads them (every length and count checked against the file, so a
crafted header fails cleanly) into a JSON document that `gateway.spm` turns into a tokenizer
counting exactly as llama.cpp does. Only SentencePiece vocabularies (`tokenizer.ggml.model` =
"llama": Llama 2, Gemma, Mistral …) are read; for others there is no document and the gateway
counts by characters.
"""

from __future__ import annotations

import json
import struct
from array import array
from pathlib import Path

DOCUMENT_FORMAT = "gguf-spm"
MAX_TOKENS = 2_000_000
MAX_TOKEN_BYTES = 64 * 1024
MAX_TEMPLATE_BYTES = 1024 * 1024

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
GGUF_STRING = _STRING = 8
_ARRAY = 9
_KEPT_ARRAYS = {"tokenizer.ggml.tokens": _STRING, "tokenizer.ggml.scores": 6,
                "tokenizer.ggml.token_type": 5}
_KEPT_SCALARS = ("tokenizer.ggml.model", "tokenizer.ggml.add_space_prefix",
                 "tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id",
                 "tokenizer.ggml.eos_token_id", "tokenizer.chat_template")


class GgufError(Exception):
    """The GGUF header can't be read; the message says where it broke."""


class GgufReader:
    """Reads a GGUF header's values, every length and count checked against the file."""

    def __init__(self, handle, size: int):
        self.handle, self.size = handle, size

    def read(self, fmt: str):
        width = struct.calcsize(fmt)
        data = self.handle.read(width)
        if len(data) != width:
            raise GgufError("the file ends inside its metadata")
        return struct.unpack(fmt, data)[0]

    def raw(self, length: int) -> bytes:
        if self.handle.tell() + length > self.size:
            raise GgufError("a value runs past the end of the file")
        return self.handle.read(length)

    def string(self, keep: bool, limit: int = MAX_TEMPLATE_BYTES) -> str | None:
        length = self.read("<Q")
        if not keep:
            if self.handle.tell() + length > self.size:
                raise GgufError("a string runs past the end of the file")
            self.handle.seek(length, 1)
            return None
        if length > limit:
            raise GgufError(f"a string of {length} bytes is longer than {limit} allowed")
        return self.raw(length).decode("utf-8", "replace")

    def header(self) -> int:
        """Checks the magic, version and counts; returns the number of metadata keys."""
        if self.handle.read(4) != b"GGUF":
            raise GgufError("not a GGUF file")
        version = self.read("<I")
        if version not in (2, 3):
            raise GgufError(f"unsupported GGUF version {version}")
        tensors, kv_count = self.read("<Q"), self.read("<Q")
        if tensors > 10_000_000 or kv_count > 1_000_000:
            raise GgufError(f"implausible counts ({tensors} tensors, {kv_count} keys)")
        return kv_count

    def skip(self, kind: int) -> None:
        if kind in _SCALARS:
            self.read(_SCALARS[kind])
        elif kind == _STRING:
            self.string(keep=False)
        elif kind == _ARRAY:
            item_kind, count = self.read("<I"), self.read("<Q")
            if count > self.size:
                raise GgufError("an array claims more items than the file has bytes")
            if item_kind in _SCALARS:
                width = struct.calcsize(_SCALARS[item_kind])
                if self.handle.tell() + count * width > self.size:
                    raise GgufError("an array runs past the end of the file")
                self.handle.seek(count * width, 1)
            else:
                for _ in range(count):
                    self.skip(item_kind)
        else:
            raise GgufError(f"unknown metadata value type {kind}")

    def array(self, expected: int) -> list:
        item_kind, count = self.read("<I"), self.read("<Q")
        if count > MAX_TOKENS:
            raise GgufError(f"the vocabulary claims {count} entries (at most {MAX_TOKENS})")
        if item_kind != expected:
            raise GgufError(f"a tokenizer array has items of type {item_kind}, not {expected}")
        if item_kind == _STRING:
            return [self.string(keep=True, limit=MAX_TOKEN_BYTES) for _ in range(count)]
        values = array("f" if item_kind == 6 else "i")
        values.frombytes(self.raw(count * 4))
        if values.itemsize != 4:
            raise GgufError("this platform's array sizes differ from GGUF's")
        return values.tolist()


def read_tokenizer(path: Path) -> dict:
    """The `tokenizer.ggml.*` and chat template metadata of a GGUF file (keys present only)."""
    size = Path(path).stat().st_size
    found: dict = {}
    with Path(path).open("rb") as handle:
        reader = GgufReader(handle, size)
        kv_count = reader.header()
        for _ in range(kv_count):
            key = reader.string(keep=True, limit=MAX_TOKEN_BYTES)
            kind = reader.read("<I")
            if key in _KEPT_ARRAYS and kind == _ARRAY:
                found[key] = reader.array(_KEPT_ARRAYS[key])
            elif key in _KEPT_SCALARS and kind == _STRING:
                found[key] = reader.string(keep=True)
            elif key in _KEPT_SCALARS and kind in _SCALARS:
                found[key] = reader.read(_SCALARS[kind])
            else:
                reader.skip(kind)
    return found


def tokenizer_document(path: Path) -> str | None:
    """A JSON document of the GGUF's SentencePiece tokenizer for `gateway.spm`, or None when
    the file has no SentencePiece vocabulary."""
    meta = read_tokenizer(path)
    tokens = meta.get("tokenizer.ggml.tokens")
    if meta.get("tokenizer.ggml.model") != "llama" or not tokens:
        return None
    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(scores) < len(tokens) or len(types) < len(tokens):
        raise GgufError("the vocabulary's scores or token types are shorter than its tokens")
    bos = meta.get("tokenizer.ggml.bos_token_id")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    return json.dumps({
        "format": DOCUMENT_FORMAT,
        "tokens": tokens,
        "scores": scores[:len(tokens)],
        "types": types[:len(tokens)],
        "add_space_prefix": bool(meta.get("tokenizer.ggml.add_space_prefix", True)),
        "add_bos": bool(meta.get("tokenizer.ggml.add_bos_token", True)),
        "bos_id": bos if isinstance(bos, int) and 0 <= bos < len(tokens) else None,
        "eos_id": eos if isinstance(eos, int) and 0 <= eos < len(tokens) else None,
        "chat_template": meta.get("tokenizer.chat_template") or "",
    }, ensure_ascii=False, separators=(",", ":"))
