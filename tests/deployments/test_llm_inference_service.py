"""The LLMInferenceService backend (KServe v0.20, v1alpha2) and its presets, over real HTTP to
the Kubernetes emulator, which admits every body against KServe v0.20's CRD schemas."""

import math

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from deployments import services
from deployments.backends.llmisvc import build_manifest, preset_config
from deployments.models import Deployment, DeploymentStatus
from gateway.directory import _load_routes_and_tenants
from tests.deployments.conftest import GPU, RUNTIME_IMAGE, preset_fields
from tests.factories import published_version
from tests.support import crd_schema, kserve_schema
from tests.support.kube_emulator import GATEWAY_URL, start_emulator

S = DeploymentStatus
GROUP = "serving.kserve.io/v1alpha2"


def build(cluster, version, preset, tenant=None, **overrides):
    fields = dict(version=version, cluster=cluster, tenant=tenant, preset=preset,
                  min_replicas=2, max_replicas=2)
    fields.update(overrides)
    return services.llm_deployment_build(**fields)


def deploy(actor, cluster, version, preset, tenant=None, **overrides):
    deployment = services.kserve_deployment_create(
        actor=actor, deployment=build(cluster, version, preset, tenant, **overrides))
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    deployment.refresh_from_db()
    return deployment


def settle(kube, deployment, expected=S.READY):
    """Play KServe's controller for every LLMInferenceService of the deployment, then let the
    portal follow."""
    for member in kube.llm_members(deployment.namespace):
        labels = member["metadata"].get("labels") or {}
        if labels.get("portal.sovereign.eu/llm-group") == deployment.resource_name:
            kube.set_llm_status(deployment.namespace, member["metadata"]["name"])
    assert services.deployment_follow(deployment.pk) == expected
    deployment.refresh_from_db()
    return deployment


def annotations(obj):
    return obj["metadata"].get("annotations") or {}


# --- discovery and the wizard's offer -----------------------------------------------------

def test_the_cluster_check_discovers_llm_inference_service(msp_admin, cluster, kube):
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.llm_inference_service is True
    assert "LLMInferenceService (serving.kserve.io/v1alpha2) served" in \
        checked.last_check_message
    assert kube.count("GET", "/apis/serving.kserve.io/v1alpha2") == 1

    bare = start_emulator(llm_installed=False)
    try:
        other = services.cluster_create(actor=msp_admin, name="old-kserve", api_url=bare.url,
                                        jurisdiction="DE", credentials=bare.token)
        other = services.cluster_check(actor=msp_admin, cluster=other)
    finally:
        bare.stop()
    assert other.last_check_ok is True and other.llm_inference_service is False
    assert "not served" in other.last_check_message
    assert AuditEvent.objects.filter(action="cluster.checked",
                                     details__llm_inference_service=False).exists()


def test_the_wizard_offers_the_backend_only_where_it_is_served(client, msp_admin, cluster,
                                                              version, preset, kube):
    client.force_login(msp_admin)
    target = {"version": version.pk, "tenant": "", "step": 0}
    first = {**target, "step": 1, "cluster": cluster.pk, "mode": ""}
    page = client.post("/msp/deployments/new/", target).content.decode()
    assert "Serve it as" in page
    assert 'value="llmisvc"' not in page  # no checked cluster serves it yet
    forged = client.post("/msp/deployments/new/", {**first, "backend": "llmisvc"})
    assert "llmisvc is not one of the available choices" in forged.content.decode()

    second = services.cluster_create(actor=msp_admin, name="fra-llm-2", api_url=kube.url,
                                     jurisdiction="DE", credentials=kube.token)
    services.cluster_check(actor=msp_admin, cluster=second)
    page = client.post("/msp/deployments/new/", target).content.decode()
    assert 'value="llmisvc"' in page
    assert f'data-testid="serves-{second.pk}">InferenceService<br>LLMInferenceService' in page
    assert f'data-testid="serves-{cluster.pk}">InferenceService</td>' in page
    refused = client.post("/msp/deployments/new/", {**first, "backend": "llmisvc"})
    assert "fra-gpu-1 did not serve LLMInferenceService" in refused.content.decode()

    services.cluster_check(actor=msp_admin, cluster=cluster)
    page = client.post("/msp/deployments/new/", {**first, "backend": "llmisvc"})
    body = page.content.decode()
    assert "Preset and replicas" in body and "a100-tp1" in body
    assert "Runtime and resources" not in body


