"""A Celery worker SIGKILLed mid-scan, while it waits on the registry: the stale-work beat
requeues the scan, a fresh worker scans, and the version reaches its verdict exactly once.

The registry is a private instance, frozen with SIGSTOP before the worker starts, so the
worker claims the scan and then hangs on its first request to the registry.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from audit.models import AuditEvent
from models_catalog import services, tasks
from models_catalog.models import ModelFile, ModelVersion, VersionStatus
from models_catalog.registry import registry_client
from tests.models_catalog.conftest import push_image
from tests.support.kube_emulator import wait_for
from tests.support.processes import stop
from tests.support.registry import start_registry

pytestmark = pytest.mark.django_db(transaction=True)

FILES = {"config.json": b'{"architecture": "llama"}',
         "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
         "tokenizer.json": b"{}"}


@pytest.fixture
def frozen_registry(tmp_path, settings):
    """A registry of the test's own, which it may freeze (SIGSTOP) and thaw (SIGCONT)."""
    registry = start_registry(tmp_path / "registry")
    settings.REGISTRY_URL = registry.url
    settings.REGISTRY_USERNAME = settings.REGISTRY_PASSWORD = ""
    settings.REGISTRY_LANDING_NAMESPACE, settings.REGISTRY_TRUSTED_NAMESPACE = "landing", "trusted"
    settings.MODEL_UPLOAD_DIR = tmp_path / "uploads"
    settings.MODEL_SCAN_WORKDIR = tmp_path / "scans"
    try:
        yield registry
    finally:
        os.kill(registry.process.pid, signal.SIGCONT)
        stop(registry.process)


def _audited(version) -> list[str]:
    return list(AuditEvent.objects.filter(target_type="models_catalog.modelversion",
                                      target_id=str(version.pk))
                .order_by("seq").values_list("action", flat=True))


def test_killed_mid_scan_the_scan_is_requeued_and_reaches_one_verdict(
        workers, frozen_registry, msp_admin, settings):
    env = {"REGISTRY_URL": frozen_registry.url, "MODEL_UPLOAD_DIR": str(settings.MODEL_UPLOAD_DIR),
           "MODEL_SCAN_WORKDIR": str(settings.MODEL_SCAN_WORKDIR)}
    model = services.model_create(actor=msp_admin, slug=f"kill-{uuid.uuid4().hex[:8]}",
                                  name="Killed mid-scan", task="chat")
    version = services.version_create(actor=msp_admin, model=model, version="1.0")
    push_image(registry_client(), f"landing/{model.slug}", "1.0", FILES)
    # Quarantined; the scan is queued for a worker that is not running yet.
    services.version_register_reference(actor=msp_admin, version=version,
                                    repository=f"landing/{model.slug}", reference="1.0")

    os.kill(frozen_registry.process.pid, signal.SIGSTOP)
    doomed = workers.start(**env)
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status == VersionStatus.SCANNING,
             timeout=60)
    time.sleep(0.5)  # claimed, and now waiting on the frozen registry
    workers.kill(doomed)
    os.kill(frozen_registry.process.pid, signal.SIGCONT)

    fresh = workers.start(**env)
    # The beat job, once the scan has not reported progress for MODEL_SCAN_STALE_MINUTES.
    ModelVersion.objects.filter(pk=version.pk).update(
        progress_at=ModelVersion.objects.get(pk=version.pk).progress_at.replace(year=2020))
    assert tasks.recover_stale_work() == {"requeued": [version.pk], "failed": []}
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status
             == VersionStatus.AWAITING_APPROVAL, timeout=90)
    assert fresh.poll() is None, workers.log(fresh)

    version.refresh_from_db()
    assert _audited(version) == [
        "model_version.created", "model_version.quarantined", "model_version.scan_started",
        "model_version.scan_requeued", "model_version.scan_started", "model_version.scanned"]
    assert version.scan_attempts == 2 and version.work_error == ""
    assert sorted(ModelFile.objects.filter(version=version).values_list("path", flat=True)) \
        == sorted(FILES)
    assert version.sbom and version.scan_verdict == "clean"
