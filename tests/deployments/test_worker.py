"""End to end: a real Celery worker applies a deployment through the Redis broker to the
Kubernetes API emulator, follows it to ready, and the gateway directory routes to it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from deployments import services
from deployments.models import Deployment, DeploymentStatus
from gateway.directory import _load_routes_and_tenants
from tests.deployments.test_kserve_lifecycle import build
from tests.support.kube_emulator import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(transactional_db):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
                        f"{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "ALLOWED_JURISDICTIONS": "DE,EU",
        "REGISTRY_URL": "https://registry.example.test",
        "KUBE_REQUEST_TIMEOUT_SECONDS": "2",
        "KUBE_RETRY_BACKOFF_MS": "10",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "-Q", "celery"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process
    process.terminate()
    process.wait(timeout=20)


def _status(pk):
    return Deployment.objects.get(pk=pk).status


def test_the_worker_deploys_follows_and_publishes_the_route(worker, msp_admin, cluster,
                                                            version, kube):
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    kube.fail_next(1, status=500)  # the worker retries it
    wait_for(lambda: kube.isvc(deployment.namespace, deployment.resource_name), timeout=60)
    wait_for(lambda: _status(deployment.pk) == DeploymentStatus.PROGRESSING, timeout=30)
    assert worker.poll() is None

    kube.set_isvc_status(deployment.namespace, deployment.resource_name, ready=True,
                         url="http://llm.models.example.test")
    wait_for(lambda: _status(deployment.pk) == DeploymentStatus.READY, timeout=30)
    deployment.refresh_from_db()
    assert deployment.base_url == "http://llm.models.example.test/v1"
    routes, _ = _load_routes_and_tenants()
    assert routes[version.model.slug].upstreams[0].url == deployment.base_url
    assert list(deployment.events.values_list("status", flat=True)) == [
        DeploymentStatus.READY, DeploymentStatus.PROGRESSING, DeploymentStatus.APPLYING,
        DeploymentStatus.PENDING]
