"""`report_verify` checks the OpenSSF Model Signing (OMS) signatures an evidence bundle carries
under evidence/model-signatures/ against the model-signing key — the bundle's copy or the
auditor's own — and fails on a tampered one, even in a bundle the platform signed properly."""

import base64
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit import model_signatures
from audit.bundle_verify import main as verify_main
from audit.bundle_verify import verify_bundle
from audit.reports.generate import produce
from audit.reports.periods import Period
from audit.services import checkpoint_create
from models_catalog import oms
from models_catalog.models import Model, ModelVersion
from portal import signing
from tests.factories import published_version

pytestmark = pytest.mark.django_db

SIGNATURE = "evidence/model-signatures/bundle-chat-3.0.sigstore.json"


def _bundle(tmp_path, msp_admin, *, tamper=None):
    """An evidence bundle covering one approved version; `tamper(bundle_json) -> bundle_json`
    changes its stored OMS signature first, as someone with database access could."""
    model = Model.objects.create(slug="bundle-chat", name="Bundle chat", task="chat")
    version = published_version(model, version="3.0", approver=msp_admin)
    signature = tamper(version.model_signature) if tamper else version.model_signature
    ModelVersion.objects.filter(pk=version.pk).update(
        scanned_at=timezone.now(), approved_at=timezone.now(), model_signature=signature)
    checkpoint_create()
    now = timezone.now()
    files = produce(report_id=1, period=Period(kind="custom", label="evidence",
                                               start=now - timedelta(days=1),
                                               end=now + timedelta(days=1)),
                    tenant_id=None, tenant_slug="", generated_at=now, directory=tmp_path)
    return tmp_path / files.bundle_name, version


def _flip_signature_byte(bundle_json: str) -> str:
    document = json.loads(bundle_json)
    signature = bytearray(base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"]))
    signature[len(signature) // 2] ^= 0x01
    document["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    return json.dumps(document)


def _key_file(tmp_path, pem: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(pem)
    return path


def test_report_verify_checks_the_oms_signatures_in_the_bundle(tmp_path, msp_admin, capsys):
    bundle, version = _bundle(tmp_path, msp_admin)
    check = verify_bundle(bundle, signing.platform_public_key())
    assert check.problems == []
    assert any("1 of 1 OMS model signatures verified" in fact for fact in check.facts)
    assert any("the bundle's evidence/model-signatures/model-signing-key.pub.pem" in note
               for note in check.notes)
    # The upstream verifier agrees on the same bytes.
    with zipfile.ZipFile(bundle) as archive:
        carried = archive.read(SIGNATURE)
    assert oms.verify_bundle(carried.decode(), public_key_pem=oms.platform_public_key_pem()).ok

    # With the auditor's own copy of the key, nothing rests on the bundle's copy.
    own = _key_file(tmp_path, oms.platform_public_key_pem(), "model-signing-key.pem")
    platform = _key_file(tmp_path, signing.public_key_pem(signing.platform_public_key()),
                         "platform.pem")
    assert verify_main([str(bundle), "--public-key", str(platform),
                        "--model-signing-key", str(own)]) == 0
    out = capsys.readouterr().out
    assert "OMS model signatures verified" in out and "Bundle verified." in out
    assert "model-signing-key.pub.pem" not in out
    stdout = io.StringIO()
    call_command("report_verify", str(bundle), "--model-signing-key", str(own), stdout=stdout)
    assert "1 of 1 OMS model signatures verified" in stdout.getvalue()

    # Another model-signing key: every signature fails, with the reason.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    check = verify_bundle(bundle, signing.platform_public_key(), model_signing_key=other)
    assert check.problems == [f"{SIGNATURE}: the OMS model signature does not verify: it names "
                              f"the key {oms.key_id(oms.platform_public_key_pem())[:16]}…, "
                              f"not {oms.key_id(other)[:16]}…"]


def test_a_changed_signature_byte_fails_report_verify(tmp_path, msp_admin, capsys):
    """The platform sealed the bundle correctly (manifest, archive signature): only the OMS
    check can tell that the model signature was changed."""
    bundle, _ = _bundle(tmp_path, msp_admin, tamper=_flip_signature_byte)
    check = verify_bundle(bundle, signing.platform_public_key())
    assert len(check.problems) == 1, check.problems
    assert check.problems[0].startswith(f"{SIGNATURE}: the OMS model signature does not "
                                        "verify: the DSSE signature does not verify")
    assert any("files match the signed manifest" in fact for fact in check.facts)
    with pytest.raises(CommandError, match="OMS model signature does not verify"):
        call_command("report_verify", str(bundle), stdout=io.StringIO())
    platform = _key_file(tmp_path, signing.public_key_pem(signing.platform_public_key()),
                         "platform.pem")
    assert verify_main([str(bundle), "--public-key", str(platform)]) == 1
    assert "Bundle NOT verified." in capsys.readouterr().err
    # The upstream verifier refuses the same bytes.
    with zipfile.ZipFile(bundle) as archive:
        carried = archive.read(SIGNATURE).decode()
    assert not oms.verify_bundle(carried, public_key_pem=oms.platform_public_key_pem()).ok


def test_a_changed_statement_fails_and_so_does_a_missing_key(tmp_path, msp_admin):
    def swap_a_file_digest(bundle_json: str) -> str:
        document = json.loads(bundle_json)
        statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
        statement["predicate"]["resources"][0]["digest"] = "0" * 64
        document["dsseEnvelope"]["payload"] = base64.b64encode(
            json.dumps(statement).encode()).decode()
        return json.dumps(document)

    bundle, _ = _bundle(tmp_path, msp_admin, tamper=swap_a_file_digest)
    check = verify_bundle(bundle, signing.platform_public_key())
    assert len(check.problems) == 1 and "DSSE signature does not verify" in check.problems[0]

    # A bundle's signature checked without any key to check it with is a failure, not a pass.
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
    assert model_signatures.KEY_FILE in names
    from audit.bundle_verify import BundleCheck, _verify_model_signatures

    missing = BundleCheck()
    with zipfile.ZipFile(bundle) as archive:
        _verify_model_signatures(archive, names - {model_signatures.KEY_FILE}, missing, None)
    assert missing.problems == [
        "the bundle carries OMS model signatures but not "
        "evidence/model-signatures/model-signing-key.pub.pem: pass the model-signing key "
        "with --model-signing-key"]


def test_the_offline_check_agrees_with_model_signing_on_the_statement():
    """Signed by the upstream signer, verified here; an inconsistent statement (a subject
    digest that is not its files' digest) is refused even with a valid signature."""
    files = [oms.SignedFile(path="config.json", sha256="a" * 64),
             oms.SignedFile(path="model.safetensors", sha256="b" * 64)]
    bundle = oms.sign_files(files, name="models")
    key = model_signatures.load_key(oms.platform_public_key_pem())
    signed = model_signatures.verify(bundle.encode(), key)
    assert (signed.name, signed.files) == ("models", 2)

    statement = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    with pytest.raises(model_signatures.ModelSignatureError, match="inconsistent"):
        model_signatures._statement(json.dumps(statement).encode())
