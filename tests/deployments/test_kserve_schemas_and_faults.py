"""The KServe backend's bodies against KServe v0.20's own API types and CRD schema, and the
state machine under faults (a broker outage, racing GPU bookings, a surprise in one
deployment's reconcile). Shares the helpers of test_kserve_lifecycle.py."""

import re

import pytest
from django.core.exceptions import ValidationError

from deployments import services
from deployments.models import Deployment
from tests.deployments.test_kserve_lifecycle import S, become_ready, build, deploy
from tests.factories import published_version

# --- The manifests against KServe v0.20's own API types -----------------------------------

def _manifests(msp_admin, cluster, version, mode):
    """Every shape the portal applies in `mode`: fresh, canary, promoted, stopped, CPU-only."""
    from deployments.backends.kserve import build_manifest

    metric = {"Standard": "memory", "Knative": "rps"}[mode]
    deployment = deploy(msp_admin, cluster, version, mode=mode, scale_metric=metric)
    yield "fresh", build_manifest(deployment)
    v2 = published_version(version.model, version="2.0-rc.1")
    deployment.canary_version, deployment.canary_traffic_percent = v2, 20
    yield "canary", build_manifest(deployment)
    deployment.predictor_name = "v-2-0-rc-1"
    deployment.version, deployment.canary_version = v2, None
    yield "promoted", build_manifest(deployment)
    deployment.stop_requested = True
    yield "stopped", build_manifest(deployment)
    cpu_only = build(cluster, version, gpu_count=0, gpu_product="", extra_args={},
                     runtime="kserve-huggingfaceserver", scale_metric="", scale_target=None,
                     mode=mode)
    yield "cpu-only", build_manifest(cpu_only)


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_manifests_conform_to_kserve_v0_20_api_types(mode, msp_admin, cluster, version, kube):
    from tests.support import kserve_schema

    for shape, manifest in _manifests(msp_admin, cluster, version, mode):
        assert kserve_schema.problems(manifest) == [], shape
        spec = manifest["spec"]
        # Enums and rules of KServe's types and validating webhook.
        assert manifest["metadata"]["annotations"][
            "serving.kserve.io/deploymentMode"] in {"Standard", "Knative"}
        assert spec["predictor"].get("scaleMetric", "cpu") in {"cpu", "memory", "concurrency",
                                                               "rps"}
        assert spec["predictor"]["model"]["modelFormat"]["name"] in {"vLLM", "huggingface"}
        for canary in spec.get("canary", []):
            assert mode == "Standard"  # the webhook refuses canary[] in Knative mode
            name = canary["predictor"]["name"]
            assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
            assert len(f"{manifest['metadata']['name']}-{name}-predictor") <= 63
            assert name != spec["predictor"].get("name")
            assert not {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget",
                        "autoScaling"} & set(canary["predictor"])
            assert 0 <= canary["trafficPercent"] <= 100


def test_the_schema_check_catches_what_kserve_would_refuse():
    """The conformance test above can fail: a misplaced field, a wrong type and a missing
    required field are each reported."""
    from tests.support import kserve_schema

    wrong = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": {"name": "m"},
             "spec": {"predictor": {"minReplicas": "1", "model": {"storageUri": "oci://r/x"}},
                      "canary": [{"name": "v-2", "trafficPercent": 10,
                                  "predictor": {"model": {"modelFormat": {"name": "vLLM"}}}}]}}
    assert sorted(kserve_schema.problems(wrong)) == [
        ".spec.canary[0].name: not a field of V1beta1CanarySpec",
        ".spec.predictor.minReplicas: expected int, got str",
        ".spec.predictor.model.modelFormat: required by V1beta1ModelSpec",
    ]


