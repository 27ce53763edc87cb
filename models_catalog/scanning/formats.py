"""What each file under /models is, judged by its content, and the checks for each kind.

Pickle-based files run code when loaded, so they go through picklescan (which, unlike
modelscan 0.8, reads the several pickles of a legacy PyTorch `.bin`). safetensors and GGUF
headers are parsed and bounds-checked: a crafted header is how a "safe" format attacks its
parser. Chat templates (GGUF metadata, tokenizer_config.json) are Jinja run by the model
server, so sandbox-escape idioms in them are findings too.
"""

from __future__ import annotations

import ast
import io
import json
import re
import struct
import zipfile
from pathlib import Path

from picklescan import scanner as picklescan

from models_catalog.scanning.report import Finding

LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
PICKLE_EXTENSIONS = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib",
                               ".npy", ".npz", ".dat"})
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
                      "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
                      "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER = 100 * 1024 * 1024
_JSON_LIMIT = 64 * 1024 * 1024

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


def detect(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(64)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:6] == b"\x93NUMPY":
        return "numpy_object" if _npy_has_objects(path) else "numpy"
    if head[:4] == b"PK\x03\x04":
        return _zip_kind(path)
    if head.startswith(LEGACY_TORCH_MAGIC):
        return "pytorch_legacy"
    if len(head) >= 9:
        header_len = struct.unpack("<Q", head[:8])[0]
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if path.suffix.lower() in (".pkl", ".pickle", ".joblib") and head[:1] in (b"(", b"c", b"]",
                                                                                b"}"):
        return "pickle"  # protocol 0/1 pickles have no marker; trust the name to scan them
    text = head.lstrip()
    if text[:1] in (b"{", b"[") and size <= _JSON_LIMIT:
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


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return "other"
    if any(n.endswith("data.pkl") for n in names):
        return "pytorch_zip"
    if names and all(n.endswith(".npy") for n in names):
        return "numpy_npz"
    return "zip"


def _npy_header(handle) -> dict | None:
    magic = handle.read(8)
    if magic[:6] != b"\x93NUMPY":
        return None
    major = magic[6]
    length = (struct.unpack("<H", handle.read(2))[0] if major == 1
              else struct.unpack("<I", handle.read(4))[0])
    if length > 1024 * 1024:
        return None
    try:
        header = ast.literal_eval(handle.read(length).decode("latin-1"))
    except (ValueError, SyntaxError):
        return None
    return header if isinstance(header, dict) else None


def _npy_has_objects(path: Path) -> bool:
    with path.open("rb") as handle:
        header = _npy_header(handle)
    return header is not None and "O" in str(header.get("descr", ""))


# --- checks ----------------------------------------------------------------------------

def check(path: Path, rel: str, fmt: str) -> list[Finding]:
    if fmt in ("pickle", "pytorch_zip", "pytorch_legacy", "numpy_object", "numpy_npz"):
        return check_pickles(path, rel, fmt)
    if fmt == "safetensors":
        return check_safetensors(path, rel)
    if fmt == "gguf":
        return check_gguf(path, rel)
    if fmt == "json" and path.name == "tokenizer_config.json":
        return check_tokenizer_config(path, rel)
    if fmt == "other" and path.suffix.lower() in PICKLE_EXTENSIONS:
        return [Finding(rel, "medium", "unrecognized_weights",
                        f"{rel} is named like a pickle or PyTorch file but its content is "
                        "none the scanner recognizes; it could not be checked.")]
    return []


def _picklescan_findings(result, rel: str) -> list[Finding]:
    findings = []
    for found in result.globals:
        name = f"{found.module}.{found.name}"
        if found.safety == picklescan.SafetyLevel.Dangerous:
            findings.append(Finding(rel, "critical", "dangerous_import",
                                    f"{rel} imports {name} when loaded: unpickling it runs "
                                    "that code (e.g. a shell command). Never load this file."))
        elif found.safety == picklescan.SafetyLevel.Suspicious:
            findings.append(Finding(rel, "medium", "unknown_import",
                                    f"{rel} imports {name}, which is not known to be safe; "
                                    "loading the file calls it."))
    if result.scan_err:
        findings.append(Finding(rel, "medium", "pickle_unparseable",
                                f"{rel} could not be fully parsed as pickle data, so parts "
                                "of it were not checked."))
    return findings


def check_pickles(path: Path, rel: str, fmt: str) -> list[Finding]:
    try:
        with path.open("rb") as handle:
            if fmt == "pytorch_zip":
                result = picklescan.scan_zip_bytes(handle, rel)
            elif fmt == "pytorch_legacy":
                result = picklescan.scan_pytorch(handle, rel)
            elif fmt == "numpy_object":
                _npy_header(handle)
                result = picklescan.scan_pickle_bytes(handle, rel)
            elif fmt == "numpy_npz":
                result = _scan_npz(path, rel)
            else:
                result = picklescan.scan_pickle_bytes(handle, rel)
    except Exception as exc:  # a file crafted to break the parser is itself a finding
        return [Finding(rel, "high", "pickle_unparseable",
                        f"{rel} breaks the pickle scanner ({exc.__class__.__name__}); a "
                        "crafted file does that. It can't be shown safe.")]
    return _picklescan_findings(result, rel)


def _scan_npz(path: Path, rel: str):
    total = picklescan.ScanResult([])
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                data = io.BytesIO(member.read())
            header = _npy_header(data)
            if header is not None and "O" in str(header.get("descr", "")):
                total.merge(picklescan.scan_pickle_bytes(data, f"{rel}:{name}"))
    return total


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


class _GgufError(Exception):
    pass


class _GgufReader:
    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                10: "<Q", 11: "<q", 12: "<d"}

    def __init__(self, handle, size: int):
        self.handle, self.size = handle, size

    def read(self, fmt: str):
        width = struct.calcsize(fmt)
        data = self.handle.read(width)
        if len(data) != width:
            raise _GgufError("the file ends inside its metadata")
        return struct.unpack(fmt, data)[0]

    def string(self, keep: bool = True) -> str | None:
        length = self.read("<Q")
        if self.handle.tell() + length > self.size:
            raise _GgufError("a string runs past the end of the file")
        if not keep:
            self.handle.seek(length, 1)
            return None
        return self.handle.read(length).decode("utf-8", "replace")

    def value(self, kind: int, keep: bool):
        if kind in self._SCALARS:
            return self.read(self._SCALARS[kind])
        if kind == 8:
            return self.string(keep)
        if kind == 9:
            item_kind, count = self.read("<I"), self.read("<Q")
            if count > self.size:
                raise _GgufError("an array claims more items than the file has bytes")
            for _ in range(count):
                self.value(item_kind, keep=False)
            return None
        raise _GgufError(f"unknown metadata value type {kind}")


def check_gguf(path: Path, rel: str) -> list[Finding]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        reader = _GgufReader(handle, size)
        try:
            handle.read(4)
            version = reader.read("<I")
            if version not in (2, 3):
                raise _GgufError(f"unsupported GGUF version {version}")
            tensors, kv_count = reader.read("<Q"), reader.read("<Q")
            if tensors > 10_000_000 or kv_count > 1_000_000:
                raise _GgufError(f"implausible counts ({tensors} tensors, {kv_count} keys)")
            template = None
            for _ in range(kv_count):
                key = reader.string()
                kind = reader.read("<I")
                value = reader.value(kind, keep=kind == 8)
                if key == "tokenizer.chat_template" and isinstance(value, str):
                    template = value
        except _GgufError as exc:
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
