"""The scanner on real image archives built here: each attack is caught with its reason,
clean images pass, and the policy decides about clean pickles."""

import gzip
import tarfile

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


@pytest.mark.parametrize("name, content, fmt", [
    ("evil.pkl", malicious_pickle(), "pickle"),
    ("pytorch_model.bin", pytorch_zip_checkpoint(malicious_pickle()), "pytorch_zip"),
    ("legacy.bin", legacy_pytorch_bin(malicious_pickle()), "pytorch_legacy"),
    ("arr.npy", numpy_object_array(malicious_pickle()), "numpy_object"),
])
def test_code_in_pickles_is_malicious_under_any_policy(tmp_path, name, content, fmt):
    report = scan(tmp_path, {**CLEAN_FILES, name: content}, policy=LENIENT)
    assert report.verdict == "malicious"
    found = [f for f in report.findings if f.path == name]
    assert found and found[0].code == "dangerous_import" and "system" in found[0].message
    assert next(f for f in report.files if f.path == name).format == fmt


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
