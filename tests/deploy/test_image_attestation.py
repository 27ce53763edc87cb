"""The image's SBOM and signed release statement, on a small OCI layout built here: what
`image_verify` accepts, what it refuses, and `image_push` to a real registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command

from models_catalog import registry as oci
from portal.image_attestation import (
    REF_NAME,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    _artifact,
    attest_layout,
    build_sbom,
    verify_archive,
)

TAG = "0.1.0-gtest"
DPKG_STATUS = """Package: python3.11-minimal
Status: install ok installed
Architecture: amd64
Version: 3.11.2-6+deb12u6

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u11
"""


def _blob(layout: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def make_rootfs(root: Path, packages: dict[str, str]) -> Path:
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    (root / "etc").mkdir()
    (root / "etc/debian_version").write_text("12.11\n")
    site = root / "opt/portal/venv/lib/python3.11/site-packages"
    for name, version in packages.items():
        (site / f"{name}-{version}.dist-info").mkdir(parents=True)
        (site / f"{name}-{version}.dist-info/METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            "License-Expression: BSD-3-Clause\n")
    return site


def make_layout(directory: Path, rootfs: Path) -> Path:
    """An OCI image layout with one layer holding `rootfs`, tagged TAG."""
    layout = directory / "layout"
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    layer = _blob(layout, gzip.compress(buffer.getvalue()))
    config = _blob(layout, json.dumps({"architecture": "amd64", "os": "linux",
                                       "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode()
    descriptor = _blob(layout, manifest)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **descriptor,
        "annotations": {REF_NAME: TAG}}]}))
    return layout


def archive_of(layout: Path, path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    return path


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def attested(tmp_path, key):
    rootfs = tmp_path / "rootfs"
    site = make_rootfs(rootfs, {"Django": "5.2.19", "celery": "5.7.0"})
    layout = make_layout(tmp_path, rootfs)
    attest_layout(layout, tag=TAG, image_name="sovereign-portal", rootfs=rootfs,
                  site_packages=site, app_version="0.1.0", private_key=key)
    return layout, rootfs, site


def test_an_attested_archive_verifies_and_its_sbom_lists_both_package_kinds(attested, key,
                                                                             tmp_path):
    layout, _rootfs, _site = attested
    result = verify_archive(archive_of(layout, tmp_path / "image.tar"),
                            public_key=key.public_key())
    assert result, result.reason
    assert result.tag == TAG
    assert len(result.checked) == 3
    index = json.loads((layout / "index.json").read_text())
    sbom_descriptor = next(d for d in index["manifests"] if d.get("artifactType") == SBOM_TYPE)
    artifact = json.loads((layout / "blobs/sha256" /
                           sbom_descriptor["digest"].removeprefix("sha256:")).read_bytes())
    assert artifact["subject"]["digest"] == result.manifest_digest
    sbom = json.loads((layout / "blobs/sha256" /
                       artifact["layers"][0]["digest"].removeprefix("sha256:")).read_bytes())
    debian = next(c for c in sbom["components"] if c["bom-ref"] == "os")
    purls = {c.get("purl") for c in sbom["components"] + debian["components"]}
    assert "pkg:pypi/django@5.2.19" in purls
    assert ("pkg:deb/debian/python3.11-minimal@3.11.2-6%2Bdeb12u6?arch=amd64&distro=debian-12"
            in purls)
    assert not any("gone" in (p or "") for p in purls)  # removed packages are not listed
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == (
        result.manifest_digest.removeprefix("sha256:"))


def test_another_key_does_not_verify(attested, tmp_path):
    layout, _rootfs, _site = attested
    result = verify_archive(archive_of(layout, tmp_path / "image.tar"),
                            public_key=Ed25519PrivateKey.generate().public_key())
    assert not result
    assert "signature does not verify" in result.reason


def test_an_altered_layer_is_refused(attested, key, tmp_path):
    layout, _rootfs, _site = attested
    index = json.loads((layout / "index.json").read_text())
    image = next(d for d in index["manifests"] if REF_NAME in d.get("annotations", {}))
    manifest = json.loads((layout / "blobs/sha256" /
                           image["digest"].removeprefix("sha256:")).read_bytes())
    layer = layout / "blobs/sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")
    data = bytearray(layer.read_bytes())
    data[-20] ^= 0xFF
    layer.write_bytes(bytes(data))
    result = verify_archive(archive_of(layout, tmp_path / "image.tar"),
                            public_key=key.public_key())
    assert not result
    assert "does not match its digest" in result.reason


def test_a_swapped_sbom_is_refused(attested, key, tmp_path):
    """An SBOM listing other packages, attached beside the signed statement, is caught: the
    statement signed the original SBOM's digest."""
    layout, _rootfs, _site = attested
    other_rootfs = tmp_path / "other"
    other_site = make_rootfs(other_rootfs, {"Django": "4.0.0"})
    index = json.loads((layout / "index.json").read_text())
    image = next(d for d in index["manifests"] if REF_NAME in d.get("annotations", {}))
    forged = build_sbom(rootfs=other_rootfs, site_packages=other_site,
                        image_name="sovereign-portal", tag=TAG,
                        manifest_digest=image["digest"], app_version="0.1.0")
    subject = {k: image[k] for k in ("mediaType", "digest", "size")}
    index["manifests"] = [d for d in index["manifests"] if d.get("artifactType") != SBOM_TYPE]
    index["manifests"].append(_artifact(layout, subject=subject, artifact_type=SBOM_TYPE,
                                        payload=forged, created="2026-01-01T00:00:00+00:00"))
    (layout / "index.json").write_text(json.dumps(index))
    result = verify_archive(archive_of(layout, tmp_path / "image.tar"),
                            public_key=key.public_key())
    assert not result
    assert result.reason == "the SBOM differs from the signed one"