def test_standard_mode_canary_refusals(msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version, min_replicas=0))
    v2 = published_version(version.model, version="2.0")
    with pytest.raises(ValidationError, match="would get none"):
        services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                           canary_traffic_percent=10)
    long_name = become_ready(kube, deploy(msp_admin, cluster, version, name="m" * 52))
    with pytest.raises(ValidationError, match="too long for a Standard-mode canary"):
        services.deployment_update_version(actor=msp_admin, deployment=long_name, version=v2,
                                           canary_traffic_percent=10)
    # A pending canary's pods follow the minimum: scaling it to 0 is refused.
    deployment = become_ready(kube, deploy(msp_admin, cluster, version, name="other",
                                           min_replicas=2, max_replicas=3))
    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=30)
    deployment.refresh_from_db()
    assert deployment.canary_replicas == 1  # ceil(2 × 30 / 100)
    assert deployment.gpus_reserved == 3 + 1
    with pytest.raises(ValidationError, match="before scaling to 0"):
        services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=0,
                                  max_replicas=3)


def test_hugging_face_runtime_upstream_is_its_openai_route(msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version,
                                           runtime="kserve-huggingfaceserver"))
    assert deployment.base_url.endswith(".example.test/openai/v1")
    assert deployment.url.endswith(".example.test")


def test_a_broker_outage_loses_no_change_and_the_beat_queues_it_again(
        msp_admin, cluster, version, django_capture_on_commit_callbacks):
    from unittest import mock

    with mock.patch("deployments.tasks.drive_deployment.delay",
                    side_effect=ConnectionError("broker down")) as delay, \
            django_capture_on_commit_callbacks(execute=True):
        deployment = services.kserve_deployment_create(actor=msp_admin,
                                                       deployment=build(cluster, version))
    assert delay.call_count == 1  # tried, failed, and the save stands
    deployment.refresh_from_db()
    assert deployment.status == S.PENDING
    Deployment.objects.filter(pk=deployment.pk).update(
        status_changed_at=deployment.status_changed_at.replace(year=2020))
    with mock.patch("deployments.tasks.drive_deployment.delay") as delay:
        services.deployments_fail_stale()
    delay.assert_called_once_with(deployment.pk)


@pytest.mark.django_db(transaction=True)
def test_two_bookings_that_each_fit_alone_are_not_both_saved(msp_admin, cluster, version):
    """Both requests pass the checks before either is saved; the cluster row lock makes the
    second one look again and refuse (6 + 6 GPUs of 8)."""
    import threading
    from unittest import mock

    from django.db import connection

    from deployments.services import lifecycle

    both_checked = threading.Barrier(2, timeout=10)
    real_book = lifecycle._book_gpus

    def book_after_both_checked(deployment):
        both_checked.wait()
        real_book(deployment)

    outcomes = []

    def create(name):
        try:
            services.kserve_deployment_create(actor=msp_admin, deployment=build(
                cluster, version, name=name, gpu_count=2, max_replicas=3))
            outcomes.append("saved")
        except ValidationError as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    with mock.patch.object(lifecycle, "_book_gpus", book_after_both_checked):
        threads = [threading.Thread(target=create, args=(n,)) for n in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    assert sorted(outcomes, key=len)[0] == "saved"
    assert "booked meanwhile" in sorted(outcomes, key=len)[1]
    assert Deployment.objects.count() == 1


def test_one_deployments_surprise_does_not_stop_the_reconcile_of_the_others(
        msp_admin, cluster, version, kube):
    from unittest import mock

    from deployments.services import lifecycle

    first = become_ready(kube, deploy(msp_admin, cluster, version, name="first", gpu_count=0,
                                      gpu_product=""))
    second = become_ready(kube, deploy(msp_admin, cluster, version, name="second",
                                       gpu_count=0, gpu_product=""))
    real = lifecycle.deployment_reconcile

    def flaky(deployment_id):
        if deployment_id == first.pk:
            raise RuntimeError("surprise")
        return real(deployment_id)

    kube.remove(kube.isvc_path(second.namespace, second.resource_name))
    with mock.patch.object(lifecycle, "deployment_reconcile", flaky):
        counts = services.deployments_reconcile_all()
    assert counts["error"] == 1 and counts["repaired"] == 1
    assert kube.isvc(second.namespace, second.resource_name)
