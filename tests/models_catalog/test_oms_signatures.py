"""OpenSSF Model Signing (OMS): an approved version's /models files carry a signature that the
upstream `model_signing` verifier accepts with the public key alone, and refuses after any
changed byte."""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import model_signing
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from models_catalog import oms, services
from models_catalog import registry as oci
from models_catalog.signing import version_verify, version_verify_registry
from tests.factories import published_version
from tests.models_catalog.conftest import FILES, make_submitted_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def approved(registry_client, msp_admin, second_admin):
    version = make_submitted_version(registry_client, msp_admin)
    version = services.version_approve(actor=second_admin, version=version)
    version.refresh_from_db()
    return version


def _unpack_models(client: oci.RegistryClient, version, target: Path) -> Path:
    """/models of the trusted image, unpacked from its layers as a runtime would."""
    manifest = client.manifest_get(version.trusted_repository, version.manifest_digest)
    _, layers = manifest.image_blobs()
    for layer in layers:
        data = b"".join(client.blob_chunks(version.trusted_repository, layer))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(target, filter="data")
    return target / "models"


def _upstream_verify(models: Path, bundle: str, public_key: bytes, tmp_path: Path) -> None:
    signature = tmp_path / "model.sig"
    signature.write_text(bundle)
    key = tmp_path / "model-signing.pub"
    key.write_bytes(public_key)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key).verify(
        models, signature)


def test_the_upstream_verifier_accepts_the_published_image_with_the_public_key_alone(
        approved, registry_client, tmp_path):
    models = _unpack_models(registry_client, approved, tmp_path / "image")
    public_key = oms.platform_public_key_pem()
    _upstream_verify(models, approved.model_signature, public_key, tmp_path)

    statement = oms.statement_of(approved.model_signature)
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert {r["name"]: r["digest"] for r in statement["predicate"]["resources"]} == {
        path: hashlib.sha256(content).hexdigest() for path, content in FILES.items()}
    bundle = json.loads(approved.model_signature)
    assert bundle["verificationMaterial"]["tlogEntries"] == []  # no transparency log
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == oms.key_id(public_key)


@pytest.mark.parametrize("path", sorted(FILES))
def test_the_upstream_verifier_refuses_after_one_changed_byte_in_any_file(
        approved, registry_client, tmp_path, path):
    models = _unpack_models(registry_client, approved, tmp_path / "image")
    target = models / path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="Signature mismatch"):
        _upstream_verify(models, approved.model_signature, oms.platform_public_key_pem(),
                         tmp_path)


def test_the_upstream_verifier_refuses_an_added_file_and_another_key(
        approved, registry_client, tmp_path):
    models = _unpack_models(registry_client, approved, tmp_path / "image")
    other = tmp_path / "other.pem"
    oms.write_new_key(other)
    from cryptography.hazmat.primitives import serialization
    other_public = serialization.load_pem_private_key(other.read_bytes(), None).public_key()
    other_pem = other_public.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="Key mismatch"):
        _upstream_verify(models, approved.model_signature, other_pem, tmp_path)
    (models / "extra.bin").write_bytes(b"smuggled")
    with pytest.raises(ValueError, match="Extra files"):
        _upstream_verify(models, approved.model_signature, oms.platform_public_key_pem(),
                         tmp_path)