def test_an_archive_without_signature_is_refused(attested, key, tmp_path):
    layout, _rootfs, _site = attested
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = [d for d in index["manifests"]
                          if d.get("artifactType") != SIGNATURE_TYPE]
    (layout / "index.json").write_text(json.dumps(index))
    result = verify_archive(archive_of(layout, tmp_path / "image.tar"),
                            public_key=key.public_key())
    assert not result
    assert SIGNATURE_TYPE in result.reason


def test_image_verify_command_with_the_platform_key(tmp_path, settings):
    from portal import signing

    rootfs = tmp_path / "rootfs"
    make_rootfs(rootfs, {"Django": "5.2.19"})
    layout = make_layout(tmp_path, rootfs)
    call_command("image_attest", "--layout", str(layout), "--tag", TAG, "--rootfs",
                 str(rootfs), "--app-version", "0.1.0", stdout=io.StringIO())
    archive = archive_of(layout, tmp_path / "image.tar")
    out = io.StringIO()
    call_command("image_verify", str(archive), stdout=out)
    assert f"Image verified: {TAG}" in out.getvalue()
    public = tmp_path / "platform.pub.pem"
    public.write_bytes(signing.public_key_pem(signing.platform_public_key()))
    call_command("image_verify", str(archive), "--public-key", str(public), stdout=out)
    other = tmp_path / "other.pub.pem"
    other.write_bytes(signing.public_key_pem(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(CommandError, match="signature does not verify"):
        call_command("image_verify", str(archive), "--public-key", str(other),
                     stdout=io.StringIO())


def test_image_push_sends_the_image_and_attaches_sbom_and_signature(tmp_path, settings,
                                                                    oci_registry):
    settings.REGISTRY_URL = oci_registry.url
    rootfs = tmp_path / "rootfs"
    make_rootfs(rootfs, {"Django": "5.2.19"})
    layout = make_layout(tmp_path, rootfs)
    call_command("image_attest", "--layout", str(layout), "--tag", TAG, "--rootfs",
                 str(rootfs), "--app-version", "0.1.0", stdout=io.StringIO())
    archive = archive_of(layout, tmp_path / "image.tar")
    out = io.StringIO()
    call_command("image_push", str(archive), "--repository", "platform/sovereign-portal",
                 stdout=out)
    client = oci.RegistryClient(oci_registry.url)
    pushed = client.manifest_get("platform/sovereign-portal", TAG)
    assert pushed.digest in out.getvalue()
    kinds = {d.artifact_type
             for d in client.referrers("platform/sovereign-portal", pushed.digest)}
    assert kinds == {SBOM_TYPE, SIGNATURE_TYPE}
    config, layers = pushed.image_blobs()
    for blob in (config, *layers):
        assert client.blob_exists("platform/sovereign-portal", blob.digest)