def test_the_wizard_previews_and_applies_an_llm_inference_service(client, msp_admin,
                                                                 llm_cluster, version, preset,
                                                                 kube):
    client.force_login(msp_admin)
    data = {"version": version.pk, "tenant": "", "cluster": llm_cluster.pk, "mode": "",
            "backend": "llmisvc", "name": "", "preset": preset.pk, "min_replicas": "1",
            "max_replicas": "3", "autoscaler": "keda", "prefill_replicas": "1"}
    review = client.post("/msp/deployments/new/", {**data, "step": 2}).content.decode()
    assert "Apply to the cluster" in review
    assert "kind: LLMInferenceServiceConfig" in review and "kind: LLMInferenceService\n" in \
        review.replace("&#x27;", "'")
    assert f"@{version.manifest_digest}" in review and "baseRefs" in review
    assert kube.count("POST") == 0 and not Deployment.objects.exists()

    applied = client.post("/msp/deployments/new/", {**data, "step": 3, "apply": "1"})
    deployment = Deployment.objects.get()
    assert applied.status_code == 302 and deployment.backend == "llmisvc"
    assert (deployment.llm_preset, deployment.autoscaler, deployment.prefill_replicas) == (
        preset, "keda", 1)
    assert deployment.gpus_reserved == 1 * (3 + 1)

    missing = client.post("/msp/deployments/new/", {**data, "step": 2, "autoscaler": ""})
    assert "Choose HPA or KEDA" in missing.content.decode()


# --- the bodies ---------------------------------------------------------------------------

PRESETS = {
    "scheduler + KV offload": {},
    "no scheduler, CPU only": dict(name="cpu-small", gpu_count=0, gpu_product="",
                                   scheduler="none", kv_offload_cpu="", kv_offload_disk="",
                                   runtime_args={}),
    "custom scheduler, TP2": dict(name="a100-tp2", gpu_count=2, tensor_parallel=2,
                                  scheduler="custom", scheduler_replicas=2,
                                  scheduler_config={
                                      "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
                                      "kind": "EndpointPickerConfig",
                                      "plugins": [{"type": "prefix-cache-scorer"},
                                                  {"type": "load-aware-scorer"}],
                                      "schedulingProfiles": [{"name": "default", "plugins": [
                                          {"pluginRef": "prefix-cache-scorer", "weight": 2},
                                          {"pluginRef": "load-aware-scorer", "weight": 1}]}]},
                                  kv_offload_policy="arc", kv_offload_disk=""),
    "data parallel over 2 pods": dict(name="dp4", gpu_count=2, data_parallel=4,
                                      data_local_parallel=2),
    "pipeline over 2 pods": dict(name="pp2", pipeline_parallel=2),
}


@pytest.mark.parametrize("variant", sorted(PRESETS))
def test_every_preset_is_stored_as_sent(variant, msp_admin):
    preset = services.llm_preset_create(actor=msp_admin, **preset_fields(**PRESETS[variant]))
    config = preset_config(preset, "tenant-acme")
    assert crd_schema.problems(config) == []
    assert kserve_schema.problems(config) == []
    spec = config["spec"]
    assert spec["template"]["containers"][0]["image"] == RUNTIME_IMAGE
    assert ("worker" in spec) == (preset.pods_per_replica > 1)
    assert ("router" in spec) == (preset.scheduler != "none")