def test_the_public_model_signing_cli_verifies_it(approved, registry_client, tmp_path):
    models = _unpack_models(registry_client, approved, tmp_path / "image")
    (tmp_path / "model.sig").write_text(approved.model_signature)
    (tmp_path / "key.pub").write_bytes(oms.platform_public_key_pem())
    command = [sys.executable, "-m", "model_signing", "verify", "key", str(models),
               "--signature", str(tmp_path / "model.sig"),
               "--public_key", str(tmp_path / "key.pub")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification succeeded" in result.stdout
    (models / "config.json").write_bytes(b'{"architecture": "evil"}')
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


def test_the_signature_is_attached_to_the_image_next_to_the_statement(approved,
                                                                      registry_client):
    referrers = registry_client.referrers(approved.trusted_repository, approved.manifest_digest)
    kinds = {d.artifact_type: d.digest for d in referrers}
    assert kinds[services.APPROVAL_ARTIFACT_TYPE] == approved.signature_artifact_digest
    assert kinds[oms.BUNDLE_MEDIA_TYPE] == approved.model_signature_artifact_digest
    artifact = registry_client.manifest_get(approved.trusted_repository,
                                            approved.model_signature_artifact_digest).data
    assert artifact["subject"]["digest"] == approved.manifest_digest
    assert artifact["annotations"]["dev.sigstore.bundle.predicateType"] == oms.PREDICATE_TYPE
    layer = oci.Descriptor.from_json(artifact["layers"][0])
    assert layer.media_type == oms.BUNDLE_MEDIA_TYPE
    payload = b"".join(registry_client.blob_chunks(approved.trusted_repository, layer))
    assert payload.decode() == approved.model_signature
    # The approval statement names the OMS signature, so neither can be swapped alone.
    named = json.loads(approved.signed_statement)["model_signature"]
    assert named["sha256"] == oci.sha256_digest(payload)
    check = version_verify_registry(approved)
    assert check.ok and "OMS signature artifact" in check.reason, check.reason


def test_verification_fails_when_the_oms_signature_is_swapped_or_removed():
    version = published_version()
    assert version_verify(version).ok
    other = published_version(version="2.0", model=version.model,
                              files={"config.json": b"{}", "model.safetensors": b"y"})
    version.model_signature = other.model_signature
    result = version_verify(version)
    assert not result.ok and "differs from the one the statement names" in result.reason
    version.model_signature = ""
    result = version_verify(version)
    assert not result.ok and "missing" in result.reason


def test_a_bundle_signed_by_another_key_or_listing_other_files_does_not_verify(tmp_path):
    files = [oms.SignedFile("a.bin", hashlib.sha256(b"a").hexdigest())]
    bundle = oms.sign_files(files, name="demo:1")
    assert oms.verify_bundle(bundle).files == {"a.bin": hashlib.sha256(b"a").hexdigest()}
    other = tmp_path / "other.pem"
    oms.write_new_key(other)
    from cryptography.hazmat.primitives import serialization
    other_pem = serialization.load_pem_private_key(other.read_bytes(), None).public_key() \
        .public_bytes(serialization.Encoding.PEM,
                      serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not oms.verify_bundle(bundle, public_key_pem=other_pem)
    tampered = json.loads(bundle)
    tampered["dsseEnvelope"]["signatures"][0]["sig"] = tampered["dsseEnvelope"]["signatures"][0][
        "sig"][:-8] + "AAAAAAA="
    assert not oms.verify_bundle(json.dumps(tampered))


def test_git_metadata_is_left_out_and_links_are_signed_as_their_target(tmp_path):
    """model_signing ignores .git* paths and follows links to files: the manifest does too."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"weights")
    (models / ".gitattributes").write_text("*.bin filter=lfs")
    (models / "alias.bin").symlink_to("weights.bin")
    files = [oms.SignedFile("weights.bin", hashlib.sha256(b"weights").hexdigest(), "unknown"),
             oms.SignedFile(".gitattributes", hashlib.sha256(b"*.bin filter=lfs").hexdigest()),
             oms.SignedFile("alias.bin", hashlib.sha256(b"models/weights.bin").hexdigest(),
                            "symlink")]
    bundle = oms.sign_files(files, name="demo:1")
    signed = oms.verify_bundle(bundle).files
    assert sorted(signed) == ["alias.bin", "weights.bin"]
    signature = tmp_path / "model.sig"
    signature.write_text(bundle)
    key = tmp_path / "key.pub"
    key.write_bytes(oms.platform_public_key_pem())
    # A tree with links is checked with symlinks allowed (`--allow_symlinks` on the CLI).
    hashing = model_signing.hashing.Config().use_file_serialization(
        allow_symlinks=True).set_allow_symlinks(True)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key) \
        .set_hashing_config(hashing).verify(models, signature)


def test_model_verify_checks_the_oms_signature(approved, registry_client, tmp_path):
    out = io.StringIO()
    call_command("model_verify", approved.model.slug, approved.version, stdout=out)
    assert "OMS signature verified" in out.getvalue()
    assert approved.model_signature_artifact_digest in out.getvalue()

    models = _unpack_models(registry_client, approved, tmp_path / "image")
    out = io.StringIO()
    call_command("model_verify", approved.model.slug, approved.version, "--offline",
                 "--models-dir", str(models), stdout=out)
    assert "files on disk match the OMS signature" in out.getvalue()
    (models / "tokenizer.json").write_bytes(b'{"x": 1}')
    with pytest.raises(CommandError, match="changed: tokenizer.json"):
        call_command("model_verify", approved.model.slug, approved.version, "--offline",
                     "--models-dir", str(models), stdout=io.StringIO())

    key_out = tmp_path / "published.pub"
    call_command("model_verify", "--export-public-key", str(key_out), stdout=io.StringIO())
    assert key_out.read_bytes() == oms.platform_public_key_pem()


def test_the_version_page_shows_and_serves_the_oms_signature(approved, client, msp_admin):
    client.force_login(msp_admin)
    slug, label = approved.model.slug, approved.version
    page = client.get(f"/catalog/{slug}/v/{label}/").content.decode()
    assert "Model signature (OMS)" in page
    assert approved.model_signature_artifact_digest in page
    download = client.get(f"/catalog/{slug}/v/{label}/model-signature/")
    assert download.status_code == 200
    assert download.content.decode() == approved.model_signature
    detail = client.get(f"/api/models/{slug}/versions/{label}/").json()
    assert detail["model_signature_artifact_digest"] == approved.model_signature_artifact_digest
