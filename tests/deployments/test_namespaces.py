"""Tenant namespaces: created, left alone when in sync, repaired after drift."""

from deployments import services
from tests.deployments.test_kserve_lifecycle import deploy

NS = "/api/v1/namespaces/tenant-acme"
QUOTA = f"{NS}/resourcequotas/portal-quota"
POLICY = "/apis/networking.k8s.io/v1/namespaces/tenant-acme/networkpolicies/default-deny-ingress"
BINDING = "/apis/rbac.authorization.k8s.io/v1/namespaces/tenant-acme/rolebindings/tenant-viewers"


def test_tenant_namespace_objects_are_created(cluster, gpu_tenant, kube):
    record = services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    assert record.ok and record.name == "tenant-acme"
    namespace = kube.get(NS)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert namespace["metadata"]["labels"]["portal.sovereign.eu/tenant"] == "acme"
    assert kube.get(QUOTA)["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"
    assert set(kube.get(QUOTA)["spec"]["hard"]) == {"requests.nvidia.com/gpu", "requests.cpu",
                                                    "requests.memory", "pods"}
    assert kube.get(f"{NS}/limitranges/portal-defaults")["spec"]["limits"][0]["type"] == \
        "Container"
    policy = kube.get(POLICY)["spec"]
    assert policy["policyTypes"] == ["Ingress"] and policy["podSelector"] == {}
    assert policy["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "istio-system"}}}]}]
    assert kube.get(BINDING)["subjects"][0]["name"] == "portal:tenant:acme"


def test_rerun_is_idempotent_and_repairs_drift(cluster, gpu_tenant, kube):
    services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    writes = kube.count("POST") + kube.count("PUT")
    record = services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    assert record.message == "in sync"
    assert kube.count("POST") + kube.count("PUT") == writes

    quota = kube.get(QUOTA)
    quota["spec"]["hard"]["requests.nvidia.com/gpu"] = "64"
    kube.put(QUOTA, quota)
    kube.remove(POLICY)
    namespace = kube.get(NS)
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
    kube.put(NS, namespace)

    record = services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    assert "ResourceQuota repaired" in record.message
    assert "NetworkPolicy created" in record.message
    assert "Namespace repaired" in record.message
    assert kube.get(QUOTA)["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"
    labels = kube.get(NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_quota_follows_the_tenant_gpu_quota(cluster, gpu_tenant, kube):
    services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    gpu_tenant.max_gpus = 2
    gpu_tenant.save()
    services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    assert kube.get(QUOTA)["spec"]["hard"]["requests.nvidia.com/gpu"] == "2"


def test_a_dedicated_deployment_lands_in_the_tenant_namespace(msp_admin, cluster, version,
                                                              gpu_tenant, kube):
    deployment = deploy(msp_admin, cluster, version, tenant=gpu_tenant)
    assert deployment.namespace == "tenant-acme"
    assert kube.get(NS) and kube.isvc("tenant-acme", deployment.resource_name)
    labels = kube.isvc("tenant-acme", deployment.resource_name)["metadata"]["labels"]
    assert labels["portal.sovereign.eu/tenant"] == "acme"


def test_unreachable_cluster_is_recorded_on_the_namespace(cluster, gpu_tenant, kube):
    kube.fail_next(3)
    record = services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    assert record.ok is False and "after 3 attempts" in record.message


def test_shared_deployments_get_the_shared_namespace(msp_admin, cluster, version, kube):
    deploy(msp_admin, cluster, version)
    assert kube.get("/api/v1/namespaces/models-shared")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "baseline"


def test_with_knative_in_use_its_system_namespace_is_admitted_too(msp_admin, cluster,
                                                                  gpu_tenant, version, kube):
    deploy(msp_admin, cluster, version, tenant=gpu_tenant, mode="Knative",
           scale_metric="concurrency", gpu_count=0, gpu_product="")
    admitted = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for peer in kube.get(POLICY)["spec"]["ingress"][0]["from"]]
    assert admitted == ["istio-system", "knative-serving"]


def test_cpu_memory_and_pods_beyond_the_namespace_quota_are_refused_first(
        msp_admin, cluster, gpu_tenant, version, kube):
    """The namespace quota (per GPU of the tenant: 9 CPU, 68Gi, 4 pods) is checked before
    anything is applied, sidecars included, so Kubernetes never refuses the pods later."""
    import pytest
    from django.core.exceptions import ValidationError

    from deployments.models import Deployment
    from tests.deployments.test_kserve_lifecycle import build

    gpu_tenant.max_gpus = 1
    gpu_tenant.save()
    # The wizard's default shape (1 GPU, 8 CPU, 64Gi per replica) fits a 1-GPU tenant.
    deploy(msp_admin, cluster, version, tenant=gpu_tenant, max_replicas=1)
    quota = kube.get(QUOTA)["spec"]["hard"]
    assert (quota["requests.cpu"], quota["requests.memory"], quota["pods"]) == ("9", "68Gi",
                                                                                "4")
    with pytest.raises(ValidationError) as refused:
        services.kserve_deployment_create(actor=msp_admin, deployment=build(
            cluster, version, gpu_tenant, name="cpu-heavy", gpu_count=0, gpu_product="",
            cpu="4", memory="1Gi", max_replicas=1))
    assert "allows 9 cores of CPU" in str(refused.value)
    assert Deployment.objects.count() == 1


def test_conflicts_are_read_again_and_an_immutable_role_ref_is_replaced(cluster, gpu_tenant,
                                                                         kube):
    services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    binding = kube.get(BINDING)
    binding["roleRef"]["name"] = "edit"  # someone granted more: roleRef can't be edited back
    kube.put(BINDING, binding)
    kube.fail_next(1, status=409)  # and another writer got in the way once
    record = services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    assert record.ok, record.message
    assert "RoleBinding replaced" in record.message
    assert kube.get(BINDING)["roleRef"]["name"] == "view"
    assert kube.count("DELETE", "rolebindings/tenant-viewers") == 1