def _llm_shapes(msp_admin, cluster, version, preset):
    """Every LLMInferenceService shape the portal applies."""
    deployment = deploy(msp_admin, cluster, version, preset)
    yield "fresh", deployment
    v2 = published_version(version.model, version="2.0-rc.1")
    deployment.canary_version, deployment.canary_traffic_percent = v2, 20
    yield "canary", deployment
    deployment.previous_version, deployment.version = deployment.version, v2
    deployment.canary_version = deployment.canary_traffic_percent = None
    deployment.predictor_name, deployment.stopped_member = "m-v-2-0-rc-1", deployment.name
    yield "promoted", deployment
    deployment.stop_requested = True
    yield "stopped", deployment
    scaled = build(cluster, version, preset, name="scaled", min_replicas=1, max_replicas=4,
                   autoscaler="hpa", prefill_replicas=2)
    yield "scaled with a prefill pool", scaled
    cpu = services.llm_preset_create(actor=msp_admin, **preset_fields(**PRESETS[
        "no scheduler, CPU only"]))
    yield "CPU only", build(cluster, version, cpu, name="cpu", max_replicas=3, min_replicas=1,
                            autoscaler="keda")


def test_every_llm_inference_service_shape_is_stored_as_sent(msp_admin, llm_cluster, version,
                                                             preset, kube):
    shapes = []
    for shape, deployment in _llm_shapes(msp_admin, llm_cluster, version, preset):
        manifest = build_manifest(deployment)
        assert manifest["kind"] == "List" and manifest["items"][0]["kind"] == \
            "LLMInferenceServiceConfig"
        for item in manifest["items"]:
            assert crd_schema.problems(item) == [], (shape, item["metadata"]["name"])
            assert kserve_schema.problems(item) == [], shape
            if item["kind"] == "LLMInferenceService":
                spec = item["spec"]
                assert spec["baseRefs"] == [{"name": deployment.llm_preset.name}]
                assert spec["model"]["uri"].startswith("oci://registry.example.test/")
                assert "@sha256:" in spec["model"]["uri"]
                assert spec["model"]["name"] == deployment.resource_name
                assert spec["router"]["route"]["group"] == deployment.resource_name
        shapes.append(shape)
    assert len(shapes) == 6


def test_the_sdk_wheel_does_not_carry_the_llm_spec_types():
    """Why the CRD schema, not the SDK, checks an LLMInferenceService's spec."""
    assert "V1alpha2LLMInferenceService" in kserve_schema._kserve_models()
    assert "V1alpha2LLMInferenceServiceSpec" not in kserve_schema._kserve_models()
    wrong = {"apiVersion": GROUP, "kind": "LLMInferenceService", "metadata": {"name": "m"},
             "spec": {}, "specs": {}}
    assert kserve_schema.problems(wrong) == [
        ".specs: not a field of V1alpha2LLMInferenceService"]


# --- deploy, ready, the gateway -----------------------------------------------------------

def test_deploy_applies_the_preset_and_the_service(msp_admin, llm_cluster, version, preset,
                                                   kube):
    deployment = deploy(msp_admin, llm_cluster, version, preset)
    ns, name = deployment.namespace, deployment.resource_name
    config = kube.llm_config(ns, preset.name)
    assert config["spec"]["template"]["containers"][0]["args"] == [
        "--max-model-len=8192", "--enable-prefix-caching"]
    assert config["spec"]["template"]["nodeSelector"] == {"nvidia.com/gpu.product": GPU}
    assert config["spec"]["kvCacheOffloading"] == {
        "cpu": "16Gi", "evictionPolicy": "lru",
        "secondary": [{"fileSystem": {"emptyDir": {"size": "100Gi"}}}]}
    assert config["spec"]["router"] == {"scheduler": {}}
    service = kube.llm(ns, name)
    assert service["apiVersion"] == GROUP and service["spec"]["replicas"] == 2
    assert service["spec"]["model"] == {
        "uri": f"oci://registry.example.test/{version.trusted_repository}"
               f"@{version.manifest_digest}", "name": name}
    assert service["spec"]["router"] == {"route": {"group": name, "weight": 100},
                                         "gateway": {}}
    assert annotations(service)["portal.sovereign.eu/model-version"] == "1.0"
    assert "serving.kserve.io/stop" not in annotations(service)
    assert deployment.status == S.PROGRESSING
    assert "LLMInferenceService applied (preset a100-tp1 created" in \
        deployment.events.first().message
    assert services.deployment_follow(deployment.pk) == S.PROGRESSING  # no status yet


