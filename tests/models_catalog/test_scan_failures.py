"""A scan never leaves a version stuck: a registry that is down keeps it quarantined with
the error and a retry; a blob whose content doesn't match its digest rejects it; an image
index instead of an image is refused."""

import json
import uuid

import pytest

from models_catalog import registry as oci
from models_catalog import services
from models_catalog.models import VersionStatus
from portal.api import ApplicationError
from tests.models_catalog.conftest import models_layer, push_image
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def quarantined(registry_client, msp_admin):
    model = services.model_create(actor=msp_admin, slug=f"scan-{uuid.uuid4().hex[:8]}",
                                  name="Scan", task="chat")
    version = services.version_create(actor=msp_admin, model=model, version="1.0")
    push_image(registry_client, f"landing/{model.slug}", "1.0",
               {"config.json": b"{}", "model.safetensors": uuid.uuid4().bytes})
    services.version_register_reference(actor=msp_admin, version=version,
                                        repository=f"landing/{model.slug}", reference="1.0")
    assert version.status == VersionStatus.QUARANTINED
    return version


def test_registry_down_keeps_the_version_quarantined_with_the_reason(quarantined, settings):
    settings.REGISTRY_URL = f"http://127.0.0.1:{free_port()}"
    settings.REGISTRY_TIMEOUT_SECONDS = 2
    version = services.version_scan(version_id=quarantined.pk)
    assert version.status == VersionStatus.QUARANTINED
    assert "could not reach the registry" in version.work_error
    assert version.scan_attempts == 1
    # The page says so, with a retry button; a second scan task is a no-op until retried.
    assert services.version_scan(version_id=quarantined.pk) is None


def test_a_blob_that_does_not_match_its_digest_rejects_the_version(quarantined, oci_registry):
    manifest = oci.registry_client().manifest_get(quarantined.landing_repository,
                                                  quarantined.manifest_digest)
    layer = manifest.image_blobs()[1][0]
    hexdigest = layer.digest.split(":", 1)[1]
    data = (oci_registry.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest
            / "data")
    data.write_bytes(models_layer({"config.json": b"{}", "model.safetensors": b"tampered"}))
    version = services.version_scan(version_id=quarantined.pk)
    assert version.status == VersionStatus.REJECTED
    assert "does not match" in version.status_reason and layer.digest in version.status_reason
    assert not version.files.exists()


def test_an_image_index_is_refused_as_a_reference(registry_client, msp_admin):
    model = services.model_create(actor=msp_admin, slug=f"idx-{uuid.uuid4().hex[:8]}",
                                  name="Index", task="chat")
    digest = push_image(registry_client, f"landing/{model.slug}", "img", {"a": b"b"})
    manifest = registry_client.manifest_get(f"landing/{model.slug}", digest)
    index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {"mediaType": oci.OCI_MANIFEST, "digest": digest, "size": len(manifest.raw),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    registry_client.manifest_put(f"landing/{model.slug}", "multi", index, oci.OCI_INDEX)
    version = services.version_create(actor=msp_admin, model=model, version="1")
    with pytest.raises(ApplicationError, match="single image manifest"):
        services.version_register_reference(actor=msp_admin, version=version,
                                            repository=f"landing/{model.slug}", reference="multi")
    version.refresh_from_db()
    assert version.status == VersionStatus.UPLOADING and not version.manifest_digest


def test_the_version_page_shows_a_failed_step_and_its_retry(client, quarantined, msp_admin,
                                                            settings):
    settings.REGISTRY_URL = f"http://127.0.0.1:{free_port()}"
    settings.REGISTRY_TIMEOUT_SECONDS = 2
    services.version_scan(version_id=quarantined.pk)
    client.force_login(msp_admin)
    page = client.get(f"/catalog/{quarantined.model.slug}/v/1.0/").content.decode()
    assert "could not reach the registry" in page and "Retry" in page
    progress = client.get(f"/catalog/{quarantined.model.slug}/v/1.0/progress/?status=scanning",
                          HTTP_HX_REQUEST="true")
    assert progress["HX-Refresh"] == "true"


def test_a_tampered_config_blob_rejects_the_version_too(quarantined, oci_registry):
    manifest = oci.registry_client().manifest_get(quarantined.landing_repository,
                                                  quarantined.manifest_digest)
    config = manifest.image_blobs()[0]
    hexdigest = config.digest.split(":", 1)[1]
    (oci_registry.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest
     / "data").write_bytes(b'{"architecture":"arm64","os":"linux"}')
    version = services.version_scan(version_id=quarantined.pk)
    assert version.status == VersionStatus.REJECTED and config.digest in version.status_reason
