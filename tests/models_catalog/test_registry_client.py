"""The OCI registry client against a real registry (distribution 2.8) on loopback."""

import io
import json

import pytest

from models_catalog import registry as oci
from tests.support.processes import free_port


def _push_image(client, repository, *, layer=b"layer bytes", tag="1.0"):
    config = client.blob_put(repository, b'{"architecture":"amd64","os":"linux"}')
    client.blob_upload(repository, oci.sha256_digest(layer), io.BytesIO(layer), len(layer),
                       chunk_size=4)
    manifest = {
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": oci.sha256_digest(layer), "size": len(layer)}],
    }
    raw = json.dumps(manifest).encode()
    return client.manifest_put(repository, tag, raw, oci.OCI_MANIFEST)


@pytest.fixture
def client(oci_registry):
    return oci.RegistryClient(oci_registry.url)


def test_chunked_upload_manifest_by_digest_and_tags(client):
    digest = _push_image(client, "landing/tiny")
    assert client.tags_list("landing/tiny") == ["1.0"]
    manifest = client.manifest_get("landing/tiny", digest)
    assert manifest.digest == digest and manifest.media_type == oci.OCI_MANIFEST
    config, layers = manifest.image_blobs()
    assert b"".join(client.blob_chunks("landing/tiny", layers[0])) == b"layer bytes"
    # A second upload of the same blob is skipped.
    assert client.blob_upload("landing/tiny", layers[0].digest, io.BytesIO(b"layer bytes"),
                              11) is False


def test_upload_with_wrong_digest_is_refused(client):
    with pytest.raises(oci.DigestMismatch):
        client.blob_upload("landing/wrong", oci.sha256_digest(b"expected"),
                           io.BytesIO(b"something else"), 14)
    assert not client.blob_exists("landing/wrong", oci.sha256_digest(b"expected"))


def test_copy_by_digest_keeps_the_digest_and_referrers_fallback_finds_artifacts(client):
    digest = _push_image(client, "landing/copyme", layer=b"weights")
    copied = client.copy_by_digest(source="landing/copyme", target="trusted/copyme",
                                   digest=digest, tag="1.0")
    assert copied.digest == digest
    assert client.tags_list("trusted/copyme") == ["1.0"]

    artifact = client.artifact_attach(
        "trusted/copyme", subject=copied, artifact_type="application/vnd.test.sig.v1+json",
        payload=b'{"sig":"x"}', payload_media_type="application/vnd.test.sig.v1+json")
    # Distribution 2.8 has no referrers API: the artifact is listed under the fallback tag.
    assert oci.referrers_tag(digest) in client.tags_list("trusted/copyme")
    found = client.referrers("trusted/copyme", digest, "application/vnd.test.sig.v1+json")
    assert [d.digest for d in found] == [artifact]
    stored = client.manifest_get("trusted/copyme", artifact).data
    assert stored["subject"]["digest"] == digest
    assert client.referrers("trusted/copyme", digest, "application/other") == []


def test_missing_manifest_is_not_found(client):
    with pytest.raises(oci.RegistryNotFound):
        client.manifest_get("landing/nothing", "latest")


def test_registry_down_is_unavailable():
    client = oci.RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(oci.RegistryUnavailable, match="not reachable"):
        client.ping()


def test_basic_auth_challenge_is_answered_and_bad_credentials_refused(oci_registry_with_auth):
    registry = oci_registry_with_auth
    good = oci.RegistryClient(registry.url, username=registry.username,
                              password=registry.password)
    digest = _push_image(good, "landing/authed")
    assert good.manifest_get("landing/authed", digest).digest == digest
    with pytest.raises(oci.RegistryAuthError, match="REGISTRY_USERNAME"):
        oci.RegistryClient(registry.url, username="portal", password="wrong").ping()
    with pytest.raises(oci.RegistryAuthError):
        oci.RegistryClient(registry.url).manifest_get("landing/authed", digest)


def test_bearer_token_challenge_is_answered_per_scope(oci_registry_with_token_auth):
    registry = oci_registry_with_token_auth
    client = oci.RegistryClient(registry.url, username=registry.username,
                                password=registry.password)
    digest = _push_image(client, "landing/tokened")
    copied = client.copy_by_digest(source="landing/tokened", target="trusted/tokened",
                                   digest=digest)
    assert copied.digest == digest
    assert registry.tokens.issued >= 2  # one token per scope, reused within it
    with pytest.raises(oci.RegistryAuthError, match="refused the credentials"):
        oci.RegistryClient(registry.url, username="portal", password="wrong").manifest_get(
            "landing/tokened", digest)