@pytest.mark.django_db(transaction=True)
def test_ready_records_the_status_url_and_the_gateway_routes_there(msp_admin, llm_cluster,
                                                                   version, preset, kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset))
    expected = f"{GATEWAY_URL}/{deployment.namespace}/{deployment.resource_name}"
    assert deployment.url == expected and deployment.base_url == expected + "/v1"
    kinds = [(c["object"], c["type"]) for c in deployment.conditions]
    assert (deployment.resource_name, "Ready") in kinds
    assert (deployment.resource_name, "PresetsCombined") in kinds
    assert (deployment.resource_name, "GroupReady") in kinds
    assert deployment.observed["replicas"] == 2
    assert deployment.observed["traffic"] == [{"revisionName": deployment.resource_name,
                                               "percent": 100}]
    routes, _ = _load_routes_and_tenants()
    upstream = routes[version.model.slug].upstreams[0]
    assert upstream.url == expected + "/v1" and upstream.model_name == deployment.resource_name
    assert AuditEvent.objects.filter(action="deployment.ready",
                                     target_id=str(deployment.pk)).exists()


def test_a_missing_preset_shows_in_the_conditions_and_the_reconcile_repairs_it(
        msp_admin, llm_cluster, version, preset, kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset))
    path = kube.llm_path(deployment.namespace, preset.name, "llminferenceserviceconfigs")
    kube.remove(path)
    kube.set_llm_status(deployment.namespace, deployment.resource_name)
    assert services.deployment_follow(deployment.pk) == S.PROGRESSING
    deployment.refresh_from_db()
    assert deployment.status_reason.startswith("PresetsCombined: ConfigNotFound")
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert kube.get(path)["spec"] == preset_config(preset, deployment.namespace)["spec"]
    assert AuditEvent.objects.filter(action="deployment.drift_repaired").count() == 1
    assert settle(kube, deployment).status == S.READY


