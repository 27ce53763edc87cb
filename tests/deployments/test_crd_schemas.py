"""Every body the portal sends, against KServe v0.20's CRD schemas as its API server applies
them (tests/support/crds: pruning, defaults, structural validation, CEL rules)."""

import pytest

from tests.deployments.test_kserve_lifecycle import deploy
from tests.deployments.test_kserve_schemas_and_faults import _manifests
from tests.support import crd_schema


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_every_inference_service_shape_is_stored_as_sent(mode, msp_admin, cluster, version,
                                                         kube):
    """Fresh, canary, promoted, stopped and CPU-only, in both modes: nothing refused, nothing
    pruned."""
    shapes = []
    for shape, manifest in _manifests(msp_admin, cluster, version, mode):
        assert crd_schema.problems(manifest) == [], shape
        shapes.append(shape)
    assert shapes == ["fresh", "canary", "promoted", "stopped", "cpu-only"]


def test_a_standard_mode_canary_names_its_model_container(msp_admin, cluster, version, kube):
    """KServe v0.20's CRD requires `canary[].predictor.model.name` and `modelFormat` (the main
    predictor's `model` needs neither): a canary without them is refused by the API server."""
    from deployments.backends.kserve import build_manifest
    from tests.factories import published_version

    deployment = deploy(msp_admin, cluster, version, mode="Standard")
    deployment.canary_version = published_version(version.model, version="2.0")
    deployment.canary_traffic_percent = 10
    [canary] = build_manifest(deployment)["spec"]["canary"]
    assert canary["predictor"]["model"]["name"] == "kserve-container"
    assert canary["predictor"]["model"]["modelFormat"] == {"name": "vLLM"}

    without = build_manifest(deployment)
    del without["spec"]["canary"][0]["predictor"]["model"]["name"]
    assert crd_schema.problems(without) == [
        ".spec.canary[0].predictor.model: 'name' is a required property"]


ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "models-shared"}}
LLM = {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
       "metadata": {"name": "m", "namespace": "models-shared"}}


def test_the_check_refuses_and_prunes_like_an_api_server():
    body = {**ISVC, "metadata": {**ISVC["metadata"], "labelz": {"a": "b"}}, "spec": {
        "predictor": {"minReplicas": "1", "scaleMetric": "gpu", "nodeSelector": None,
                      "model": {"modelFormat": {"name": "vLLM"}, "storageUri": "oci://r/x",
                                "replicas": 2,
                                "resources": {"limits": {"cpu": ["8"]}}}},
        "transformer": {"containers": [{"name": "t", "ports": [
            {"containerPort": 8080, "protocol": "TCP"},
            {"containerPort": 8080, "protocol": "TCP"}]}]}}}
    assert crd_schema.problems(body) == [
        ".spec.predictor.nodeSelector: null is dropped (not nullable)",
        ".spec.predictor.model.replicas: not in the schema, pruned",
        ".metadata.labelz: not a field of ObjectMeta, pruned",
        ".spec.predictor.minReplicas: '1' is not of type 'integer'",
        ".spec.predictor.model.resources.limits.cpu: ['8'] is not valid under any of the given "
        "schemas",
        ".spec.predictor.scaleMetric: 'gpu' is not one of ['cpu', 'memory', 'concurrency', "
        "'rps']",
        ".spec.transformer.containers[0].ports: duplicate entries for map keys "
        "['containerPort', 'protocol']",
    ]
    assert crd_schema.problems({**ISVC, "kind": "InferenceGraph", "spec": {}}) == [
        "no CRD serves InferenceGraph in serving.kserve.io/v1beta1"]


def test_cel_rules_and_defaults_of_the_llm_inference_service_crd():
    both = {**LLM, "spec": {"model": {"uri": "oci://r/x@sha256:00"}, "replicas": 2,
                            "scaling": {"maxReplicas": 3, "wva": {"hpa": {}, "keda": {}}}}}
    assert crd_schema.problems(both) == [
        ".spec.scaling.wva: hpa and keda are mutually exclusive; choose one actuator backend",
        ".spec: replicas and scaling are mutually exclusive; use scaling for autoscaled "
        "deployments or replicas for static deployments",
    ]
    scaled = {**LLM, "spec": {"model": {"uri": "oci://r/x@sha256:00"},
                              "scaling": {"maxReplicas": 3, "wva": {"keda": {}}},
                              "router": {"route": {"group": "Not_A_Label", "weight": 0}}}}
    admitted = crd_schema.admit(scaled)
    assert admitted.stored["spec"]["scaling"] == {  # the CRD's defaults, as stored
        "minReplicas": 1, "maxReplicas": 3, "wva": {"keda": {}, "variantCost": "10.0"}}
    assert admitted.problems == [
        ".spec.router.route.group: 'Not_A_Label' does not match "
        "'^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'"]
    low = {**LLM, "spec": {"model": {"uri": "oci://r/x@sha256:00"},
                           "scaling": {"minReplicas": 4, "maxReplicas": 3, "wva": {}}}}
    assert crd_schema.problems(low) == [
        ".spec.scaling.wva: either hpa or keda must be specified as the actuator backend",
        ".spec.scaling: minReplicas cannot exceed maxReplicas"]
    # v1alpha1's `workload:` block is not part of v1alpha2: pruned, intent lost.
    assert crd_schema.problems({**LLM, "spec": {"model": {"uri": "hf://x"},
                                                "workload": {"replicas": 2}}}) == [
        ".spec.workload: not in the schema, pruned"]
