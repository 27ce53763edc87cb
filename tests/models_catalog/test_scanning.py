"""The scanner on real image archives built here: each attack is caught with its reason,
clean images pass, and the policy decides about clean pickles."""

import bz2
import gzip
import io
import lzma
import pickle
import tarfile
import zlib

import pytest

from models_catalog.scanning import (
    ScanLimits,
    ScanPolicy,
    UnreadableArchive,
    read_oci_archive,
    scan_directory,
    scan_layers,
    scan_oci_archive,
)
from models_catalog.scanning.pickles import is_pickle
from models_catalog.scanning.report import POLICY_CODE
from tests.support.modelcar import (
    CLEAN_FILES,
    build_modelcar_archive,
    clean_pickle,
    gguf_bytes,
    layer_tar,
    legacy_pytorch_bin,
    malicious_pickle,
    member,
    numpy_object_array,
    pytorch_zip_checkpoint,
    safetensors_bytes,
    tar_bytes,
    zip_bytes,
)

STRICT = ScanPolicy("safetensors_gguf_only")
LENIENT = ScanPolicy("pickle_allowed_when_clean")
LIMITS = ScanLimits(max_bytes=10 * 1024 * 1024, max_files=100)


def scan(tmp_path, files=None, *, policy=STRICT, limits=LIMITS, **archive):
    path = build_modelcar_archive(tmp_path / "image.tar", files, **archive)
    return scan_oci_archive(path, policy=policy, limits=limits, workdir=tmp_path / "work")


def codes(report):
    return {(f.path, f.code) for f in report.findings}


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_a_clean_modelcar_passes_with_its_inventory(tmp_path, fmt):
    report = scan(tmp_path, fmt=fmt)
    assert report.verdict == "clean" and report.passes_policy and report.findings == []
    inventory = {f.path: f.format for f in report.files}
    assert inventory == {"config.json": "json", "model.safetensors": "safetensors",
                         "tokenizer.json": "json"}
    import hashlib
    weights = next(f for f in report.files if f.path == "model.safetensors")
    assert weights.sha256 == hashlib.sha256(CLEAN_FILES["model.safetensors"]).hexdigest()
    assert not (tmp_path / "work").exists()  # the unpacked files are gone


EVIL = malicious_pickle()
EVIL_0 = malicious_pickle(protocol=0)  # plain ASCII: "cposix\nsystem\n…", no \x80 header
# Every way of carrying a pickle that runs `os.system` when loaded: (file under /models, its
# content, the format the scanner must see).
PICKLE_CASES = [
    ("evil.pkl", EVIL, "pickle"),
    ("pytorch_model.bin", pytorch_zip_checkpoint(EVIL), "pytorch_zip"),
    ("legacy.bin", legacy_pytorch_bin(EVIL), "pytorch_legacy"),
    ("arr.npy", numpy_object_array(EVIL), "numpy_object"),
    # No magic number: recognised by the opcode walk, whatever the name.
    pytest.param("weights.pth", EVIL_0, "pickle", id="protocol-0-named-pth"),
    pytest.param("weights.bin", malicious_pickle(protocol=1), "pickle", id="protocol-1"),
    pytest.param("model", EVIL_0, "pickle", id="no-extension"),
    pytest.param("notes.txt", EVIL_0, "pickle", id="named-as-text"),
    pytest.param("model.safetensors", EVIL_0, "pickle", id="named-safetensors"),
    pytest.param("model.gguf", malicious_pickle(protocol=4), "pickle", id="named-gguf"),
    # The unpickler runs what comes before a break: no STOP is needed to run the call.
    pytest.param("cut.pth", EVIL_0[:-1], "pickle", id="no-stop"),
    # "I0x10" is an int to the unpickler, not to pickletools: a stricter walk would miss it.
    pytest.param("hex.pth", b"cposix\nsystem\n(I0x10\nS'echo pwned'\ntR.", "pickle",
                 id="argument-only-the-unpickler-reads"),
    # joblib's compressions.
    pytest.param("model.joblib", gzip.compress(EVIL), "pickle_compressed", id="joblib-gzip"),
    pytest.param("model.joblib", bz2.compress(EVIL_0), "pickle_compressed", id="joblib-bz2"),
    pytest.param("model.joblib", lzma.compress(EVIL), "pickle_compressed", id="joblib-xz"),
    pytest.param("model.joblib", lzma.compress(EVIL, format=lzma.FORMAT_ALONE),
                 "pickle_compressed", id="joblib-lzma"),
    pytest.param("model.joblib", zlib.compress(EVIL_0), "pickle_compressed", id="joblib-zlib"),
    pytest.param("clf", gzip.compress(EVIL_0), "pickle_compressed", id="compressed-no-name"),
    # Inside archives, any member, by content.
    pytest.param("pytorch_model.bin", zip_bytes({"archive/data.pkl": pickle.dumps({}),
                                                 "archive/extra": EVIL_0}),
                 "pytorch_zip", id="torch-zip-extra-member"),
    pytest.param("extras.zip", zip_bytes({"weights/state": EVIL_0}), "zip_with_pickle",
                 id="zip-member-without-pickle-name"),
    pytest.param("arrays.npz", zip_bytes({"a": numpy_object_array(EVIL)}), "zip_with_pickle",
                 id="npz-object-member"),
    pytest.param("bundle.zip", zip_bytes({"state.pt.gz": gzip.compress(EVIL_0)}),
                 "zip_with_pickle", id="compressed-member-in-zip"),
    pytest.param("extras.tar", tar_bytes({"blob": EVIL_0}), "tar_with_pickle", id="tar"),
    pytest.param("extras.tgz", tar_bytes({"state": EVIL}, compression="gz"),
                 "tar_with_pickle", id="tar-gz"),
    pytest.param("extras.tar.xz", tar_bytes({"state.gz": gzip.compress(EVIL_0)},
                                            compression="xz"),
                 "tar_with_pickle", id="compressed-member-in-tar-xz"),
    # Object dtypes however NumPy spells them.
    pytest.param("arr.npy", numpy_object_array(EVIL, descr="'object'"), "numpy_object",
                 id="npy-dtype-object"),
    pytest.param("arr.npy", numpy_object_array(EVIL, descr="[('x', '<f4'), ('y', 'O')]"),
                 "numpy_object", id="npy-object-field"),
]


