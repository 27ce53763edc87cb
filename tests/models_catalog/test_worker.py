"""The gate's background work done by a real Celery worker process through Redis."""

import time
import uuid

from models_catalog import services
from models_catalog.models import ModelVersion, VersionStatus
from tests.models_catalog.conftest import models_layer, push_image


def wait_for_status(version, statuses, worker, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if version.status in statuses and not (version.status == VersionStatus.QUARANTINED
                                               and not version.work_error):
            return version
        assert worker.poll() is None, "the worker died"
        time.sleep(0.25)
    raise AssertionError(f"still {version.status} after {timeout} s")


def test_worker_scans_a_referenced_image_and_rejects_a_tampered_blob(
        catalog_worker, registry_client, oci_registry, msp_admin):
    model = services.model_create(actor=msp_admin, slug=f"wk-{uuid.uuid4().hex[:8]}",
                                  name="Worker", task="chat")
    version = services.version_create(actor=msp_admin, model=model, version="1.0")
    digest = push_image(registry_client, f"landing/{model.slug}", "1.0",
                        {"config.json": b"{}", "model.safetensors": uuid.uuid4().bytes})
    layer = registry_client.manifest_get(f"landing/{model.slug}", digest).image_blobs()[1][0]
    hexdigest = layer.digest.split(":", 1)[1]
    (oci_registry.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest
     / "data").write_bytes(models_layer({"model.safetensors": b"swapped after the push"}))

    # Registering commits and enqueues the scan; the worker picks it up.
    services.version_register_reference(actor=msp_admin, version=version,
                                        repository=f"landing/{model.slug}", reference="1.0")
    version = wait_for_status(version, {VersionStatus.REJECTED,
                                        VersionStatus.AWAITING_APPROVAL}, catalog_worker)
    assert version.status == VersionStatus.REJECTED
    assert "does not match" in version.status_reason
    assert ModelVersion.objects.get(pk=version.pk).scan_attempts == 1
