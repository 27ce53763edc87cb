from __future__ import annotations

from collections import defaultdict

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from deployments.models import (
    ACTIVE_STATUSES,
    CLUSTER_BACKENDS,
    Backend,
    Cluster,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    LLMServicePreset,
    TenantNamespace,
)
from models_catalog.models import Model, ModelVersion
from models_catalog.selectors import model_list_for_tenant, versions_deployable
from tenants.models import Tenant


def served_models_for_tenant(*, tenant: Tenant, task: str | None = None) -> QuerySet[Model]:
    """Entitled models with at least one ready deployment this tenant may use."""
    ready = Deployment.objects.filter(status=DeploymentStatus.READY).filter(
        Q(tenant__isnull=True) | Q(tenant=tenant))
    models = model_list_for_tenant(tenant=tenant).filter(
        pk__in=ready.values("model_id"))
    return models.filter(task=task) if task else models


def cluster_list() -> QuerySet[Cluster]:
    """Clusters in service: a deleted (archived) cluster is gone from every list and choice."""
    return Cluster.objects.in_service()


def cluster_get(pk: int) -> Cluster:
    return get_object_or_404(cluster_list(), pk=pk)


def cluster_modelpack_problem(cluster: Cluster) -> str | None:
    """Why `cluster` can't mount CNCF ModelPack artifacts (KServe's `oci+native://`, an image
    volume), from its last check; None when it can."""
    if cluster.native_oci_models is True:
        return None
    if cluster.native_oci_models is False:
        return cluster.native_oci_detail or "the check found no support."
    return "the cluster has not been checked for it yet."


def deployment_list_for_gateway() -> QuerySet[Deployment]:
    """The deployments that serve requests (ready), with what the gateway sends them: base URL,
    served model name, the upstream key (encrypted) and the owning tenant, if dedicated. One
    query."""
    return (Deployment.objects.filter(status=DeploymentStatus.READY).select_related("model")
            .only("pk", "name", "tenant_id", "model_id", "model__slug", "base_url",
                  "upstream_model", "upstream_api_key_encrypted"))


def _holding_gpus(cluster: Cluster | None = None) -> QuerySet[Deployment]:
    qs = Deployment.objects.filter(backend__in=CLUSTER_BACKENDS, status__in=ACTIVE_STATUSES,
                                   gpu_count__gt=0)
    return qs.filter(cluster=cluster) if cluster else qs


def cluster_free_gpus(cluster: Cluster, *, exclude: Deployment | None = None) -> dict[str, int]:
    """Configured capacity minus the peak GPUs of active deployments, per product."""
    free = defaultdict(int, cluster.gpu_capacity)
    held = _holding_gpus(cluster)
    if exclude is not None and exclude.pk:
        held = held.exclude(pk=exclude.pk)
    for deployment in held:
        free[deployment.gpu_product] -= deployment.gpus_reserved
    return dict(free)


def tenant_gpus_reserved(tenant: Tenant, *, exclude: Deployment | None = None) -> int:
    held = _holding_gpus().filter(tenant=tenant)
    if exclude is not None and exclude.pk:
        held = held.exclude(pk=exclude.pk)
    return sum(d.gpus_reserved for d in held)


def gpu_allocation() -> list[dict]:
    """GPUs held per cluster and tenant ("shared" for platform deployments), for dashboards."""
    rows: dict[tuple, dict] = {}
    for d in _holding_gpus().select_related("cluster", "tenant"):
        key = (d.cluster.name, d.tenant.slug if d.tenant else "shared", d.gpu_product)
        row = rows.setdefault(key, {"cluster": key[0], "tenant": key[1], "gpu_product": key[2],
                                    "gpus": 0, "deployments": 0})
        row["gpus"] += d.gpus_reserved
        row["deployments"] += 1
    return sorted(rows.values(), key=lambda r: (r["cluster"], r["tenant"], r["gpu_product"]))


def deployment_list(*, status: str = "", cluster: str = "") -> QuerySet[Deployment]:
    qs = Deployment.objects.select_related("model", "tenant", "cluster", "version",
                                           "canary_version", "llm_preset")
    if status:
        qs = qs.filter(status=status)
    else:
        qs = qs.exclude(status=DeploymentStatus.DELETED)
    if cluster:
        qs = qs.filter(cluster__name=cluster)
    return qs


def cluster_deployment_list(*, cluster: Cluster) -> QuerySet[Deployment]:
    """The cluster's deployments that still exist."""
    return deployment_list().filter(cluster=cluster)


def cluster_deleted_deployment_count(*, cluster: Cluster) -> int:
    """Deleted deployments of the cluster, whose history is kept."""
    return Deployment.objects.filter(cluster=cluster, status=DeploymentStatus.DELETED).count()


def cluster_namespace_list(*, cluster: Cluster) -> QuerySet[TenantNamespace]:
    """The tenant namespaces on the cluster, as last synced."""
    return cluster.namespaces.select_related("tenant").order_by("name")