@pytest.mark.parametrize("name, content, fmt", PICKLE_CASES)
def test_code_in_pickles_is_malicious_under_any_policy(tmp_path, name, content, fmt):
    report = scan(tmp_path, {**CLEAN_FILES, name: content}, policy=LENIENT)
    assert report.verdict == "malicious"
    found = [f for f in report.findings if f.path == name]
    assert found and found[0].code == "dangerous_import" and "system" in found[0].message
    assert next(f for f in report.files if f.path == name).format == fmt


@pytest.mark.parametrize("name, content, fmt", PICKLE_CASES)
def test_the_strict_policy_refuses_every_pickle(tmp_path, name, content, fmt):
    report = scan(tmp_path, {**CLEAN_FILES, name: content}, policy=STRICT)
    assert not report.passes_policy and (name, POLICY_CODE) in codes(report)


def test_the_policy_decides_about_a_clean_pickle(tmp_path):
    files = {**CLEAN_FILES, "optimizer.pkl": clean_pickle()}
    strict = scan(tmp_path, files, policy=STRICT)
    assert strict.verdict == "clean" and not strict.passes_policy
    assert ("optimizer.pkl", "policy_forbidden_format") in codes(strict)
    lenient = scan(tmp_path, files, policy=LENIENT)
    assert lenient.verdict == "clean" and lenient.passes_policy


@pytest.mark.parametrize("extra, path, code", [
    (member("models/../../etc/passwd", content=b"x"), "models/../../etc/passwd",
     "path_traversal"),
    (member("/models/abs.txt", content=b"x"), "/models/abs.txt", "absolute_path"),
    (member("models/escape", tarfile.SYMTYPE, linkname="../../etc/shadow"), "models/escape",
     "link_escape"),
    (member("models/abslink", tarfile.SYMTYPE, linkname="/etc/shadow"), "models/abslink",
     "link_escape"),
    (member("models/hard", tarfile.LNKTYPE, linkname="etc/passwd"), "models/hard",
     "link_escape"),
    (member("models/tty", tarfile.CHRTYPE), "models/tty", "special_file"),
    (member("models/pipe", tarfile.FIFOTYPE), "models/pipe", "special_file"),
])
def test_unsafe_archive_entries_are_refused(tmp_path, extra, path, code):
    report = scan(tmp_path, extra_members=[extra])
    assert report.verdict == "malicious"
    assert (path, code) in codes(report)
    assert not (tmp_path / "etc").exists()


def test_a_link_inside_models_is_inventoried_not_followed(tmp_path):
    report = scan(tmp_path, extra_members=[
        member("models/weights.safetensors", tarfile.SYMTYPE, linkname="model.safetensors")])
    assert report.verdict == "clean"
    assert {f.path: f.format for f in report.files}["weights.safetensors"] == "symlink"


