"""Deployments: admission — every check a deployment must pass before anything is applied
(published and verified version, packaging the cluster can serve, residency, GPUs free on the
cluster and within the tenant's quota, the namespace's quota), the names it gets, and the GPU
booking that the state machine takes when it saves one. A refusal is audited, then raised."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

import audit
from deployments import namespaces, selectors
from deployments.backends import backend_for
from deployments.models import (
    ACTIVE_STATUSES,
    CLUSTER_BACKENDS,
    ISVC_NAME_MAX,
    Backend,
    Cluster,
    Deployment,
    DeploymentStatus,
)
from deployments.services.clusters import (
    EU_MEMBERS,
    jurisdiction_allowed,
)
from models_catalog import services as catalog_services
from models_catalog.models import ModelLifecycle, ModelVersion
from models_catalog.selectors import registry_host
from portal.api import refusal
from tenants.models import Tenant

logger = logging.getLogger(__name__)

S = DeploymentStatus


def _refuse(*, actor, tenant, reason: str, field: str | None, details: dict) -> None:
    """Audit a refused deployment (in its own transaction, so it survives) and raise."""
    with transaction.atomic():
        audit.record(action="deployment.refused", actor=actor, tenant=tenant,
                     details={**details, "reason": reason})
    raise refusal({field: reason} if field else reason)


def _check_version(version: ModelVersion) -> str | None:
    if version.model.lifecycle == ModelLifecycle.RETIRED:
        return f"{version.model.slug} is retired: it serves nothing and can't be deployed."
    if not version.is_deployable:
        return (f"{version} is {version.get_status_display().lower()}: only published "
                "versions can be deployed.")
    verification = catalog_services.version_verify_for_deploy(version=version)
    if not verification.ok:
        return f"{version} failed signature verification: {verification.reason}."
    return None


def packaging_problem(version: ModelVersion, cluster: Cluster) -> str | None:
    """A ModelPack artifact is mounted by KServe as an image volume (`oci+native://`): only
    on a cluster whose last check found that possible."""
    why = selectors.cluster_modelpack_problem(cluster) if version.is_modelpack else None
    if why is None:
        return None
    return (f"{version} is a CNCF ModelPack artifact, which KServe mounts as an image volume "
            f"(oci+native://), and {cluster.name} can't do that: {why} Fix that and press "
            "Check connectivity on the cluster, choose a cluster that can, or deploy a "
            "ModelCar image of the model.")


def _gpu_problem(*, cluster: Cluster, tenant: Tenant | None, gpu_product: str,
                 gpus_needed: int, exclude: Deployment | None) -> tuple[str, str] | None:
    """(field, reason) when the GPUs are not there, else None."""
    if not gpus_needed:
        return None
    if gpu_product not in cluster.gpu_capacity:
        return "gpu_product", (f"{cluster.name} has no {gpu_product or 'GPU product chosen'}; "
                               f"it offers {', '.join(cluster.gpu_products) or 'no GPUs'}.")
    free = selectors.cluster_free_gpus(cluster, exclude=exclude).get(gpu_product, 0)
    if gpus_needed > free:
        return "gpu_count", (f"{gpus_needed} × {gpu_product} at peak, but {cluster.name} has "
                             f"only {free} free.")
    if tenant is not None:
        used = selectors.tenant_gpus_reserved(tenant, exclude=exclude)
        if used + gpus_needed > tenant.max_gpus:
            return "gpu_count", (f"{tenant.name}'s GPU quota is {tenant.max_gpus}; {used} are "
                                 f"in use and this needs {gpus_needed} at peak.")
    return None


def _check_gpus(*, actor, cluster: Cluster, tenant: Tenant | None, gpu_product: str,
                gpus_needed: int, exclude: Deployment | None, details: dict) -> None:
    problem = _gpu_problem(cluster=cluster, tenant=tenant, gpu_product=gpu_product,
                           gpus_needed=gpus_needed, exclude=exclude)
    if problem:
        _refuse(actor=actor, tenant=tenant, field=problem[0], reason=problem[1],
                details=details)


def _book_gpus(deployment: Deployment) -> None:
    """Inside the transaction that saves a deployment's new GPU peak: lock the cluster row so
    concurrent bookings take turns, and check again — two requests that each fit alone must
    not both be saved. (The audited refusal ran before; this catches only the race.)"""
    if not deployment.gpus_reserved:
        return
    Cluster.objects.select_for_update().filter(pk=deployment.cluster_id).first()
    problem = _gpu_problem(cluster=deployment.cluster, tenant=deployment.tenant,
                           gpu_product=deployment.gpu_product,
                           gpus_needed=deployment.gpus_reserved,
                           exclude=deployment if deployment.pk else None)
    if problem:
        raise refusal({problem[0]: problem[1] + " (booked meanwhile by another "
                                                "deployment)"})


def resource_name_for(version: ModelVersion, name: str) -> str:
    """The Kubernetes name of a deployment: the name given, else the model's slug."""
    resource_name = slugify(name or version.model.slug).replace("_", "-")
    if not resource_name[:1].isalpha():
        resource_name = f"m-{resource_name}"  # KServe wants a letter first
    return resource_name[:ISVC_NAME_MAX].strip("-") or "model"


def namespace_for(tenant: Tenant | None) -> str:
    return namespaces.namespace_name(tenant) if tenant else settings.DEPLOYMENTS_SHARED_NAMESPACE


