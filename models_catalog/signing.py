"""Signed statements that bind a published ModelCar to what the supply-chain gate saw.

On approval the platform key signs a statement naming the image digest, every file's
SHA-256, the SBOM's digest, the scan verdict, the approver and the time. A version whose
digest, files or SBOM changed after signing — or that was never signed — does not verify.
These are the checks themselves; `models_catalog.services.signatures` runs them on
publication, before each deploy and on request, and records the outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.utils import timezone

from models_catalog import oms
from models_catalog import registry as oci
from models_catalog.models import ModelVersion, VersionStatus
from portal import signing

STATEMENT_TYPE = "https://sovereign-portal.example/model-approval/v1"
# The artifact that carries the statement and its signature, attached to the trusted image.
APPROVAL_ARTIFACT_TYPE = "application/vnd.sovereign-portal.model-approval.v1+json"


def canonical(statement: dict) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def signed_files(version: ModelVersion) -> list[oms.SignedFile]:
    return [oms.SignedFile(f.path, f.sha256, f.format) for f in version.files.order_by("path")]


def statement_for(version: ModelVersion, *, approver_email: str, signed_at) -> dict:
    statement = {
        "_type": STATEMENT_TYPE,
        "model": version.model.slug,
        "version": version.version,
        "image": {"repository": version.trusted_repository, "digest": version.manifest_digest},
        "files": [{"path": f.path, "sha256": f.sha256}
                  for f in version.files.order_by("path")],
        "sbom_digest": oci.sha256_digest(version.sbom.encode()),
        "scan_verdict": version.scan_verdict,
        "approver": approver_email,
        "signed_at": signed_at.isoformat(),
        "key_id": signing.platform_key_id(),
    }
    if version.model_signature:  # binds the OMS signature to the approval
        statement["model_signature"] = {
            "format": oms.PREDICATE_TYPE,
            "sha256": oci.sha256_digest(version.model_signature.encode()),
            "key_id": oms.key_id(oms.platform_public_key_pem()),
        }
    return statement


def version_sign(version: ModelVersion, *, approver_email: str) -> None:
    """Fill in the version's OMS signature of its files, then the statement (which names the
    OMS signature's digest) and its signature. The caller saves and audits."""
    signed_at = timezone.now()
    version.model_signature = oms.sign_files(
        signed_files(version), name=f"{version.model.slug}:{version.version}")
    data = canonical(statement_for(version, approver_email=approver_email, signed_at=signed_at))
    version.signed_statement = data.decode()
    version.signature = signing.sign(data)
    version.signature_key_id = signing.platform_key_id()
    version.signed_at = signed_at


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def version_verify(version: ModelVersion, *, public_key=None) -> Verification:
    """Does the signed statement still match the version exactly? Never raises."""
    if version.status not in (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED):
        return Verification(False, f"version is {version.get_status_display().lower()}, "
                                   "not published")
    if not (version.signed_statement and version.signature):
        return Verification(False, "version is not signed")
    public_key = public_key or signing.platform_public_key()
    data = version.signed_statement.encode()
    if not signing.verify(public_key, data, version.signature):
        return Verification(False, "signature does not verify with the platform key "
                                   f"{signing.key_id(public_key)}")
    try:
        statement = json.loads(data)
    except ValueError:
        return Verification(False, "signed statement is not JSON")
    if statement.get("image", {}).get("digest") != version.manifest_digest:
        return Verification(False, "image digest differs from the signed one")
    if statement.get("image", {}).get("repository") != version.trusted_repository:
        return Verification(False, "trusted repository differs from the signed one")
    if statement.get("sbom_digest") != oci.sha256_digest(version.sbom.encode()):
        return Verification(False, "SBOM differs from the signed one")
    files = [{"path": f.path, "sha256": f.sha256} for f in version.files.order_by("path")]
    if statement.get("files") != files:
        return Verification(False, "file inventory differs from the signed one")
    if statement.get("scan_verdict") != version.scan_verdict:
        return Verification(False, "scan verdict differs from the signed one")
    model_signature = model_signature_verify(version, statement)
    if not model_signature:
        return model_signature
    return Verification(True, f"signed by key {statement.get('key_id')} for "
                              f"{statement.get('approver')} at {statement.get('signed_at')}; "
                              f"{model_signature.reason}")