# --- canary, promotion, rollback ----------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_canary_promote_and_rollback(client, msp_admin, llm_cluster, version, preset, kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset))
    ns, stable = deployment.namespace, deployment.resource_name
    v2 = published_version(version.model, version="2.0")

    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=10)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    canary = f"{stable}-v-2-0"
    live = {m["metadata"]["name"]: m for m in kube.llm_members(ns)}
    assert set(live) == {stable, canary}
    assert live[stable]["spec"]["router"]["route"] == {"group": stable, "weight": 90}
    assert live[canary]["spec"]["router"]["route"] == {"group": stable, "weight": 10}
    assert live[canary]["spec"]["replicas"] == math.ceil(2 * 10 / 100)
    assert live[canary]["spec"]["model"]["uri"].endswith(v2.manifest_digest)
    assert live[canary]["spec"]["model"]["name"] == live[stable]["spec"]["model"]["name"]
    assert live[stable]["spec"]["model"]["uri"].endswith(version.manifest_digest)

    deployment = settle(kube, deployment)
    assert deployment.base_url.endswith(f"/{ns}/{stable}/v1")
    assert deployment.observed["traffic"] == [{"revisionName": stable, "percent": 90},
                                              {"revisionName": canary, "percent": 10}]
    assert deployment.observed["canaries"] == [{"name": canary, "ready": True,
                                                "trafficPercent": 10}]
    assert {c["object"] for c in deployment.conditions} == {stable, canary}
    client.force_login(msp_admin)
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert "GroupReady" in page and canary in page and "Promoting stops" in page

    # A canary that is not ready keeps the deployment from being ready.
    kube.set_llm_status(ns, canary, ready=False, reason="ImagePullBackOff")
    assert services.deployment_follow(deployment.pk) == S.PROGRESSING
    deployment.refresh_from_db()
    assert deployment.status_reason.startswith(f"canary {canary}: MainWorkloadReady")
    deployment = settle(kube, deployment)

    services.deployment_promote(actor=msp_admin, deployment=deployment)
    services.deployment_drive(deployment.pk)
    live = {m["metadata"]["name"]: m for m in kube.llm_members(ns)}
    assert annotations(live[stable])["serving.kserve.io/stop"] == "true"
    assert live[stable]["spec"]["router"]["route"]["weight"] == 0
    assert live[stable]["spec"]["model"]["uri"].endswith(version.manifest_digest)
    assert "serving.kserve.io/stop" not in annotations(live[canary])
    assert live[canary]["spec"]["router"]["route"]["weight"] == 100
    assert live[canary]["spec"]["replicas"] == 2  # the stable shape now
    deployment = settle(kube, deployment)
    assert (deployment.version, deployment.previous_version) == (v2, version)
    assert (deployment.predictor_name, deployment.stopped_member) == (canary, stable)
    assert deployment.base_url.endswith(f"/{ns}/{canary}/v1")
    assert deployment.observed["stopped"] == [stable]
    routes, _ = _load_routes_and_tenants()
    assert routes[version.model.slug].upstreams[0].url == deployment.base_url

    # Roll back: the stopped one starts again, the promoted one stops.
    services.deployment_rollback(actor=msp_admin, deployment=deployment)
    services.deployment_drive(deployment.pk)
    live = {m["metadata"]["name"]: m for m in kube.llm_members(ns)}
    assert "serving.kserve.io/stop" not in annotations(live[stable])
    assert live[stable]["spec"]["router"]["route"]["weight"] == 100
    assert annotations(live[canary])["serving.kserve.io/stop"] == "true"
    deployment = settle(kube, deployment)
    assert (deployment.version, deployment.stopped_member) == (version, canary)
    assert deployment.base_url.endswith(f"/{ns}/{stable}/v1")

    # A new canary replaces the stopped one (same name: it is updated, not duplicated);
    # rolling the canary back removes it.
    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=25)
    services.deployment_drive(deployment.pk)
    live = {m["metadata"]["name"]: m for m in kube.llm_members(ns)}
    assert set(live) == {stable, canary}
    assert "serving.kserve.io/stop" not in annotations(live[canary])
    assert live[canary]["spec"]["router"]["route"]["weight"] == 25
    deployment = settle(kube, deployment)
    services.deployment_rollback(actor=msp_admin, deployment=deployment)
    services.deployment_drive(deployment.pk)
    assert [m["metadata"]["name"] for m in kube.llm_members(ns)] == [stable]

    # Without a canary a new version rolls the stable one in place.
    deployment = settle(kube, deployment)
    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2)
    services.deployment_drive(deployment.pk)
    [only] = kube.llm_members(ns)
    assert only["metadata"]["name"] == stable
    assert only["spec"]["model"]["uri"].endswith(v2.manifest_digest)
    actions = set(AuditEvent.objects.filter(target_id=str(deployment.pk)).values_list(
        "action", flat=True))
    assert {"deployment.canary_started", "deployment.promoted", "deployment.rolled_back",
            "deployment.updated"} <= actions


