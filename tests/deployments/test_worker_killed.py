"""A Celery worker SIGKILLed mid-deployment, inside its call to the cluster: a fresh worker and
the beat jobs take the deployment to ready, with each transition audited once and one
InferenceService in the cluster.

Killed while following (the status read stalls): the reconcile beat picks the deployment up
and finds it ready. Killed while applying (the API server stored the InferenceService, its
answer never came): the stale-work beat fails it with a reason — the portal can't know how
far a dead worker got — and Retry applies it again, which finds the object and replaces it.
"""

from __future__ import annotations

import time

import pytest

from audit.models import AuditEvent
from deployments import services, tasks
from deployments.models import Deployment, DeploymentStatus
from tests.deployments.test_kserve_lifecycle import build
from tests.support.kube_emulator import ISVC_BASE, wait_for

S = DeploymentStatus

pytestmark = pytest.mark.django_db(transaction=True)

# The killed worker waits on the cluster far longer than the test takes to kill it.
PATIENT = {"ALLOWED_JURISDICTIONS": "DE,EU", "REGISTRY_URL": "https://registry.example.test",
           "KUBE_REQUEST_TIMEOUT_SECONDS": "120", "KUBE_RETRY_BACKOFF_MS": "10"}
FRESH = {**PATIENT, "KUBE_REQUEST_TIMEOUT_SECONDS": "5"}


def _status(deployment) -> str:
    return Deployment.objects.get(pk=deployment.pk).status


def _audited(deployment) -> list[str]:
    return list(AuditEvent.objects.filter(target_type="deployments.deployment",
                                          target_id=str(deployment.pk))
                .order_by("seq").values_list("action", flat=True))


def _isvcs(kube) -> list[str]:
    return [path for path in kube.objects if path.startswith(ISVC_BASE)]


def test_killed_while_following_the_reconcile_beat_finishes_it(workers, msp_admin, cluster,
                                                                version, kube):
    doomed = workers.start(**PATIENT)
    # The first read of the InferenceService (the follow task's) never gets an answer.
    kube.hang_next(1, seconds=120, method="GET", path_contains="/inferenceservices/")
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    wait_for(lambda: _status(deployment) == S.PROGRESSING and not kube.faults, timeout=60)
    time.sleep(0.3)  # the worker is inside the stalled read
    workers.kill(doomed)

    kube.set_isvc_status(deployment.namespace, deployment.resource_name, ready=True,
                         url="http://llm.models.example.test")
    fresh = workers.start(**FRESH)
    tasks.reconcile_deployments.delay()  # what beat sends every two minutes
    wait_for(lambda: _status(deployment) == S.READY, timeout=60)
    assert fresh.poll() is None, workers.log(fresh)

    assert _audited(deployment) == ["deployment.created", "deployment.applying",
                                    "deployment.progressing", "deployment.ready"]
    assert _isvcs(kube) == [kube.isvc_path(deployment.namespace, deployment.resource_name)]
    assert kube.count("POST", "/inferenceservices") == 1
    deployment.refresh_from_db()
    assert deployment.base_url == "http://llm.models.example.test/v1"


def test_killed_while_applying_it_fails_with_a_reason_and_retry_finishes_it(
        workers, msp_admin, cluster, version, kube, settings):
    doomed = workers.start(**PATIENT)
    # The API server stores the InferenceService; its answer never reaches the worker.
    kube.hang_next(1, seconds=120, method="POST", path_contains="/inferenceservices",
                   after_applying=True)
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    wait_for(lambda: _isvcs(kube) and not kube.faults, timeout=60)
    time.sleep(0.3)
    assert _status(deployment) == S.APPLYING
    workers.kill(doomed)

    fresh = workers.start(**FRESH)
    # The beat job, once the deployment has been applying longer than the stale limit.
    Deployment.objects.filter(pk=deployment.pk).update(
        status_changed_at=deployment.status_changed_at.replace(year=2020))
    assert tasks.fail_stale_deployments() == 1
    deployment.refresh_from_db()
    assert deployment.status == S.FAILED and "retry" in deployment.status_reason

    services.deployment_retry(actor=msp_admin, deployment=deployment)
    wait_for(lambda: _status(deployment) == S.PROGRESSING, timeout=60)
    kube.set_isvc_status(deployment.namespace, deployment.resource_name, ready=True,
                         url="http://llm.models.example.test")
    wait_for(lambda: _status(deployment) == S.READY, timeout=60)
    assert fresh.poll() is None, workers.log(fresh)

    assert _audited(deployment) == [
        "deployment.created", "deployment.applying", "deployment.failed",
        "deployment.retried", "deployment.applying", "deployment.progressing",
        "deployment.ready"]
    assert _isvcs(kube) == [kube.isvc_path(deployment.namespace, deployment.resource_name)]
    assert kube.count("POST", "/inferenceservices") == 2  # the second found it: replaced
    assert kube.count("PUT", "/inferenceservices/") == 1
    assert any("re-read and replaced" in event.message for event in deployment.events.all())
