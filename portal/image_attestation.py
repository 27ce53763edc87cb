"""What is inside the portal's own container image, signed: its SBOM and release statement.

`make image` (scripts/image.sh) builds the image into an OCI image layout, then
`manage.py image_attest` adds two OCI artifacts whose `subject` is the image manifest:

- a CycloneDX 1.6 SBOM: every Debian package (from the root filesystem's dpkg status) and
  every Python distribution in the image's virtual environment, bound to the image by its
  manifest digest;
- a release statement — image name, tag, manifest digest, SBOM digest, time, key id — signed
  with the platform's Ed25519 key, like model versions (models_catalog/signing.py).

`manage.py image_verify ARCHIVE` checks an OCI archive (a tar of that layout): every blob
matches its digest, the SBOM is valid CycloneDX and names the image's manifest digest, and the
statement verifies with the platform key and names both digests. Verification needs only the
public key (`--public-key`), so anyone given the archive can run it offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from portal import signing

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
REF_NAME = "org.opencontainers.image.ref.name"
SBOM_TYPE = "application/vnd.cyclonedx+json"
SIGNATURE_TYPE = "application/vnd.sovereign-portal.image-signature.v1+json"
STATEMENT_TYPE = "https://sovereign-portal.example/image-release/v1"
PROPERTY_PREFIX = "sovereign-portal"


class AttestationError(Exception):
    """The layout or archive is not what the attestation needs; the message says why."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


# --- What the root filesystem holds -----------------------------------------------------

@dataclass(frozen=True)
class Package:
    """One package of the image's root filesystem, as the SBOM lists it: a Debian package
    or a Python wheel, with its package URL and (where known) its licence."""

    name: str
    version: str
    purl: PackageURL
    license: str = ""


def debian_packages(rootfs: Path) -> list[Package]:
    """Installed packages from `var/lib/dpkg/status`."""
    status = rootfs / "var/lib/dpkg/status"
    if not status.is_file():
        raise AttestationError(f"{status} is missing: is {rootfs} a Debian root filesystem?")
    release = (rootfs / "etc/debian_version").read_text().strip().split(".")[0]
    packages = []
    for paragraph in status.read_text(encoding="utf-8").split("\n\n"):
        fields = HeaderParser().parsestr(paragraph)
        if not fields.get("Package") or "installed" not in (fields.get("Status") or "").split():
            continue
        architecture = fields.get("Architecture", "all")
        packages.append(Package(
            name=fields["Package"], version=fields["Version"],
            purl=PackageURL(type="deb", namespace="debian", name=fields["Package"],
                            version=fields["Version"],
                            qualifiers={"arch": architecture, "distro": f"debian-{release}"})))
    return sorted(packages, key=lambda p: p.name)


def python_packages(site_packages: Path) -> list[Package]:
    """Distributions installed in a virtual environment's site-packages."""
    packages = []
    for metadata in sorted(site_packages.glob("*.dist-info/METADATA")):
        fields = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        name, version = fields.get("Name"), fields.get("Version")
        if not name or not version:
            continue
        licence = fields.get("License-Expression") or ""
        packages.append(Package(name=name, version=version, license=licence,
                                purl=PackageURL(type="pypi", name=name.lower(),
                                                version=version)))
    if not packages:
        raise AttestationError(f"No Python distributions under {site_packages}.")
    return packages


