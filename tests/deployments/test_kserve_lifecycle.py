"""The KServe backend and the deployment state machine, over real HTTP to the emulator."""


import pytest
import redis
from django.conf import settings
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from deployments import namespaces, services
from deployments.models import Deployment, DeploymentStatus
from gateway.directory import _load_routes_and_tenants
from portal.gateway_config import CONFIG_VERSION_KEY
from tests.deployments.conftest import GPU
from tests.factories import published_version

S = DeploymentStatus


def build(cluster, version, tenant=None, **overrides):
    fields = dict(version=version, cluster=cluster, tenant=tenant, runtime="kserve-vllmserver",
                  gpu_product=GPU, gpu_count=1, cpu="8", memory="64Gi", min_replicas=1,
                  max_replicas=2, scale_metric="cpu", scale_target=70,
                  extra_args={"--max-model-len": "8192", "--enable-prefix-caching": True})
    fields.update(overrides)
    return services.kserve_deployment_build(**fields)


def deploy(actor, cluster, version, tenant=None, **overrides):
    deployment = services.kserve_deployment_create(
        actor=actor, deployment=build(cluster, version, tenant, **overrides))
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    deployment.refresh_from_db()
    return deployment


def become_ready(kube, deployment):
    kube.set_isvc_status(deployment.namespace, deployment.resource_name, ready=True)
    assert services.deployment_follow(deployment.pk) == S.READY
    deployment.refresh_from_db()
    return deployment


def test_deploy_applies_an_inference_service_pinned_by_digest(msp_admin, cluster, version,
                                                              kube):
    deployment = deploy(msp_admin, cluster, version)
    isvc = kube.isvc("models-shared", deployment.resource_name)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 1 and predictor["maxReplicas"] == 2
    assert predictor["scaleMetric"] == "cpu" and predictor["scaleTarget"] == 70
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": GPU}
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "vLLM"}
    assert model["runtime"] == "kserve-vllmserver"
    assert model["storageUri"] == (f"oci://registry.example.test/{version.trusted_repository}"
                                   f"@{version.manifest_digest}")
    assert model["storageUri"].split("@")[1].startswith("sha256:")
    assert model["args"] == ["--max-model-len=8192", "--enable-prefix-caching"]
    assert model["resources"]["limits"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"}
    assert model["resources"]["requests"] == model["resources"]["limits"]
    assert "canary" not in isvc["spec"]
    assert deployment.status == S.PROGRESSING
    assert list(deployment.events.values_list("status", flat=True))[:2] == [
        S.PROGRESSING, S.APPLYING]


@pytest.mark.django_db(transaction=True)
def test_ready_records_the_openai_route_and_the_gateway_routes_there(msp_admin, cluster,
                                                                     version, kube):
    deployment = deploy(msp_admin, cluster, version)
    assert services.deployment_follow(deployment.pk) == S.PROGRESSING  # no status yet
    config = redis.Redis.from_url(settings.REDIS_URL)
    before = int(config.get(CONFIG_VERSION_KEY) or 0)
    deployment = become_ready(kube, deployment)
    assert int(config.get(CONFIG_VERSION_KEY)) == before + 1  # gateway workers reload
    # kserve-vllmserver runs vLLM's own OpenAI server: its API is under /v1.
    expected = f"http://{deployment.resource_name}.models-shared.example.test/v1"
    assert deployment.base_url == expected
    assert [c["type"] for c in deployment.conditions] == ["IngressReady", "PredictorReady",
                                                          "Ready"]
    assert deployment.observed["replicas"] == 1
    assert deployment.observed["traffic"][0]["percent"] == 100
    routes, _ = _load_routes_and_tenants()
    upstream = routes[version.model.slug].upstreams[0]
    assert upstream.url == expected
    assert upstream.model_name == deployment.resource_name
    assert AuditEvent.objects.filter(action="deployment.ready", target_id=str(deployment.pk)
                                     ).exists()


def test_huggingface_runtime_and_knative_mode(msp_admin, cluster, version, kube):
    deployment = deploy(msp_admin, cluster, version, runtime="kserve-huggingfaceserver",
                        mode="Knative", scale_metric="concurrency", scale_target=4)
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "huggingface"}
    assert isvc["spec"]["predictor"]["scaleMetric"] == "concurrency"


def test_injected_500s_and_timeouts_are_retried(msp_admin, cluster, version, kube):
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    namespaces.ensure(cluster, None)  # so the first request is the namespace read
    kube.fail_next(1, status=503)
    kube.hang_next(1, seconds=3)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    assert kube.count("GET", "/api/v1/namespaces/models-shared") == 1 + 3
    assert kube.isvc("models-shared", deployment.resource_name)