def kserve_deployment_build(
    *, version: ModelVersion, cluster: Cluster, tenant: Tenant | None, runtime: str,
    gpu_product: str = "", gpu_count: int = 0, cpu: str = "", memory: str = "",
    min_replicas: int = 1, max_replicas: int = 1, scale_metric: str = "",
    scale_target: int | None = None, extra_args: dict | None = None, mode: str = "",
    name: str = "",
) -> Deployment:
    """An unsaved Deployment with its desired state: what the wizard previews as YAML."""
    resource_name = resource_name_for(version, name)
    namespace = namespace_for(tenant)
    return Deployment(
        model=version.model, tenant=tenant, name=resource_name, backend=Backend.KSERVE,
        cluster=cluster, version=version, mode=mode or cluster.default_mode,
        namespace=namespace, resource_name=resource_name, upstream_model=resource_name,
        runtime=runtime, gpu_product=gpu_product if gpu_count else "", gpu_count=gpu_count,
        cpu=cpu, memory=memory, min_replicas=min_replicas, max_replicas=max_replicas,
        scale_metric=scale_metric, scale_target=scale_target, extra_args=extra_args or {})


def kserve_deployment_validate(*, actor, deployment: Deployment) -> None:
    """Every refusal before anything is applied; refusals of policy are audited."""
    details = {"model": deployment.model.slug, "version": deployment.version.version,
               "cluster": deployment.cluster.name,
               "jurisdiction": deployment.cluster.jurisdiction,
               "scope": deployment.tenant.slug if deployment.tenant else "shared",
               "gpus": deployment.gpus_reserved}
    errors = backend_for(deployment).shape_errors(deployment)
    if errors:
        raise refusal(errors)
    registry_host()  # the storageUri names it: RegistryNotConfigured says what to set
    if deployment.tenant and not deployment.tenant.is_active:
        raise refusal({"tenant": f"{deployment.tenant.name} is suspended."})
    taken = Deployment.objects.filter(
        cluster=deployment.cluster, namespace=deployment.namespace,
        resource_name=deployment.resource_name).exclude(status=S.DELETED)
    if deployment.pk:
        taken = taken.exclude(pk=deployment.pk)
    if taken.exists():
        raise refusal({"name": f"{deployment.namespace}/{deployment.resource_name} "
                               "already exists on this cluster; choose another name."})
    for version in filter(None, [deployment.version, deployment.canary_version]):
        problem = _check_version(version) or packaging_problem(version, deployment.cluster)
        if problem:
            _refuse(actor=actor, tenant=deployment.tenant, field="version", reason=problem,
                    details=details)
    if not jurisdiction_allowed(deployment.cluster.jurisdiction):
        allowed = ", ".join(settings.ALLOWED_JURISDICTIONS) or "none (ALLOWED_JURISDICTIONS " \
                                                               "is empty)"
        _refuse(actor=actor, tenant=deployment.tenant, field="cluster", details=details,
                reason=f"{deployment.cluster.name} is in {deployment.cluster.jurisdiction}, "
                       f"outside the allowed jurisdictions ({allowed}).")
    if deployment.tenant and not jurisdiction_allowed_for_tenant(deployment):
        _refuse(actor=actor, tenant=deployment.tenant, field="cluster", details=details,
                reason=f"{deployment.tenant.name}'s data must stay in "
                       f"{deployment.tenant.jurisdiction}; {deployment.cluster.name} is in "
                       f"{deployment.cluster.jurisdiction}.")
    _check_gpus(actor=actor, cluster=deployment.cluster, tenant=deployment.tenant,
                gpu_product=deployment.gpu_product, gpus_needed=deployment.gpus_reserved,
                exclude=deployment if deployment.pk else None, details=details)
    if deployment.tenant:
        _check_namespace_quota(actor=actor, deployment=deployment, details=details)


def _check_namespace_quota(*, actor, deployment: Deployment, details: dict) -> None:
    """CPU, memory and pods against the tenant namespace's ResourceQuota on this cluster, so
    Kubernetes never refuses the pods after the portal said yes."""
    quota = namespaces.tenant_quota(deployment.tenant)
    held = Deployment.objects.filter(
        backend__in=CLUSTER_BACKENDS, cluster=deployment.cluster, tenant=deployment.tenant,
        status__in=ACTIVE_STATUSES)
    if deployment.pk:
        held = held.exclude(pk=deployment.pk)
    used = {"cpu": 0, "memory": 0, "pods": 0}
    for other in [*held, deployment]:
        for key, value in namespaces.peak_requests(other).items():
            used[key] += value
    # quota key → (form field to blame, label, how to show an amount)
    shown = {"cpu": ("cpu", "CPU", lambda v: f"{v:g} cores"),
             "memory": ("memory", "memory", lambda v: f"{v / 2**30:.1f} GiB"),
             "pods": ("max_replicas", "pods", lambda v: f"{v:g}")}
    for key, (field, label, show) in shown.items():
        if used[key] > quota[key]:
            _refuse(actor=actor, tenant=deployment.tenant, field=field, details=details,
                    reason=f"{deployment.tenant.name}'s namespace on {deployment.cluster.name} "
                           f"allows {show(quota[key])} of {label} (with "
                           f"{deployment.tenant.max_gpus} GPUs); its deployments there would "
                           f"request {show(used[key])} at their peak. Ask for fewer per "
                           "replica or fewer replicas, or raise the tenant's GPU quota.")


def jurisdiction_allowed_for_tenant(deployment: Deployment) -> bool:
    """A dedicated deployment also stays inside its tenant's own jurisdiction."""
    tenant_code, cluster_code = deployment.tenant.jurisdiction, deployment.cluster.jurisdiction
    if cluster_code == tenant_code or cluster_code.startswith(tenant_code + "-"):
        return True
    return tenant_code == "EU" and cluster_code.split("-", 1)[0] in EU_MEMBERS