def test_archive_bombs_stop_at_the_caps(tmp_path):
    big = scan(tmp_path, {**CLEAN_FILES, "huge.bin": bytes(64 * 1024)},
               limits=ScanLimits(max_bytes=32 * 1024, max_files=100))
    assert big.verdict == "malicious" and "size_limit" in {c for _, c in codes(big)}
    many = scan(tmp_path, {f"f{i}.json": b"{}" for i in range(20)},
                limits=ScanLimits(max_bytes=10**9, max_files=10))
    assert many.verdict == "malicious" and "file_count_limit" in {c for _, c in codes(many)}


def test_a_changed_blob_fails_its_digest(tmp_path):
    path = build_modelcar_archive(tmp_path / "image.tar", corrupt_blob=True)
    with pytest.raises(UnreadableArchive, match="does not match its digest"):
        read_oci_archive(path)


def test_a_truncated_archive_is_unreadable(tmp_path):
    path = build_modelcar_archive(tmp_path / "image.tar")
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"\x1f\x8b\x08") + 50])  # cut inside the layer
    with pytest.raises(UnreadableArchive, match="truncated|lacks"):
        read_oci_archive(path)


def test_a_wrong_layer_media_type_is_refused(tmp_path):
    path = build_modelcar_archive(tmp_path / "image.tar",
                                  layer_media_type="application/vnd.example.weights")
    with pytest.raises(UnreadableArchive, match="unsupported media type"):
        read_oci_archive(path)


def test_corrupt_safetensors_header_is_caught(tmp_path):
    report = scan(tmp_path, {**CLEAN_FILES,
                             "model.safetensors": safetensors_bytes(corrupt_offsets=True)})
    assert report.verdict == "malicious"
    finding = next(f for f in report.findings if f.path == "model.safetensors")
    assert finding.code == "safetensors_header_invalid" and "outside the file" in finding.message