def build_sbom(*, rootfs: Path, site_packages: Path, image_name: str, tag: str,
               manifest_digest: str, app_version: str) -> bytes:
    """The image's SBOM as validated CycloneDX 1.6 JSON."""
    image = Component(
        type=ComponentType.CONTAINER, name=image_name, version=tag, bom_ref="image",
        purl=PackageURL(type="oci", name=image_name, version=manifest_digest,
                        qualifiers={"tag": tag}),
        hashes=[HashType(alg=HashAlgorithm.SHA_256,
                         content=manifest_digest.removeprefix("sha256:"))])
    operating_system = Component(
        type=ComponentType.OPERATING_SYSTEM, name="debian", bom_ref="os",
        version=(rootfs / "etc/debian_version").read_text().strip(),
        components=[Component(type=ComponentType.LIBRARY, name=p.name, version=p.version,
                               purl=p.purl, bom_ref=p.purl.to_string())
                    for p in debian_packages(rootfs)])
    python = [Component(type=ComponentType.LIBRARY, name=p.name, version=p.version,
                        purl=p.purl, bom_ref=p.purl.to_string(),
                        properties=[Property(name=f"{PROPERTY_PREFIX}:license",
                                             value=p.license)] if p.license else [])
              for p in python_packages(site_packages)]
    application = Component(type=ComponentType.APPLICATION, name="sovereign-model-portal",
                            version=app_version, bom_ref="portal")
    bom = Bom(components=[operating_system, application, *python])
    bom.metadata.component = image
    bom.register_dependency(image, [operating_system, application])
    bom.register_dependency(application, python)
    text = json.dumps(json.loads(JsonV1Dot6(bom).output_as_string()), indent=2,
                      sort_keys=True)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise AttestationError(f"The SBOM does not validate against CycloneDX 1.6: {error}")
    return text.encode()


# --- Writing the attestation into an OCI image layout -----------------------------------

def _put_blob(layout: Path, data: bytes) -> dict:
    digest = sha256_digest(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _artifact(layout: Path, *, subject: dict, artifact_type: str, payload: bytes,
              created: str) -> dict:
    empty = _put_blob(layout, EMPTY_JSON)
    layer = _put_blob(layout, payload)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, **empty},
        "layers": [{"mediaType": artifact_type, **layer}],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": created},
    }
    stored = _put_blob(layout, canonical(manifest))
    return {"mediaType": OCI_MANIFEST, "artifactType": artifact_type, **stored}


def statement_for(*, image_name: str, tag: str, manifest_digest: str, sbom_digest: str,
                  signed_at: str, public_key: Ed25519PublicKey) -> dict:
    return {
        "_type": STATEMENT_TYPE,
        "image": {"name": image_name, "tag": tag, "manifest_digest": manifest_digest},
        "sbom_digest": sbom_digest,
        "signed_at": signed_at,
        "key_id": signing.key_id(public_key),
    }


@dataclass(frozen=True)
class Attestation:
    manifest_digest: str
    sbom_digest: str
    key_id: str
    components: int