def test_a_409_is_resolved_by_reading_and_replacing(msp_admin, cluster, version, kube):
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    stale = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": {"name": deployment.resource_name, "namespace": "models-shared"},
             "spec": {"predictor": {"model": {"storageUri": "oci://elsewhere/x@sha256:0"}}}}
    kube.put(kube.isvc_path("models-shared", deployment.resource_name), stale)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    isvc = kube.isvc("models-shared", deployment.resource_name)
    assert isvc["spec"]["predictor"]["model"]["storageUri"].endswith(version.manifest_digest)
    assert kube.count("PUT", "/inferenceservices/") == 1
    assert "re-read and replaced" in deployment.events.first().message


def test_unreachable_cluster_fails_with_a_reason_and_retry_works(msp_admin, cluster, version,
                                                                  kube):
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    kube.fail_next(3, status=500)
    assert services.deployment_drive(deployment.pk) == S.FAILED
    deployment.refresh_from_db()
    assert "after 3 attempts" in deployment.status_reason
    assert kube.isvc("models-shared", deployment.resource_name) is None

    services.deployment_retry(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    assert kube.isvc("models-shared", deployment.resource_name)


def test_a_cluster_that_refuses_connections_fails_the_deployment(msp_admin, cluster, version,
                                                                  kube):
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    kube.stop()
    assert services.deployment_drive(deployment.pk) == S.FAILED
    deployment.refresh_from_db()
    assert "connection refused" in deployment.status_reason


def test_failed_conditions_keep_progressing_until_the_timeout(msp_admin, cluster, version, kube,
                                                              settings):
    deployment = deploy(msp_admin, cluster, version)
    kube.set_isvc_status(deployment.namespace, deployment.resource_name, ready=False,
                         reason="ImagePullBackOff")
    assert services.deployment_follow(deployment.pk) == S.PROGRESSING
    Deployment.objects.filter(pk=deployment.pk).update(
        status_changed_at=deployment.status_changed_at.replace(year=2020))
    assert services.deployment_follow(deployment.pk) == S.FAILED
    deployment.refresh_from_db()
    assert "ImagePullBackOff" in deployment.status_reason


@pytest.mark.parametrize("problem", ["quota", "capacity", "jurisdiction", "unverified",
                                     "tenant-jurisdiction"])
def test_refusals_apply_nothing_and_are_audited(problem, msp_admin, cluster, version, kube,
                                                gpu_tenant, settings):
    overrides = {}
    if problem == "quota":
        overrides = {"gpu_count": 2, "max_replicas": 3}  # 6 GPUs, quota 4
    elif problem == "capacity":
        overrides = {"gpu_product": "NVIDIA-L4", "gpu_count": 2, "max_replicas": 3}
        gpu_tenant.max_gpus = 100
        gpu_tenant.save()
    elif problem == "jurisdiction":
        settings.ALLOWED_JURISDICTIONS = ["FR"]
    elif problem == "unverified":
        version.signature = "AAAA" + version.signature[4:]
        version.save()
    elif problem == "tenant-jurisdiction":
        gpu_tenant.jurisdiction = "FR"
        gpu_tenant.save()
    with pytest.raises(ValidationError) as refused:
        services.kserve_deployment_create(actor=msp_admin, deployment=build(
            cluster, version, gpu_tenant, **overrides))
    message = " ".join(refused.value.messages)
    assert {"quota": "GPU quota is 4", "capacity": "only 4 free",
            "jurisdiction": "outside the allowed jurisdictions",
            "unverified": "signature", "tenant-jurisdiction": "must stay in FR"}[problem] \
        in message
    assert not Deployment.objects.exists()
    assert kube.count("POST") == 0
    assert AuditEvent.objects.filter(action="deployment.refused").count() == 1


def test_eu_policy_admits_member_state_clusters(settings):
    settings.ALLOWED_JURISDICTIONS = ["EU"]
    assert services.jurisdiction_allowed("DE") and services.jurisdiction_allowed("FR-IDF")
    assert not services.jurisdiction_allowed("US")
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    assert services.jurisdiction_allowed("DE-BY") and not services.jurisdiction_allowed("EU")


def test_free_capacity_counts_peak_gpus_of_active_deployments(msp_admin, cluster, version):
    from deployments.selectors import cluster_free_gpus, gpu_allocation

    deploy(msp_admin, cluster, version, gpu_count=2, max_replicas=3)
    assert cluster_free_gpus(cluster)[GPU] == 2
    assert gpu_allocation() == [{"cluster": "fra-gpu-1", "tenant": "shared", "gpu_product": GPU,
                                 "gpus": 6, "deployments": 1}]


def _predictor_uri(isvc):
    return isvc["spec"]["predictor"]["model"]["storageUri"]


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_canary_promote_and_rollback_manifests(mode, msp_admin, cluster, version, kube):
    metric = {"Standard": "cpu", "Knative": "concurrency"}[mode]
    deployment = become_ready(kube, deploy(msp_admin, cluster, version, mode=mode,
                                           scale_metric=metric))
    v2 = published_version(version.model, version="2.0")

    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=10)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    if mode == "Knative":
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
        assert _predictor_uri(isvc).endswith(v2.manifest_digest)
        assert "canary" not in isvc["spec"]
    else:
        assert _predictor_uri(isvc).endswith(version.manifest_digest)
        [canary] = isvc["spec"]["canary"]
        assert canary["trafficPercent"] == 10
        # KServe merges the canary predictor over the stable one and refuses autoscaling
        # fields on it; its name makes the Deployment `<isvc>-v-2-0-predictor`.
        assert canary["predictor"]["name"] == "v-2-0"
        assert set(canary["predictor"]) == {"name", "model"}
        assert canary["predictor"]["model"]["storageUri"].endswith(v2.manifest_digest)
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
        assert "name" not in isvc["spec"]["predictor"]

    # Roll the canary back: the manifest is the stable one again.
    deployment = become_ready(kube, deployment)
    if mode == "Standard":
        assert deployment.observed["canaries"] == [{"name": "v-2-0", "ready": True,
                                                    "trafficPercent": 10}]
        assert "CanaryPredictorReady" in [c["type"] for c in deployment.conditions]
    services.deployment_rollback(actor=msp_admin, deployment=deployment)
    services.deployment_drive(deployment.pk)
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert _predictor_uri(isvc).endswith(version.manifest_digest)
    assert "canary" not in isvc["spec"] and "canaryTrafficPercent" not in isvc["spec"][
        "predictor"]

    # Canary again, then promote: v2 takes all traffic; rollback returns to 1.0.
    deployment = become_ready(kube, deployment)
    services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2,
                                       canary_traffic_percent=25)
    services.deployment_drive(deployment.pk)
    deployment = become_ready(kube, deployment)
    services.deployment_promote(actor=msp_admin, deployment=deployment)
    services.deployment_drive(deployment.pk)
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert _predictor_uri(isvc).endswith(v2.manifest_digest)
    assert "canary" not in isvc["spec"] and "canaryTrafficPercent" not in isvc["spec"][
        "predictor"]
    assert isvc["metadata"]["annotations"]["portal.sovereign.eu/model-version"] == "2.0"
    if mode == "Standard":
        # Promotion as KServe documents it: the stable predictor takes the canary's name,
        # so the canary's pods carry on as the stable ones.
        assert isvc["spec"]["predictor"]["name"] == "v-2-0"
    deployment = become_ready(kube, deployment)
    services.deployment_rollback(actor=msp_admin, deployment=deployment)
    services.deployment_drive(deployment.pk)
    assert _predictor_uri(kube.isvc(deployment.namespace, deployment.resource_name)).endswith(
        version.manifest_digest)
    actions = set(AuditEvent.objects.filter(target_id=str(deployment.pk)).values_list(
        "action", flat=True))
    assert {"deployment.canary_started", "deployment.promoted",
            "deployment.rolled_back"} <= actions