def tenant_dedicated_deployments(*, tenant: Tenant) -> QuerySet[Deployment]:
    """The tenant's own deployments that still exist, for its read-only page."""
    return (Deployment.objects.filter(tenant=tenant).exclude(status=DeploymentStatus.DELETED)
            .select_related("model", "version").order_by("model__slug", "created_at"))


def tenant_shared_deployments(*, tenant: Tenant) -> QuerySet[Deployment]:
    """Shared deployments of the models the tenant is entitled to."""
    return (Deployment.objects.filter(tenant__isnull=True,
                                      model__in=model_list_for_tenant(tenant=tenant))
            .exclude(status=DeploymentStatus.DELETED).select_related("model")
            .order_by("model__slug", "created_at"))


def deployment_get(pk: int) -> Deployment:
    return get_object_or_404(
        Deployment.objects.select_related("model", "tenant", "cluster", "version",
                                          "canary_version", "previous_version", "llm_preset"),
        pk=pk)


def deployment_event_list(*, deployment: Deployment, limit: int = 50) -> list[DeploymentEvent]:
    """The deployment's latest events, newest first."""
    return list(deployment.events.all()[:limit])


def external_endpoint_get(pk: int) -> Deployment:
    """A registered (not unregistered) external endpoint, else 404 — pages and API alike."""
    return get_object_or_404(
        Deployment.objects.select_related("model", "tenant").filter(
            backend=Backend.EXTERNAL).exclude(status=DeploymentStatus.DELETED), pk=pk)


def deployable_versions(model: Model | None = None) -> QuerySet[ModelVersion]:
    """What the deploy wizard offers: the catalog's deployable versions (published, serving,
    signature verified); the chosen one is checked for real again before every apply."""
    return versions_deployable(model=model)


def llm_preset_list() -> QuerySet[LLMServicePreset]:
    """Presets in service, with how many deployments that still exist use each."""
    from django.db.models import Count

    return LLMServicePreset.objects.in_service().annotate(
        in_use=Count("deployments", filter=~Q(deployments__status=DeploymentStatus.DELETED)))


def llm_preset_get(pk: int) -> LLMServicePreset:
    return get_object_or_404(llm_preset_list(), pk=pk)


def llm_preset_deployments(preset: LLMServicePreset) -> QuerySet[Deployment]:
    return deployment_list().filter(llm_preset=preset)


def llm_clusters() -> QuerySet[Cluster]:
    """Clusters whose last check found LLMInferenceService served."""
    return cluster_list().filter(llm_inference_service=True)


def provenance_downstream(versions: list[ModelVersion]):
    """For a provenance query (registered with the catalog): the deployments, not deleted,
    that run any of `versions` (as the main or the canary version), and the tenants they
    serve — a dedicated deployment its tenant, a shared one every tenant entitled to its
    model."""
    from models_catalog.selectors import Downstream

    ids = {v.pk for v in versions}
    if not ids:
        return Downstream()
    deployments = (Deployment.objects.exclude(status=DeploymentStatus.DELETED)
                   .filter(Q(version_id__in=ids) | Q(canary_version_id__in=ids))
                   .select_related("model", "tenant", "cluster", "version", "canary_version")
                   .order_by("model__slug", "name"))
    answer = Downstream()
    all_tenants = None
    for deployment in deployments:
        runs = [str(v) for v in (deployment.version, deployment.canary_version)
                if v is not None and v.pk in ids]
        answer.deployments.append({
            "id": deployment.pk, "name": deployment.name, "model": deployment.model.slug,
            "versions": runs, "status": deployment.status,
            "cluster": deployment.cluster.name if deployment.cluster else "",
            "namespace": deployment.namespace,
            "tenant": deployment.tenant.slug if deployment.tenant else ""})
        if deployment.tenant is not None:
            served = [deployment.tenant]
            why = f"dedicated deployment {deployment.name} runs {', '.join(runs)}"
        else:
            if deployment.model.available_to_all_tenants:
                if all_tenants is None:
                    all_tenants = list(Tenant.objects.order_by("slug"))
                served = all_tenants
            else:
                served = list(deployment.model.entitled_tenants.order_by("slug"))
            why = (f"shared deployment {deployment.name} runs {', '.join(runs)}, and the tenant "
                   f"is entitled to {deployment.model.slug}")
        answer.tenants += [{"slug": t.slug, "name": t.name, "status": t.status, "via": [why]}
                           for t in served]
    return answer


def deployment_ids_serving_version(*, version_id: int) -> list[int]:
    """Deployments that serve or served (as its canary, or before an update) a model version:
    what usage records name, for telling a deprecated version's users."""
    return list(Deployment.objects.filter(
        Q(version_id=version_id) | Q(canary_version_id=version_id)
        | Q(previous_version_id=version_id)).values_list("pk", flat=True))