def test_a_long_name_promotes_within_kubernetes_limits(msp_admin, llm_cluster, version, preset,
                                                      kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset, name="l" * 53))
    v2 = published_version(version.model, version="2.0.0-release-candidate-1")
    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=5)
    services.deployment_drive(deployment.pk)
    deployment = settle(kube, deployment)
    services.deployment_promote(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    deployment.refresh_from_db()
    assert len(deployment.predictor_name) == 63 and deployment.stopped_member == "l" * 53
    assert kube.llm(deployment.namespace, deployment.predictor_name)


# --- replicas, scaling, prefill, bookings -------------------------------------------------

def test_scaling_prefill_and_gpu_bookings(msp_admin, llm_cluster, version, preset, kube):
    from deployments.selectors import cluster_free_gpus

    deployment = deploy(msp_admin, llm_cluster, version, preset, min_replicas=1,
                        max_replicas=3, autoscaler="keda", prefill_replicas=2)
    spec = kube.llm(deployment.namespace, deployment.resource_name)["spec"]
    assert "replicas" not in spec
    # As stored: the CRD's defaults (variantCost) are the API server's, not drift.
    assert spec["scaling"] == {"minReplicas": 1, "maxReplicas": 3,
                               "wva": {"keda": {}, "variantCost": "10.0"}}
    assert spec["prefill"]["replicas"] == 2
    assert spec["prefill"]["template"]["containers"][0]["image"] == RUNTIME_IMAGE
    assert deployment.gpus_reserved == 3 + 2
    assert cluster_free_gpus(llm_cluster)[GPU] == 8 - 5
    assert services.deployment_reconcile(deployment.pk) == "in sync"

    services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=2,
                              max_replicas=2, prefill_replicas=0)
    services.deployment_drive(deployment.pk)
    spec = kube.llm(deployment.namespace, deployment.resource_name)["spec"]
    assert spec["replicas"] == 2 and "scaling" not in spec and "prefill" not in spec
    deployment.refresh_from_db()
    assert deployment.autoscaler == "keda" and deployment.gpus_reserved == 2

    with pytest.raises(ValidationError, match="Choose HPA or KEDA"):
        services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=1,
                                  max_replicas=4, autoscaler="")


@pytest.mark.parametrize("problem", ["quota", "capacity", "jurisdiction", "unverified",
                                     "tenant-jurisdiction", "not-served", "multi-node-prefill"])
def test_refusals_apply_nothing_and_are_audited(problem, msp_admin, llm_cluster, version,
                                                preset, gpu_tenant, kube, settings):
    overrides, audited = {}, True
    if problem == "quota":
        overrides = {"max_replicas": 3, "min_replicas": 3, "prefill_replicas": 2}  # 5 > 4
    elif problem == "capacity":
        gpu_tenant.max_gpus = 100
        gpu_tenant.save()
        overrides = {"max_replicas": 9, "min_replicas": 9}
    elif problem == "jurisdiction":
        settings.ALLOWED_JURISDICTIONS = ["FR"]
    elif problem == "unverified":
        version.signature = "AAAA" + version.signature[4:]
        version.save()
    elif problem == "tenant-jurisdiction":
        gpu_tenant.jurisdiction = "FR"
        gpu_tenant.save()
    elif problem == "not-served":
        llm_cluster.llm_inference_service = False
        llm_cluster.save()
        audited = False
    elif problem == "multi-node-prefill":
        preset = services.llm_preset_create(actor=msp_admin, **preset_fields(
            name="pp2", pipeline_parallel=2))
        overrides = {"prefill_replicas": 1, "min_replicas": 1, "max_replicas": 1}
        audited = False
    with pytest.raises(ValidationError) as refused:
        services.kserve_deployment_create(actor=msp_admin, deployment=build(
            llm_cluster, version, preset, gpu_tenant, **overrides))
    message = " ".join(refused.value.messages)
    assert {"quota": "GPU quota is 4", "capacity": "only 8 free",
            "jurisdiction": "outside the allowed jurisdictions", "unverified": "signature",
            "tenant-jurisdiction": "must stay in FR",
            "not-served": "did not serve LLMInferenceService",
            "multi-node-prefill": "single-node preset"}[problem] in message
    assert not Deployment.objects.exists()
    assert kube.count("POST", "/serving.kserve.io/") == 0
    assert AuditEvent.objects.filter(action="deployment.refused").count() == int(audited)


