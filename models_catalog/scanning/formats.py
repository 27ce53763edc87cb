"""What each file under /models is, judged by its content, and the checks for each kind.

Pickle-based files run code when loaded, so they go through picklescan (which, unlike
modelscan 0.8, reads the several pickles of a legacy PyTorch `.bin`). A pickle is
recognised by its opcode stream, not by a header (protocols 0 and 1 have none), also
inside zip and tar archives and compressed streams (joblib's gzip, bz2, xz, lzma, zlib),
which are opened one level deep. safetensors and GGUF headers are parsed and bounds-checked:
a crafted header is how a "safe" format attacks its parser. Chat templates (GGUF metadata,
tokenizer_config.json) are Jinja run by the model server, so sandbox-escape idioms in them
are findings too.
"""

from __future__ import annotations

import ast
import bz2
import gzip
import io
import json
import lzma
import re
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

from picklescan import scanner as picklescan

from models_catalog.scanning import pickles
from models_catalog.scanning.gguf_vocab import GGUF_STRING, MAX_TOKEN_BYTES, GgufError, GgufReader
from models_catalog.scanning.pickles import RewindableStream
from models_catalog.scanning.policy import (
    PICKLE_FORMATS,
    SAFE_WEIGHT_FORMATS,
    WEIGHTS_EXTENSIONS,
    ScanLimits,
    describe,
)
from models_catalog.scanning.report import Finding

LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
                      "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
                      "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER = 100 * 1024 * 1024
_JSON_LIMIT = 64 * 1024 * 1024
_HEAD = 512
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Formats whose content the scanner checks; a weights-named file that is none of them could
# not be checked.
CHECKED_WEIGHTS = SAFE_WEIGHT_FORMATS | PICKLE_FORMATS | {"numpy", "numpy_npz"}
# Formats recognised by a magic number before the opcode walk: a file may be one of them
# and a pickle at once (a polyglot), so the walk runs on them too.
# (GGUF can't be one: its header leaves a pickle no room to run anything.)
_POLYGLOT_HOSTS = frozenset({"zip", "zip_with_pickle", "pytorch_zip", "numpy_npz", "tar",
                             "tar_with_pickle"})
# A NumPy dtype that holds no Python objects: bool, numbers, bytes, str, void, datetimes.
_PLAIN_DTYPE = re.compile(r"[<>|=]?[?bBhHiIlLqQpPefdgFDGSUVamMcu]\d*(\[\w+\])?")
# What a broken archive or compressed stream raises while it is read.
_UNREADABLE = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
               lzma.LZMAError, EOFError, OSError, RuntimeError, NotImplementedError,
               ValueError)

# Jinja idioms that reach Python objects from a template: the known sandbox escapes.
_TEMPLATE_DANGERS = [
    (re.compile(r"__(class|mro|subclasses|globals|builtins|init|import|base|bases|dict|"
                r"getattribute|code|func_globals)__"), "reaches Python internals"),
    (re.compile(r"\b(lipsum|cycler|joiner|namespace)\s*\.\s*__"), "uses a known Jinja sandbox "
                                                                   "escape"),
    (re.compile(r"\|\s*attr\s*\(|\battr\s*\(\s*['\"]_"), "reads attributes by name"),
    (re.compile(r"\b(os|subprocess|sys|importlib)\s*\.\s*\w+"), "names a system module"),
    (re.compile(r"\b(popen|system|exec|eval|compile|open)\s*\("), "calls a dangerous function"),
]