def test_an_update_to_an_unverified_version_is_refused(msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    v2 = published_version(version.model, version="2.0")
    v2.signature = ""
    v2.save()
    with pytest.raises(ValidationError, match="not signed"):
        services.deployment_update_version(actor=msp_admin, deployment=deployment, version=v2)
    deployment.refresh_from_db()
    assert deployment.status == S.READY and deployment.version == version


def test_scale_changes_replicas(msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=2,
                              max_replicas=4, scale_metric="cpu", scale_target=60)
    services.deployment_drive(deployment.pk)
    predictor = kube.isvc(deployment.namespace, deployment.resource_name)["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == (
        2, 4, 60)


@pytest.mark.django_db(transaction=True)
def test_stop_start_and_delete(msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    services.deployment_stop(actor=msp_admin, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.status == S.STOPPING
    assert services.deployment_drive(deployment.pk) == S.STOPPED
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
    routes, _ = _load_routes_and_tenants()
    assert routes[version.model.slug].upstreams == []

    deployment.refresh_from_db()
    services.deployment_start(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert "serving.kserve.io/stop" not in isvc["metadata"]["annotations"]

    deployment.refresh_from_db()
    services.deployment_delete(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.DELETED
    assert kube.isvc(deployment.namespace, deployment.resource_name) is None


def test_reconcile_recreates_a_deleted_inference_service_and_repairs_edits(msp_admin, cluster,
                                                                           version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    # KServe's defaulting webhook added fields the portal never sent: that is not drift.
    live = kube.isvc(deployment.namespace, deployment.resource_name)
    assert live["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert services.deployment_reconcile(deployment.pk) == "in sync"

    kube.remove(kube.isvc_path(deployment.namespace, deployment.resource_name))
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert kube.isvc(deployment.namespace, deployment.resource_name)
    deployment.refresh_from_db()
    assert deployment.status == S.PROGRESSING

    deployment = become_ready(kube, deployment)
    path = kube.isvc_path(deployment.namespace, deployment.resource_name)
    edited = kube.get(path)
    edited["spec"]["predictor"]["maxReplicas"] = 9
    kube.put(path, edited)
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert kube.get(path)["spec"]["predictor"]["maxReplicas"] == 2
    assert AuditEvent.objects.filter(action="deployment.drift_repaired").count() == 2

    # A canary someone left behind (the portal has none) is drift as well.
    deployment = become_ready(kube, deployment)
    edited = kube.get(path)
    edited["spec"]["canary"] = [{"predictor": {"name": "v-x", "model": edited["spec"][
        "predictor"]["model"]}, "trafficPercent": 50}]
    kube.put(path, edited)
    assert services.deployment_reconcile(deployment.pk) == "repaired"
    assert "canary" not in kube.get(path)["spec"]


def test_retry_resumes_a_failed_stop_or_delete_and_changes_to_a_stopped_one_settle(
        msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    services.deployment_stop(actor=msp_admin, deployment=deployment)
    kube.fail_next(10)
    assert services.deployment_drive(deployment.pk) == S.FAILED
    kube.faults.clear()
    deployment.refresh_from_db()
    services.deployment_retry(actor=msp_admin, deployment=deployment)
    assert services.deployment_drive(deployment.pk) == S.STOPPED
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"

    # Scaling a stopped deployment applies the change and it stays stopped.
    deployment.refresh_from_db()
    services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=1,
                              max_replicas=3, scale_metric="cpu", scale_target=60)
    assert services.deployment_drive(deployment.pk) == S.STOPPED
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert isvc["spec"]["predictor"]["maxReplicas"] == 3

    # A failed delete, retried, deletes — it does not bring the InferenceService back.
    deployment.refresh_from_db()
    services.deployment_delete(actor=msp_admin, deployment=deployment)
    kube.fail_next(10)
    assert services.deployment_drive(deployment.pk) == S.FAILED
    kube.faults.clear()
    deployment.refresh_from_db()
    services.deployment_retry(actor=msp_admin, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.status == S.DELETING
    assert services.deployment_drive(deployment.pk) == S.DELETED
    assert kube.isvc(deployment.namespace, deployment.resource_name) is None


def test_kserve_names_and_targets_are_refused_before_anything_is_applied(msp_admin, cluster,
                                                                          version):
    from deployments.models import ISVC_NAME_MAX

    built = build(cluster, version, name="9lives")
    assert built.resource_name == "m-9lives"
    assert len(build(cluster, version, name="x" * 80).resource_name) == ISVC_NAME_MAX
    with pytest.raises(ValidationError) as refused:
        services.kserve_deployment_create(actor=msp_admin, deployment=build(
            cluster, version, scale_metric="cpu", scale_target=4096))
    assert "1 to 100" in str(refused.value)
    assert not Deployment.objects.exists()


def test_a_retired_model_is_not_deployed(msp_admin, cluster, version):
    from deployments.selectors import deployable_versions
    from models_catalog.models import ModelLifecycle

    assert version in deployable_versions()
    version.model.lifecycle = ModelLifecycle.RETIRED
    version.model.save()
    assert version not in deployable_versions()  # the wizard does not offer it
    with pytest.raises(ValidationError, match="retired"):
        services.kserve_deployment_create(actor=msp_admin, deployment=build(cluster, version))


def test_stale_applying_deployments_are_failed(msp_admin, cluster, version):
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    Deployment.objects.filter(pk=deployment.pk).update(
        status=S.APPLYING, status_changed_at=deployment.status_changed_at.replace(year=2020))
    assert services.deployments_fail_stale() == 1
    deployment.refresh_from_db()
    assert deployment.status == S.FAILED and "retry" in deployment.status_reason


def test_reconcile_of_an_unreachable_cluster_notes_it_once(msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    events = deployment.events.count()
    kube.fail_next(6, status=503)
    assert services.deployment_reconcile(deployment.pk) == "unreachable"
    assert services.deployment_reconcile(deployment.pk) == "unreachable"
    assert deployment.events.count() == events + 1
    deployment.refresh_from_db()
    assert deployment.status == S.READY  # a blip of the API server doesn't unroute it