def test_gguf_headers_and_chat_templates(tmp_path):
    clean = scan(tmp_path, {"model.gguf": gguf_bytes(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")})
    assert clean.verdict == "clean" and clean.files[0].format == "gguf"
    evil = scan(tmp_path, {"model.gguf": gguf_bytes(
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}")})
    assert evil.verdict == "malicious"
    assert ("model.gguf", "chat_template_injection") in codes(evil)
    truncated = scan(tmp_path, {"model.gguf": gguf_bytes()[:30]})
    assert ("model.gguf", "gguf_header_invalid") in codes(truncated)


def test_tokenizer_config_chat_template_is_checked(tmp_path):
    import json
    config = json.dumps({"chat_template": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    report = scan(tmp_path, {**CLEAN_FILES, "tokenizer_config.json": config.encode()})
    assert ("tokenizer_config.json", "chat_template_injection") in codes(report)


def test_whiteouts_in_a_later_layer_remove_files(tmp_path):
    lower = layer_tar({**CLEAN_FILES, "evil.pkl": malicious_pickle()})
    upper = layer_tar({".wh.evil.pkl": b""})
    report = scan(tmp_path, layers=[lower, upper])
    assert report.verdict == "clean"
    assert "evil.pkl" not in {f.path for f in report.files}


def test_an_image_without_models_is_refused(tmp_path):
    report = scan(tmp_path, layers=[layer_tar({"app.py": b"print()"}, prefix="opt/")])
    assert ("/models", "no_model_files") in codes(report)


def test_scan_layers_reports_progress(tmp_path):
    seen = []
    layer = gzip.compress(layer_tar(CLEAN_FILES))
    import io
    report = scan_layers([("application/vnd.oci.image.layer.v1.tar+gzip", io.BytesIO(layer))],
                         policy=STRICT, limits=LIMITS, workdir=tmp_path / "w",
                         progress=lambda done, total, path: seen.append((done, total, path)))
    assert report.verdict == "clean"
    assert (3, 3, "") in seen and any(path == "model.safetensors" for _, _, path in seen)


def test_a_directory_scans_like_an_image(tmp_path):
    for name, content in CLEAN_FILES.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "evil.pkl").write_bytes(malicious_pickle())
    report = scan_directory(tmp_path, policy=STRICT, limits=LIMITS)
    assert report.verdict == "malicious" and len(report.files) == 4
    assert report.to_dict()["verdict"] == "malicious"


def test_template_prose_is_not_code(tmp_path):
    """Words in a template's literal text (a system prompt) are data; only what Jinja
    evaluates is checked."""
    template = ("You may open(files) and explain os.path to users.\n"
                "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}")
    clean = scan(tmp_path, {"model.gguf": gguf_bytes(template)})
    assert clean.verdict == "clean", clean.findings
    hidden = scan(tmp_path, {"model.gguf": gguf_bytes(
        "Be helpful. {{ self.__init__.__globals__ }}")})
    assert ("model.gguf", "chat_template_injection") in codes(hidden)


# Weights-named files that are not safetensors or GGUF: the strict policy refuses them by
# name, and any policy says they could not be checked. (file, content, format)
NOT_SAFE_WEIGHTS = [
    # A pickle after a text prefix: no loader starts there, but it is no safe format either.
    pytest.param("weights.pth", b"# weights\n" + EVIL, "other", id="text-prefix-pickle"),
    pytest.param("model.onnx", b"\x08\x07\x12\x04onnx" + bytes(range(256)), "other", id="onnx"),
    pytest.param("model.h5", b"\x89HDF\r\n\x1a\n" + bytes(64), "other", id="hdf5"),
    pytest.param("flax_model.msgpack", b"\x81\xa6params\x80", "other", id="msgpack"),
    pytest.param("weights.bin", b"just some words\n", "text", id="text-named-bin"),
    pytest.param("model.keras", zip_bytes({"config.json": b"{}"}), "zip", id="keras-zip"),
]


@pytest.mark.parametrize("name, content, fmt", NOT_SAFE_WEIGHTS)
def test_the_strict_policy_refuses_weights_named_files_of_other_formats(tmp_path, name,
                                                                       content, fmt):
    strict = scan(tmp_path, {**CLEAN_FILES, name: content}, policy=STRICT)
    assert next(f for f in strict.files if f.path == name).format == fmt
    refusal = next(f for f in strict.findings if f.code == POLICY_CODE)
    assert refusal.path == name and "named like model weights" in refusal.message
    lenient = scan(tmp_path, {**CLEAN_FILES, name: content}, policy=LENIENT)
    assert lenient.passes_policy and lenient.verdict == "suspicious"
    assert codes(lenient) == {(name, "unrecognized_weights")}


def test_numeric_npz_passes_only_the_lenient_policy(tmp_path):
    arrays = zip_bytes({"a.npy": numpy_object_array(bytes(4), descr="'<f4'")})
    strict = scan(tmp_path, {**CLEAN_FILES, "arrays.npz": arrays}, policy=STRICT)
    assert strict.files[0].format == "numpy_npz" and not strict.passes_policy
    assert scan(tmp_path, {**CLEAN_FILES, "arrays.npz": arrays}, policy=LENIENT).passed


@pytest.mark.parametrize("name", ["model.safetensors", "model.gguf"])
def test_a_safe_format_name_on_other_content_is_malicious(tmp_path, name):
    report = scan(tmp_path, {**CLEAN_FILES, name: b"not really weights\n"}, policy=LENIENT)
    assert report.verdict == "malicious"
    assert (name, "weights_format_mismatch") in codes(report)


def _safetensors_starting_like_a_pickle() -> bytes:
    """A valid safetensors file whose header length (640) makes its first bytes \\x80\\x02,
    PROTO 2: only its header check keeps it from being taken for a pickle."""
    data = safetensors_bytes()
    length = int.from_bytes(data[:8], "little")
    header = data[8:8 + length].rstrip() + b" " * (640 - len(data[8:8 + length].rstrip()))
    return (640).to_bytes(8, "little") + header + data[8 + length:]


# Clean files that look a little like pickles: they must pass the strict policy.
CLEAN_LOOKALIKES = [
    pytest.param("labels.txt", b"cat\ndog\nbird\n", "text", id="lines-starting-with-c"),
    pytest.param("LICENSE", b"I wrote this.\nI hope you like it.\nReally.\n", "text",
                 id="lines-starting-with-I-and-R"),
    pytest.param("NOTICE", b"Version 2.0\nPlease see LICENSE.\n", "text", id="V-line"),
    pytest.param("vocab.txt", b"cat\n" * 50_000, "text", id="long-c-lines"),
    pytest.param("model.safetensors", _safetensors_starting_like_a_pickle(), "safetensors",
                 id="safetensors-header-640"),
    pytest.param("tokenizer.model", b"\n\x0b\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02",
                 "other", id="sentencepiece"),
    pytest.param("docs.zip", zip_bytes({"README.md": b"# Model\n"}), "zip", id="zip-of-text"),
    pytest.param("docs.tar.gz", tar_bytes({"README.md": b"# Model\n"}, compression="gz"),
                 "tar", id="tar-gz-of-text"),
    pytest.param("notes.txt.gz", gzip.compress(b"Notes\n" * 10), "compressed",
                 id="gzip-of-text"),
]


@pytest.mark.parametrize("name, content, fmt", CLEAN_LOOKALIKES)
def test_files_that_merely_resemble_pickles_pass(tmp_path, name, content, fmt):
    files = {**CLEAN_FILES, name: content}
    report = scan(tmp_path, files, policy=STRICT)
    assert report.passed and report.verdict == "clean", report.findings
    assert next(f for f in report.files if f.path == name).format == fmt


class _Reduces:
    def __reduce__(self):
        return (print, ("never called",))


def test_the_opcode_walk_recognises_every_protocol_without_unpickling():
    import collections
    import datetime
    import decimal
    shared = [1]
    values = [None, True, -5, 2**70, 1.5, "é\u1234", b"\0" * 300_000, bytearray(b"ab"),
              (), (1,), (1, 2, 3), {1: [2, (3,)]}, {4}, frozenset({5}), [shared, shared],
              collections.OrderedDict(a=1), datetime.datetime(2025, 1, 2), decimal.Decimal("1.5"),
              complex(1, 2), _Reduces(), list(range(50_000)), "s" * 200_000]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for value in values:
            data = pickle.dumps(value, protocol=protocol)
            assert is_pickle(io.BytesIO(data), len(data)), (protocol, value)
    for text in (b"", b"N", b"0.5\n", b"# Title\n", b"{}", b"hello world\n",
                 b"c" + b"x" * 100_000, b"V" + b"a" * 200_000 + b"\n"):
        assert not is_pickle(io.BytesIO(text), len(text)), text[:20]


def test_archives_are_opened_one_level_deep(tmp_path):
    nested = zip_bytes({"inner.zip": zip_bytes({"state": EVIL_0})})
    twice = gzip.compress(gzip.compress(EVIL_0))
    report = scan(tmp_path, {**CLEAN_FILES, "bundle.zip": nested, "state.gz": twice},
                  policy=LENIENT)
    assert {("bundle.zip", "nested_archive"), ("state.gz", "nested_archive")} <= codes(report)
    assert report.verdict == "malicious"


def test_what_the_scanner_cannot_open_is_not_shown_safe(tmp_path):
    lz4_frame = b"\x04\x22\x4d\x18" + bytes(32)
    broken_zip = zip_bytes({"state": EVIL_0})[:-30]
    report = scan(tmp_path, {**CLEAN_FILES, "model.joblib": lz4_frame, "extras.zip": broken_zip},
                  policy=LENIENT)
    assert {("model.joblib", "compressed_unchecked"),
            ("extras.zip", "archive_unreadable")} <= codes(report)
    assert report.verdict == "malicious"


def test_archive_and_decompression_bombs_stop_at_the_caps(tmp_path):
    limits = ScanLimits(max_bytes=1024 * 1024, max_files=5)
    padded = b"cposix\nsystem\n(S'" + b"a" * (4 * 1024 * 1024) + b"'\ntR."
    files = {**CLEAN_FILES, "bomb.pkl.gz": gzip.compress(padded),
             "many.zip": zip_bytes({f"f{i}": b"x" for i in range(6)})}
    report = scan(tmp_path, files, policy=LENIENT, limits=limits)
    assert {("bomb.pkl.gz", "size_limit"), ("bomb.pkl.gz", "dangerous_import"),
            ("many.zip", "file_count_limit")} <= codes(report)


def test_a_zip_or_tar_that_is_also_a_pickle_is_caught(tmp_path):
    """A polyglot: a valid zip (zip readers find it from its end) or tar whose first bytes
    are a pickle that calls os.system."""
    zip_polyglot = (b"PK\x03\x04\ncposix\nsystem\n(S'echo pwned'\ntR."
                    + pytorch_zip_checkpoint(pickle.dumps({})))
    tar_polyglot = tar_bytes({"cposix\nsystem\n(S'echo pwned'\ntR.": b"x"})
    report = scan(tmp_path, {**CLEAN_FILES, "pytorch_model.bin": zip_polyglot,
                             "extras.tar": tar_polyglot}, policy=LENIENT)
    assert {f.path: f.format for f in report.files}["pytorch_model.bin"] == "pytorch_zip"
    assert {("pytorch_model.bin", "pickle_polyglot"), ("pytorch_model.bin", "dangerous_import"),
            ("extras.tar", "pickle_polyglot"), ("extras.tar", "dangerous_import")} \
        <= codes(report)