def examine(path: Path, rel: str, limits: ScanLimits) -> tuple[str, list[Finding]]:
    """What a file is, judged by its content, and what its checks found."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        fmt, findings = _examine_content(handle, path, rel, size, limits)
        if fmt in _POLYGLOT_HOSTS:
            handle.seek(0)
            if pickles.runs_code(handle, size):
                handle.seek(0)
                findings += [Finding(rel, "high", "pickle_polyglot",
                                     f"{rel} is {describe(fmt)} and also a pickle that imports "
                                     "and calls code: a file built to pass as one format and "
                                     "load as the other."),
                             *pickles.scan(handle, rel, rel)]
    return fmt, findings + _name_findings(path, rel, fmt)


def _examine_content(handle, path: Path, rel: str, size: int,
                     limits: ScanLimits) -> tuple[str, list[Finding]]:
    head = handle.read(_HEAD)
    handle.seek(0)
    if head[:4] == b"GGUF":
        return "gguf", check_gguf(path, rel)
    if head[:6] == b"\x93NUMPY":
        return _examine_npy(handle, rel, rel)
    if head[:4] in ZIP_MAGICS:
        return _examine_zip(path, rel, limits)
    if head.startswith(LEGACY_TORCH_MAGIC):
        return "pytorch_legacy", _scan_legacy_pytorch(handle, rel)
    if len(head) >= 9:
        header_len = struct.unpack("<Q", head[:8])[0]
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors", check_safetensors(path, rel)
    kind = _compression(head)
    if kind:
        return _examine_compressed(kind, handle, rel, limits)
    if _is_tar(head):
        return _examine_tar(handle, rel, limits)
    if pickles.is_pickle(handle, size):
        handle.seek(0)
        return "pickle", pickles.scan(handle, rel, rel)
    fmt = _text_kind(path, head, size)
    if fmt == "json" and path.name == "tokenizer_config.json":
        return fmt, check_tokenizer_config(path, rel)
    return fmt, []


def _name_findings(path: Path, rel: str, fmt: str) -> list[Finding]:
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".gguf") and fmt != suffix[1:]:
        return [Finding(rel, "high", "weights_format_mismatch",
                        f"{rel} is named like a {suffix[1:]} file but is {describe(fmt)}: a "
                        "file disguised as a safe format, or a corrupt one. Replace it with the "
                        "real file.")]
    if suffix in WEIGHTS_EXTENSIONS and fmt not in CHECKED_WEIGHTS:
        return [Finding(rel, "medium", "unrecognized_weights",
                        f"{rel} is named like model weights ({suffix}) but is {describe(fmt)}, "
                        "which the scanner does not check; it could not be checked.")]
    return []


def _text_kind(path: Path, head: bytes, size: int) -> str:
    if head.lstrip()[:1] in (b"{", b"[") and size <= _JSON_LIMIT:
        try:
            json.loads(path.read_bytes())
            return "json"
        except ValueError:
            pass
    with path.open("rb") as handle:
        sample = handle.read(8192)
    if b"\0" not in sample:
        try:
            sample.decode("utf-8")
            return "text"
        except UnicodeDecodeError:
            pass
    return "other"


def _is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


# --- compressed streams and archives --------------------------------------------------

class _ZlibReader(io.RawIOBase):
    """A zlib stream (what joblib's "zlib" compression writes) read like a file."""

    def __init__(self, raw):
        self.raw, self.inflater, self.pending = raw, zlib.decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.inflater.eof:
            if not self.pending:
                self.pending = self.raw.read(64 * 1024)
                if not self.pending:
                    raise EOFError("the zlib stream is cut short")
            data = self.inflater.decompress(self.pending, len(buffer))
            self.pending = self.inflater.unconsumed_tail
            if data:
                buffer[:len(data)] = data
                return len(data)
        return 0


def _compression(head: bytes) -> str | None:
    """The compression a stream starts with, by its magic number: what joblib writes (lz4
    needs a package the scanner does not have)."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"\x5d\x00\x00":
        return "xz"
    if head[:1] == b"\x78" and len(head) > 1 and int.from_bytes(head[:2], "big") % 31 == 0:
        return "zlib"
    if head[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    return None


def _decompressed(kind: str, raw) -> IO[bytes]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bz2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    return io.BufferedReader(_ZlibReader(raw))


def _unreadable(rel: str, label: str, exc: Exception) -> Finding:
    return Finding(rel, "high", "archive_unreadable",
                   f"{label} can't be read ({exc.__class__.__name__}: {exc}), so what it holds "
                   "can't be checked. Store its files in /models directly.")


def _unchecked_lz4(rel: str, label: str) -> Finding:
    return Finding(rel, "high", "compressed_unchecked",
                   f"{label} is lz4-compressed, which joblib loads as a pickle and the scanner "
                   "can't open, so it can't be shown safe. Store it uncompressed, or as "
                   "safetensors.")


def _over_limit(rel: str, label: str, limits: ScanLimits) -> Finding:
    return Finding(rel, "high", "size_limit",
                   f"{label} decompresses to more than {limits.max_bytes} bytes (the platform's "
                   "cap; a decompression bomb?). Scanning it stopped there.")


def _examine_compressed(kind: str, handle, rel: str,
                        limits: ScanLimits) -> tuple[str, list[Finding]]:
    if kind == "lz4":
        return "compressed", [_unchecked_lz4(rel, rel)]
    stream = RewindableStream(_decompressed(kind, handle), limits.max_bytes)
    try:
        head = stream.read(_HEAD)
        stream.rewind()
        if _is_tar(head):
            stream.release()
            return _examine_tar(stream, rel, limits)
        member, findings = _examine_member(stream, rel, f"{rel} ({kind})", limits,
                                           decompressed=True)
    except _UNREADABLE as exc:
        return "compressed", [_unreadable(rel, rel, exc)]
    return ("pickle_compressed" if member == "pickle" else "compressed"), findings


def _examine_zip(path: Path, rel: str, limits: ScanLimits) -> tuple[str, list[Finding]]:
    try:
        archive = zipfile.ZipFile(path)
    except _UNREADABLE as exc:
        return "zip", [_unreadable(rel, rel, exc)]
    findings, pickled = [], False
    with archive:
        entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        if len(entries) > limits.max_files:
            return "zip", [_too_many(rel, limits)]
        for entry in entries:
            label = f"{rel}:{entry.filename}"
            try:
                with archive.open(entry) as member:
                    kind, found = _examine_member(RewindableStream(member, limits.max_bytes),
                                                  rel, label, limits)
            except _UNREADABLE as exc:
                findings.append(_unreadable(rel, label, exc))
                continue
            findings += found
            pickled |= kind == "pickle"
    names = [entry.filename for entry in entries]
    if any(name.endswith("data.pkl") for name in names):
        return "pytorch_zip", findings
    if pickled:
        return "zip_with_pickle", findings
    if names and all(name.endswith(".npy") for name in names):
        return "numpy_npz", findings
    return "zip", findings


def _examine_tar(fileobj, rel: str, limits: ScanLimits) -> tuple[str, list[Finding]]:
    findings, pickled, count = [], False, 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as archive:
            for entry in archive:
                if not entry.isfile():
                    continue
                count += 1
                if count > limits.max_files:
                    findings.append(_too_many(rel, limits))
                    break
                stream = RewindableStream(archive.extractfile(entry), limits.max_bytes)
                kind, found = _examine_member(stream, rel, f"{rel}:{entry.name}", limits)
                findings += found
                pickled |= kind == "pickle"
    except _UNREADABLE as exc:
        findings.append(_unreadable(rel, rel, exc))
    if isinstance(fileobj, RewindableStream) and fileobj.reached_limit:
        findings.append(_over_limit(rel, rel, limits))
    return ("tar_with_pickle" if pickled else "tar"), findings


def _too_many(rel: str, limits: ScanLimits) -> Finding:
    return Finding(rel, "high", "file_count_limit",
                   f"{rel} holds more than {limits.max_files} files (the platform's cap; an "
                   "archive bomb?). It was not checked.")


def _examine_member(stream: RewindableStream, rel: str, label: str, limits: ScanLimits, *,
                    decompressed: bool = False) -> tuple[str | None, list[Finding]]:
    """What one member of an archive (or a decompressed stream) is: "pickle" (then scanned),
    "archive" (not opened: one level only) or None."""
    head = stream.read(_HEAD)
    stream.rewind()
    if head[:6] == b"\x93NUMPY":
        fmt, findings = _examine_npy(stream, rel, label)
        return ("pickle" if fmt == "numpy_object" else None), findings
    kind = _compression(head)
    if head[:4] in ZIP_MAGICS or _is_tar(head) or (kind and decompressed):
        return "archive", [Finding(rel, "high", "nested_archive",
                                   f"{label} is an archive inside an archive; the scanner opens "
                                   "one level, so what it holds can't be checked. Store its "
                                   "files in /models directly.")]
    if kind == "lz4":
        return None, [_unchecked_lz4(rel, label)]
    if kind:
        stream.release()
        inner = RewindableStream(_decompressed(kind, stream), limits.max_bytes)
        return _examine_member(inner, rel, f"{label} ({kind})", limits, decompressed=True)
    if not pickles.is_pickle(stream):
        return None, []
    stream.rewind()
    stream.release()
    findings = pickles.scan(stream, rel, label)
    if stream.reached_limit:
        findings.append(_over_limit(rel, label, limits))
    return "pickle", findings


# --- NumPy and PyTorch ------------------------------------------------------------------

def _npy_header(handle) -> dict | None:
    magic = handle.read(8)
    if magic[:6] != b"\x93NUMPY" or len(magic) < 8:
        return None
    width = "<H" if magic[6] == 1 else "<I"
    raw = handle.read(struct.calcsize(width))
    if len(raw) != struct.calcsize(width):
        return None
    length = struct.unpack(width, raw)[0]
    if length > 1024 * 1024:
        return None
    try:
        header = ast.literal_eval(handle.read(length).decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def _holds_objects(descr) -> bool:
    """Whether a NumPy dtype description may hold Python objects (which np.load unpickles):
    anything but plain typestrings, in a field list too."""
    if isinstance(descr, str):
        return not _PLAIN_DTYPE.fullmatch(descr)
    if isinstance(descr, list):
        return any(not isinstance(field, tuple) or len(field) < 2 or _holds_objects(field[1])
                   for field in descr)
    return True


def _examine_npy(stream, rel: str, label: str) -> tuple[str, list[Finding]]:
    header = _npy_header(stream)
    if header is None or not _holds_objects(header.get("descr")):
        return "numpy", []
    if isinstance(stream, RewindableStream):
        stream.release()
    return "numpy_object", pickles.scan(stream, rel, label)


def _scan_legacy_pytorch(handle, rel: str) -> list[Finding]:
    return pickles.scanned(lambda: picklescan.scan_pytorch(handle, rel), rel, rel)


# --- safetensors, GGUF, chat templates ---------------------------------------------------

def check_safetensors(path: Path, rel: str) -> list[Finding]:
    def bad(reason: str) -> list[Finding]:
        return [Finding(rel, "high", "safetensors_header_invalid",
                        f"{rel} has an invalid safetensors header: {reason}. A crafted header "
                        "attacks the loader; a corrupt one fails at start-up.")]

    size = path.stat().st_size
    with path.open("rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        if length > MAX_HEADER or 8 + length > size:
            return bad(f"the header claims {length} bytes")
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return bad("the header is not JSON")
    if not isinstance(header, dict):
        return bad("the header is not a JSON object")
    data_size = size - 8 - length
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                return bad("__metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict):
            return bad(f"tensor {name!r} is not described by an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            return bad(f"tensor {name!r} has the unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            return bad(f"tensor {name!r} has an invalid shape")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            return bad(f"tensor {name!r} has invalid data_offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            return bad(f"tensor {name!r} points outside the file ({begin}–{end} of {data_size} "
                       "data bytes)")
        elements = 1
        for dim in shape:
            elements *= dim
        if elements * SAFETENSORS_DTYPES[dtype] != end - begin:
            return bad(f"tensor {name!r} has {end - begin} bytes for shape {shape} of {dtype}")
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:], strict=False):
        if begin < end:
            return bad(f"tensors {first!r} and {second!r} overlap")
    return []


def check_gguf(path: Path, rel: str) -> list[Finding]:
    template = None
    with path.open("rb") as handle:
        reader = GgufReader(handle, path.stat().st_size)
        try:
            for _ in range(reader.header()):
                key = reader.string(keep=True, limit=MAX_TOKEN_BYTES)
                kind = reader.read("<I")
                if key == "tokenizer.chat_template" and kind == GGUF_STRING:
                    template = reader.string(keep=True)
                else:
                    reader.skip(kind)
        except GgufError as exc:
            return [Finding(rel, "high", "gguf_header_invalid",
                            f"{rel} has an invalid GGUF header: {exc}. A crafted header "
                            "attacks the loader.")]
    return check_template(template, rel, "tokenizer.chat_template") if template else []


def check_tokenizer_config(path: Path, rel: str) -> list[Finding]:
    try:
        config = json.loads(path.read_bytes())
    except ValueError:
        return []
    template = config.get("chat_template") if isinstance(config, dict) else None
    templates = []
    if isinstance(template, str):
        templates.append(template)
    elif isinstance(template, list):  # named templates: [{"name": …, "template": …}]
        templates += [t.get("template") for t in template
                      if isinstance(t, dict) and isinstance(t.get("template"), str)]
    return [f for text in templates for f in check_template(text, rel, "chat_template")]


# Only what Jinja evaluates can run: `{{ … }}` and `{% … %}`. Literal text between them (a
# system prompt that mentions "os." or "open(") is data, not code.
_JINJA_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def check_template(template: str, rel: str, where: str) -> list[Finding]:
    findings = []
    code = "\n".join(_JINJA_CODE.findall(template))
    for pattern, why in _TEMPLATE_DANGERS:
        match = pattern.search(code)
        if match:
            findings.append(Finding(rel, "critical", "chat_template_injection",
                                    f"The {where} in {rel} {why} ({match.group(0)!r}): the model "
                                    "server renders it, so it can run code there."))
    return findings