def model_signature_verify(version: ModelVersion, statement: dict, *,
                           public_key_pem: bytes | None = None) -> Verification:
    """The OMS signature named by the approval statement: present, the very one signed, valid
    with the model-signing key, and listing exactly the version's files."""
    named = statement.get("model_signature")
    if not named:
        return Verification(True, "no OMS signature (approved before the platform made them)")
    if not version.model_signature:
        return Verification(False, "the OMS signature named by the statement is missing")
    if oci.sha256_digest(version.model_signature.encode()) != named.get("sha256"):
        return Verification(False, "the OMS signature differs from the one the statement names")
    try:
        check = oms.verify_bundle(version.model_signature, public_key_pem=public_key_pem)
    except oms.ModelSigningKeyError as exc:
        return Verification(False, f"the model-signing key can't be used: {exc}")
    if not check:
        return Verification(False, check.reason)
    if check.files != oms.expected_files(signed_files(version)):
        return Verification(False, "the OMS signature lists other files than the version has")
    return Verification(True, check.reason)


def version_verify_registry(version: ModelVersion, client=None) -> Verification:
    """`version_verify`, plus: the trusted repository serves exactly the signed digest, and the
    approval artifact attached to it carries this very statement and signature."""
    offline = version_verify(version)
    if not offline:
        return offline
    try:
        client = client or oci.registry_client()
        manifest = client.manifest_get(version.trusted_repository, version.manifest_digest)
        referrers = client.referrers(version.trusted_repository, manifest.digest,
                                     APPROVAL_ARTIFACT_TYPE)
        if not referrers:
            return Verification(False, "no approval signature is attached to the image in "
                                       f"{version.trusted_repository}")
        for descriptor in referrers:
            artifact = client.manifest_get(version.trusted_repository, descriptor.digest)
            if artifact.data.get("subject", {}).get("digest") != version.manifest_digest:
                continue
            for layer in artifact.data.get("layers") or []:
                payload = b"".join(client.blob_chunks(version.trusted_repository,
                                                      oci.Descriptor.from_json(layer)))
                attached = json.loads(payload)
                if (canonical(attached.get("statement") or {}).decode()
                        == version.signed_statement
                        and attached.get("signature") == version.signature):
                    model_signature = _model_signature_in_registry(client, version, manifest)
                    if not model_signature:
                        return model_signature
                    return Verification(True, f"{offline.reason}; image "
                                              f"{version.trusted_repository}@"
                                              f"{version.manifest_digest} and its signature "
                                              f"artifact {descriptor.digest} are in the registry"
                                              f"{model_signature.reason}")
        return Verification(False, "the signature attached in the registry differs from the "
                                   "signed statement")
    except oci.RegistryNotFound:
        return Verification(False, f"the image {version.trusted_repository}@"
                                   f"{version.manifest_digest} is not in the trusted registry")
    except (oci.RegistryError, ValueError) as exc:
        return Verification(False, f"the registry could not be checked: {exc}")


def _model_signature_in_registry(client, version: ModelVersion, manifest) -> Verification:
    """The OMS bundle attached to the image is the version's (reason: a clause to append)."""
    if not version.model_signature:
        return Verification(True, "")
    for descriptor in client.referrers(version.trusted_repository, manifest.digest,
                                       oms.BUNDLE_MEDIA_TYPE):
        artifact = client.manifest_get(version.trusted_repository, descriptor.digest)
        for layer in artifact.data.get("layers") or []:
            payload = b"".join(client.blob_chunks(version.trusted_repository,
                                                  oci.Descriptor.from_json(layer)))
            if payload == version.model_signature.encode():
                return Verification(True, f", with its OMS signature artifact "
                                          f"{descriptor.digest}")
    return Verification(False, "no OMS signature matching the version's is attached to the "
                               f"image in {version.trusted_repository}")
