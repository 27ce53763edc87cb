"""An approval copies the image in the registry without holding the version's row lock (or any
lock): while the registry hangs, the row can be locked by others and audited writes go on; a
rejection or a second approval meanwhile is refused, and a registry failure releases the
version for another try."""

import threading
import time

import pytest
from django.db import connection, transaction

from models_catalog import services as catalog_services
from models_catalog.models import ModelVersion, VersionStatus
from portal.api import ApplicationError
from tests.models_catalog.conftest import make_submitted_version
from tests.support.net import stalling_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_registry_copy_holds_no_lock(registry_client, msp_admin, second_admin, settings):
    version = make_submitted_version(registry_client, msp_admin)
    outcome = {}

    def approve():
        try:
            catalog_services.version_approve(actor=second_admin, version=version)
        except ApplicationError as exc:
            outcome["error"] = exc.message
        finally:
            connection.close()

    with stalling_server() as registry:
        settings.REGISTRY_URL = registry.url
        settings.REGISTRY_TIMEOUT_SECONDS = 4
        thread = threading.Thread(target=approve)
        thread.start()
        assert registry.accepted.wait(timeout=10), "the approval never called the registry"
        started = time.monotonic()
        with transaction.atomic():
            ModelVersion.objects.select_for_update(nowait=True).get(pk=version.pk)
        catalog_services.model_create(actor="system:test", slug="written-meanwhile",
                                      name="Meanwhile", task="chat")
        took = time.monotonic() - started
        with pytest.raises(ApplicationError, match="publishing this version right now"):
            catalog_services.version_reject(
                actor=msp_admin, version=ModelVersion.objects.get(pk=version.pk),
                reason="Changed my mind")
        with pytest.raises(ApplicationError, match="publishing this version right now"):
            catalog_services.version_approve(actor=second_admin, version=version)
        thread.join(timeout=60)
    assert took < 0.5, f"the row or the audit chain stayed locked ({took:.2f} s)"
    assert "nothing was published" in outcome["error"]
    version.refresh_from_db()
    assert version.status == VersionStatus.AWAITING_APPROVAL and version.progress_at is None
    assert not version.signature
    # Released: a rejection is possible again.
    catalog_services.version_reject(actor=msp_admin, version=version, reason="Registry trouble")
    assert version.status == VersionStatus.REJECTED