def test_names_another_deployment_uses_are_refused(msp_admin, llm_cluster, version, preset,
                                                   kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset, name="llama"))
    v2 = published_version(version.model, version="2.0")
    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=10)
    with pytest.raises(ValidationError, match="models-shared/llama-v-2-0 is an "
                                              "LLMInferenceService of llama"):
        services.kserve_deployment_create(actor=msp_admin, deployment=build(
            llm_cluster, version, preset, name="llama-v-2-0"))


def test_the_namespace_admits_its_own_pods_and_counts_the_scheduler(
        msp_admin, llm_cluster, version, preset, gpu_tenant, kube):
    from deployments.namespaces import peak_requests

    policy = ("/apis/networking.k8s.io/v1/namespaces/tenant-acme/networkpolicies/"
              "default-deny-ingress")
    services.tenant_namespace_ensure(cluster=llm_cluster, tenant=gpu_tenant)
    gateway_only = [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "istio-system"}}}]
    assert kube.get(policy)["spec"]["ingress"] == [{"from": gateway_only}]
    deployment = deploy(msp_admin, llm_cluster, version, preset, gpu_tenant, min_replicas=1,
                        max_replicas=1)
    # llm-d's scheduler scrapes the model servers, prefill hands KV caches to decode.
    assert kube.get(policy)["spec"]["ingress"] == [{"from": gateway_only +
                                                    [{"podSelector": {}}]}]
    assert deployment.scheduler_pods == 1
    assert peak_requests(deployment)["pods"] == 1 + 1
    assert kube.llm_config("tenant-acme", preset.name)  # the preset lives beside it


# --- stop, start, delete, reconcile -------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_stop_start_and_delete(msp_admin, llm_cluster, version, preset, kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset))
    other = settle(kube, deploy(msp_admin, llm_cluster, version, preset, name="second"))
    ns = deployment.namespace

    services.deployment_stop(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.STOPPED
    assert annotations(kube.llm(ns, deployment.resource_name))["serving.kserve.io/stop"] == \
        "true"
    routes, _ = _load_routes_and_tenants()
    assert [u.model_name for u in routes[version.model.slug].upstreams] == ["second"]

    deployment.refresh_from_db()
    services.deployment_start(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    assert "serving.kserve.io/stop" not in annotations(kube.llm(ns, deployment.resource_name))

    # The preset stays while another deployment in the namespace uses it.
    deployment.refresh_from_db()
    services.deployment_delete(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.DELETED
    assert kube.llm(ns, deployment.resource_name) is None
    assert kube.llm_config(ns, preset.name) is not None
    services.deployment_delete(actor=msp_admin, deployment=other)
    assert services.deployment_drive(other.pk) == S.DELETED
    assert kube.llm_members(ns) == [] and kube.llm_config(ns, preset.name) is None


def test_reconcile_repairs_edits_strays_and_deletions(msp_admin, llm_cluster, version, preset,
                                                      kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset))
    ns, name = deployment.namespace, deployment.resource_name
    assert services.deployment_reconcile(deployment.pk) == "in sync"

    path = kube.llm_path(ns, name)
    edited = kube.get(path)
    edited["spec"]["replicas"] = 7
    kube.put(path, edited)
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert kube.get(path)["spec"]["replicas"] == 2

    deployment = settle(kube, deployment)
    stray = kube.get(path)
    stray["metadata"] = {**stray["metadata"], "name": f"{name}-extra"}
    kube.put(kube.llm_path(ns, f"{name}-extra"), stray)
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert kube.llm(ns, f"{name}-extra") is None

    deployment = settle(kube, deployment)
    kube.remove(path)
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert kube.get(path)
    assert AuditEvent.objects.filter(action="deployment.drift_repaired").count() == 3
