"""Nothing slow under a lock: while an external endpoint's health check hangs (a real server
on loopback that accepts and never answers; the check gives up after 5 s), other audited
writes on the platform go on. Before, registering or editing an endpoint probed it inside the
transaction that held the audit chain's advisory lock, and every audited write waited."""

import threading
import time

import pytest
from django.db import connection

from deployments import services
from deployments.models import Backend, Deployment, DeploymentStatus
from models_catalog import services as catalog_services
from models_catalog.models import Model
from tests.support.net import stalling_server

pytestmark = pytest.mark.django_db(transaction=True)

# Generous: an unblocked audited write takes milliseconds; a blocked one waits out the probe.
QUICK = 0.5


def _in_thread(work):
    """Run `work` in a thread with its own database connection; returns (thread, outcome)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except Exception as exc:  # handed to the test, which asserts on it
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _audited_write_seconds(slug: str) -> float:
    started = time.monotonic()
    catalog_services.model_create(actor="system:test", slug=slug, name=slug, task="chat")
    return time.monotonic() - started


def test_registering_an_endpoint_that_hangs_does_not_hold_the_audit_lock(msp_admin):
    model = Model.objects.create(slug="slow-llm", name="Slow", task="chat")
    with stalling_server() as stall:
        thread, outcome = _in_thread(lambda: services.external_endpoint_register(
            actor=msp_admin, model=model, base_url=stall.url + "/v1"))
        assert stall.accepted.wait(timeout=10), "the health check never connected"
        took = _audited_write_seconds("written-meanwhile")
        thread.join(timeout=30)
    assert took < QUICK, f"an audited write waited {took:.2f} s for the health check"
    assert "error" not in outcome, outcome
    deployment = outcome["value"]
    assert deployment.status == DeploymentStatus.FAILED
    assert "did not answer within" in deployment.status_reason


def test_editing_an_endpoint_that_hangs_does_not_hold_the_audit_lock(msp_admin):
    model = Model.objects.create(slug="slow-llm", name="Slow", task="chat")
    deployment = Deployment.objects.create(model=model, backend=Backend.EXTERNAL, name="slow",
                                           base_url="http://127.0.0.1:9/v1",
                                           status=DeploymentStatus.READY)
    with stalling_server() as stall:
        thread, outcome = _in_thread(lambda: services.external_endpoint_update(
            actor=msp_admin, deployment=deployment, base_url=stall.url + "/v1"))
        assert stall.accepted.wait(timeout=10), "the health check never connected"
        took = _audited_write_seconds("written-meanwhile")
        thread.join(timeout=30)
    assert took < QUICK, f"an audited write waited {took:.2f} s for the health check"
    assert outcome["value"].status == DeploymentStatus.FAILED


def test_a_check_that_ends_after_the_endpoint_was_deleted_changes_nothing(msp_admin):
    """The outcome is recorded in its own short transaction, so it must not bring back an
    endpoint that was unregistered while the probe ran."""
    model = Model.objects.create(slug="slow-llm", name="Slow", task="chat")
    with stalling_server() as stall:
        deployment = Deployment.objects.create(model=model, backend=Backend.EXTERNAL,
                                               name="slow", base_url=stall.url + "/v1",
                                               status=DeploymentStatus.READY)
        thread, _outcome = _in_thread(lambda: services.deployment_check(
            actor=msp_admin, deployment=Deployment.objects.get(pk=deployment.pk)))
        assert stall.accepted.wait(timeout=10)
        services.deployment_delete(actor=msp_admin, deployment=deployment)
        thread.join(timeout=30)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.DELETED