def attest_layout(layout: Path, *, tag: str, image_name: str, rootfs: Path,
                  site_packages: Path, app_version: str,
                  private_key: Ed25519PrivateKey) -> Attestation:
    """Add the SBOM and the signed statement for `tag` to the layout's index."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    matches = [d for d in index.get("manifests", [])
               if (d.get("annotations") or {}).get(REF_NAME) == tag]
    if len(matches) != 1:
        raise AttestationError(f"{layout} has {len(matches)} manifests tagged {tag!r}.")
    subject = {"mediaType": matches[0]["mediaType"], "digest": matches[0]["digest"],
               "size": matches[0]["size"]}
    created = datetime.now(UTC).isoformat(timespec="seconds")
    sbom = build_sbom(rootfs=rootfs, site_packages=site_packages, image_name=image_name,
                      tag=tag, manifest_digest=subject["digest"], app_version=app_version)
    statement = statement_for(image_name=image_name, tag=tag,
                              manifest_digest=subject["digest"],
                              sbom_digest=sha256_digest(sbom), signed_at=created,
                              public_key=private_key.public_key())
    data = canonical(statement)
    signed = canonical({"statement": statement,
                        "signature": base64.b64encode(private_key.sign(data)).decode()})
    # One layout holds one image: attesting again replaces the earlier artifacts.
    index["manifests"] = [
        d for d in index["manifests"] if d.get("artifactType") not in (SBOM_TYPE, SIGNATURE_TYPE)
    ] + [_artifact(layout, subject=subject, artifact_type=kind, payload=payload,
                   created=created)
         for kind, payload in ((SBOM_TYPE, sbom), (SIGNATURE_TYPE, signed))]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True))
    return Attestation(manifest_digest=subject["digest"], sbom_digest=sha256_digest(sbom),
                       key_id=statement["key_id"], components=component_count(sbom))


def component_count(sbom: bytes) -> int:
    """Components in the SBOM, nested ones (the Debian packages) included."""
    return sum(1 + len(c.get("components", []))
               for c in json.loads(sbom).get("components", []))


# --- Verifying an OCI archive -----------------------------------------------------------

class _Archive:
    """Blobs of an OCI archive (a tar of an OCI image layout), read by digest."""

    def __init__(self, handle: tarfile.TarFile):
        self.tar = handle
        self.members = {m.name.removeprefix("./"): m for m in handle.getmembers() if m.isfile()}

    def _member(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        if member is None:
            raise AttestationError(f"{name} is missing from the archive.")
        return self.tar.extractfile(member)

    def index(self) -> dict:
        return json.loads(self._member("index.json").read())

    def chunks(self, digest: str) -> Iterator[bytes]:
        if not digest.startswith("sha256:"):
            raise AttestationError(f"Unsupported digest {digest!r} (only sha256).")
        handle = self._member(f"blobs/sha256/{digest.removeprefix('sha256:')}")
        while chunk := handle.read(1024 * 1024):
            yield chunk

    def blob(self, descriptor: dict, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        data = b"".join(self.chunks(descriptor["digest"]))
        if len(data) > max_bytes:
            raise AttestationError(f"Blob {descriptor['digest']} is larger than expected.")
        self.check(descriptor, data)
        return data

    def check(self, descriptor: dict, data: bytes | None = None) -> None:
        hasher, size = hashlib.sha256(), 0
        for chunk in ([data] if data is not None else self.chunks(descriptor["digest"])):
            hasher.update(chunk)
            size += len(chunk)
        if "sha256:" + hasher.hexdigest() != descriptor["digest"] or size != descriptor["size"]:
            raise AttestationError(f"Blob {descriptor['digest']} does not match its digest "
                                   "or size: the archive was altered or is incomplete.")


@dataclass
class Verification:
    ok: bool
    reason: str
    tag: str = ""
    manifest_digest: str = ""
    checked: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


def verify_archive(path: Path, *, public_key: Ed25519PublicKey,
                   tag: str | None = None) -> Verification:
    """Check the image in the archive, its SBOM and its signature. Never raises for a bad
    archive: the reason says what is wrong."""
    try:
        with tarfile.open(path) as handle:
            return _verify(_Archive(handle), public_key=public_key, tag=tag)
    except (OSError, tarfile.TarError) as exc:
        return Verification(False, f"cannot read {path} as an OCI archive ({exc})")
    except (AttestationError, ValueError, KeyError, TypeError) as exc:
        return Verification(False, str(exc) or exc.__class__.__name__)


def _tagged_image(archive: _Archive, tag: str | None) -> dict:
    manifests = archive.index().get("manifests") or []
    images = [d for d in manifests if REF_NAME in (d.get("annotations") or {})
              and (tag is None or d["annotations"][REF_NAME] == tag)]
    if len(images) != 1:
        wanted = f"tagged {tag!r}" if tag else "with a tag"
        raise AttestationError(f"the archive holds {len(images)} images {wanted}; name one "
                               "with --tag")
    return images[0]


def _attached(archive: _Archive, digest: str, kind: str) -> bytes:
    """The payload of the `kind` artifact whose subject is the image `digest`."""
    for descriptor in archive.index().get("manifests") or []:
        if descriptor.get("artifactType") != kind:
            continue
        attached = json.loads(archive.blob(descriptor))
        if (attached.get("subject") or {}).get("digest") == digest:
            return archive.blob(attached["layers"][0])
    raise AttestationError(f"no {kind} artifact refers to the image {digest}")


def _verify(archive: _Archive, *, public_key: Ed25519PublicKey,
            tag: str | None) -> Verification:
    image = _tagged_image(archive, tag)
    tag = image["annotations"][REF_NAME]
    digest = image["digest"]
    result = Verification(False, "", tag=tag, manifest_digest=digest)
    manifest = json.loads(archive.blob(image))
    if manifest.get("config", {}).get("mediaType") != OCI_IMAGE_CONFIG:
        return Verification(False, f"{tag} is not an OCI image manifest", tag, digest)
    for descriptor in [manifest["config"], *manifest.get("layers", [])]:
        archive.check(descriptor)
    result.checked.append(f"image {tag} ({digest}): manifest, config and "
                          f"{len(manifest.get('layers', []))} layers match their digests")

    sbom = _attached(archive, digest, SBOM_TYPE)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.decode())
    if error is not None:
        return Verification(False, f"the SBOM is not valid CycloneDX 1.6: {error}", tag,
                            digest)
    bound = [h.get("content") for h in
             json.loads(sbom).get("metadata", {}).get("component", {}).get("hashes", [])]
    if digest.removeprefix("sha256:") not in bound:
        return Verification(False, "the SBOM describes another image (its component's hash "
                                   f"is not {digest})", tag, digest)
    result.checked.append(f"SBOM {sha256_digest(sbom)}: CycloneDX 1.6, "
                          f"{component_count(sbom)} components, "
                          "names the image's manifest digest")

    signed = json.loads(_attached(archive, digest, SIGNATURE_TYPE))
    statement = signed.get("statement") or {}
    if not signing.verify(public_key, canonical(statement), signed.get("signature", "")):
        return Verification(False, "the signature does not verify with the platform key "
                                   f"{signing.key_id(public_key)}", tag, digest)
    if statement.get("_type") != STATEMENT_TYPE:
        return Verification(False, "the signed statement is not an image release statement",
                            tag, digest)
    if (statement.get("image") or {}).get("manifest_digest") != digest:
        return Verification(False, "the signed statement names another image digest", tag,
                            digest)
    if statement.get("sbom_digest") != sha256_digest(sbom):
        return Verification(False, "the SBOM differs from the signed one", tag, digest)
    result.checked.append(f"signature by key {statement.get('key_id')} at "
                          f"{statement.get('signed_at')} over the image and SBOM digests")
    result.ok, result.reason = True, f"{tag} ({digest}) verified"
    return result


# --- Pushing a verified archive to a registry -------------------------------------------

def push_archive(path: Path, *, client, repository: str, tag: str | None = None) -> str:
    """Push the image to `repository` under its tag, then attach its SBOM and signature as
    referrers (the referrers tag schema where the registry has no referrers API). Returns the
    manifest digest. `client` is a models_catalog.registry.RegistryClient; verify first."""
    from models_catalog.registry import Manifest

    with tarfile.open(path) as handle:
        archive = _Archive(handle)
        image = _tagged_image(archive, tag)
        raw = archive.blob(image)
        manifest = json.loads(raw)
        for descriptor in [manifest["config"], *manifest.get("layers", [])]:
            name = f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}"
            client.blob_upload(repository, descriptor["digest"],
                               handle.extractfile(archive.members[name]), descriptor["size"])
        client.manifest_put(repository, image["annotations"][REF_NAME], raw, OCI_MANIFEST)
        subject = Manifest(raw=raw, digest=image["digest"], media_type=OCI_MANIFEST)
        for kind in (SBOM_TYPE, SIGNATURE_TYPE):
            client.artifact_attach(repository, subject=subject, artifact_type=kind,
                                   payload=_attached(archive, image["digest"], kind),
                                   payload_media_type=kind)
    return image["digest"]
