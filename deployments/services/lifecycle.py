"""Deployments: validation (every refusal before anything is applied) and the state machine.

pending → applying → progressing → ready | failed; stopping → stopped; deleting → deleted.
Transitions are compare-and-set updates (`_transition`), so two workers never drive the same
deployment through the same step twice. Calls to a cluster happen outside any transaction;
their outcome is recorded in a short one."""

from __future__ import annotations

import copy
import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

import audit
from deployments import kube, namespaces, selectors
from deployments.backends import backend_for
from deployments.models import (
    ACTIVE_STATUSES,
    CLUSTER_BACKENDS,
    ISVC_NAME_MAX,
    Backend,
    Cluster,
    Deployment,
    DeploymentEvent,
    DeploymentMode,
    DeploymentStatus,
)
from deployments.services.clusters import (
    EU_MEMBERS,
    SYSTEM,
    jurisdiction_allowed,
    tenant_namespace_ensure,
)
from models_catalog import services as catalog_services
from models_catalog.models import ModelLifecycle, ModelVersion
from models_catalog.selectors import RegistryNotConfigured, registry_host
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant

logger = logging.getLogger(__name__)

S = DeploymentStatus


# --- Deployments: validation --------------------------------------------------------------

def _refuse(*, actor, tenant, reason: str, field: str | None, details: dict) -> None:
    """Audit a refused deployment (in its own transaction, so it survives) and raise."""
    with transaction.atomic():
        audit.record(action="deployment.refused", actor=actor, tenant=tenant,
                     details={**details, "reason": reason})
    raise ValidationError({field: reason} if field else reason)


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
        raise ValidationError({problem[0]: problem[1] + " (booked meanwhile by another "
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
        raise ValidationError(errors)
    registry_host()  # the storageUri names it: RegistryNotConfigured says what to set
    if deployment.tenant and not deployment.tenant.is_active:
        raise ValidationError({"tenant": f"{deployment.tenant.name} is suspended."})
    taken = Deployment.objects.filter(
        cluster=deployment.cluster, namespace=deployment.namespace,
        resource_name=deployment.resource_name).exclude(status=S.DELETED)
    if deployment.pk:
        taken = taken.exclude(pk=deployment.pk)
    if taken.exists():
        raise ValidationError({"name": f"{deployment.namespace}/{deployment.resource_name} "
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


# --- Deployments: the state machine -------------------------------------------------------

def _event(deployment: Deployment, message: str, level: str = "info") -> None:
    DeploymentEvent.objects.create(deployment=deployment, status=deployment.status,
                                   message=message[:1000], level=level)


def _transition(deployment: Deployment, *, from_statuses, to: str, reason: str = "",
                actor=SYSTEM, action: str | None = None, details: dict | None = None,
                level: str = "info", **fields) -> bool:
    """Compare-and-set `status`; on success record the event and the audit entry."""
    now = timezone.now()
    with transaction.atomic():
        updated = Deployment.objects.filter(pk=deployment.pk, status__in=list(from_statuses)) \
            .update(status=to, status_reason=reason[:500], status_changed_at=now,
                    updated_at=now, **fields)
        if not updated:
            return False
        was_ready = deployment.status == S.READY
        deployment.refresh_from_db()
        _event(deployment, reason or f"Now {deployment.get_status_display().lower()}.", level)
        audit.record(action=action or f"deployment.{to}", actor=actor,
                     tenant=deployment.tenant, target=deployment,
                     details={"from": list(from_statuses), "reason": reason, **(details or {})})
        if was_ready != (to == S.READY):
            bump_gateway_config()
    return True


def _enqueue(deployment: Deployment) -> None:
    from deployments import tasks

    # robust: a broker that is down must not turn a saved change into a 500; the beat queues
    # work left pending again (deployments_fail_stale).
    transaction.on_commit(lambda: tasks.drive_deployment.delay(deployment.pk), robust=True)


def kserve_deployment_create(*, actor, deployment: Deployment) -> Deployment:
    """Validate (refusals audited) and save a built deployment; a worker applies it."""
    kserve_deployment_validate(actor=actor, deployment=deployment)
    with transaction.atomic():
        _book_gpus(deployment)
        deployment.created_by = actor if getattr(actor, "pk", None) else None
        deployment.status, deployment.status_changed_at = S.PENDING, timezone.now()
        deployment.full_clean()
        deployment.save()
        _event(deployment, f"Created: {deployment.version} on {deployment.cluster.name} "
                           f"({deployment.mode or backend_for(deployment).kind}), namespace "
                           f"{deployment.namespace}.")
        audit.record(action="deployment.created", actor=actor, tenant=deployment.tenant,
                     target=deployment,
                     details={"model": deployment.model.slug,
                              "version": deployment.version.version,
                              "digest": deployment.version.manifest_digest,
                              "cluster": deployment.cluster.name,
                              "jurisdiction": deployment.cluster.jurisdiction,
                              "scope": deployment.tenant.slug if deployment.tenant else "shared",
                              "gpus": deployment.gpus_reserved})
        _enqueue(deployment)
    return deployment


def _reason(exc: kube.KubeError | ValidationError | RegistryNotConfigured) -> str:
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else exc.message


def _fail(deployment: Deployment, *, from_statuses, reason: str) -> None:
    _transition(deployment, from_statuses=from_statuses, to=S.FAILED, reason=reason,
                level="error")


def deployment_drive(deployment_id: int) -> str:
    """One step of the worker: apply a pending deployment, stop a stopping one, delete a
    deleting one. Returns the status it left the deployment in."""
    deployment = Deployment.objects.select_related(
        "cluster", "tenant", "model", "version", "canary_version").get(pk=deployment_id)
    if deployment.backend not in CLUSTER_BACKENDS:
        return deployment.status
    backend = backend_for(deployment)
    if deployment.status == S.DELETING:
        try:
            backend.delete(deployment)
        except kube.KubeError as exc:
            _fail(deployment, from_statuses=[S.DELETING],
                  reason=f"Delete failed: {exc.message}")
            return S.FAILED
        _transition(deployment, from_statuses=[S.DELETING], to=S.DELETED,
                    reason=f"{backend.kind} deleted.", base_url="", url="")
        return S.DELETED
    if deployment.status == S.STOPPING:
        from_statuses, claimed = [S.STOPPING], True
    else:
        from_statuses = [S.APPLYING]
        claimed = _transition(deployment, from_statuses=[S.PENDING], to=S.APPLYING,
                              reason=f"Applying the {backend.kind}.")
    if not claimed:
        return deployment.status
    for version in filter(None, [deployment.version, deployment.canary_version]):
        problem = _check_version(version) or packaging_problem(version, deployment.cluster)
        if problem:
            _fail(deployment, from_statuses=from_statuses, reason=problem)
            return S.FAILED
    try:
        if deployment.tenant:
            record = tenant_namespace_ensure(cluster=deployment.cluster, tenant=deployment.tenant)
            if not record.ok:
                raise kube.KubeError(f"Tenant namespace: {record.message}")
        else:
            namespaces.ensure(deployment.cluster, None)
        outcome = backend.apply(deployment)
    except (kube.KubeError, ValidationError, RegistryNotConfigured) as exc:
        _fail(deployment, from_statuses=from_statuses, reason=_reason(exc))
        return S.FAILED
    Deployment.objects.filter(pk=deployment.pk).update(
        applied_manifest=backend.manifest(deployment))
    if deployment.status in (S.STOPPING, S.APPLYING) and deployment.stop_requested:
        # A stop, or a change (scale, update, retry) to a stopped deployment: applied with the
        # stop annotation, so there is nothing to wait for.
        _transition(deployment, from_statuses=[deployment.status], to=S.STOPPED,
                    reason=f"Stopped (serving.kserve.io/stop), {backend.kind} {outcome}.")
        return S.STOPPED
    _transition(deployment, from_statuses=[S.APPLYING], to=S.PROGRESSING,
                reason=f"{backend.kind} {outcome}; waiting for Ready.")
    return S.PROGRESSING


def deployment_follow(deployment_id: int) -> str:
    """Read the served object's status; ready → record the URL as the gateway upstream."""
    deployment = Deployment.objects.select_related("cluster", "tenant", "model").get(
        pk=deployment_id)
    if deployment.backend not in CLUSTER_BACKENDS or deployment.status not in (S.PROGRESSING,
                                                                               S.READY):
        return deployment.status
    backend = backend_for(deployment)
    try:
        seen = backend.observe(deployment)
    except kube.KubeError as exc:
        if isinstance(exc, kube.CredentialsUnreadable) and deployment.status == S.READY:
            # The model server doesn't need the cluster's credentials to serve: keep routing
            # to it; the cluster's page and audit trail carry the problem.
            return S.READY
        if deployment.status == S.PROGRESSING:
            _fail(deployment, from_statuses=[S.PROGRESSING],
                  reason=f"Can't read the {backend.kind}: {exc.message}")
            return S.FAILED
        _transition(deployment, from_statuses=[S.READY], to=S.PROGRESSING,
                    reason=f"Cluster unreachable: {exc.message}", level="warning")
        return S.PROGRESSING
    Deployment.objects.filter(pk=deployment.pk).update(
        conditions=seen.conditions, observed=seen.observed, last_checked_at=timezone.now())
    if seen.ready:
        if deployment.status == S.PROGRESSING or deployment.base_url != seen.url:
            _transition(deployment, from_statuses=[S.PROGRESSING, S.READY], to=S.READY,
                        reason=f"Ready at {seen.url}.", url=seen.service_url,
                        base_url=seen.url, details={"url": seen.url})
        return S.READY
    if deployment.status == S.READY:
        _transition(deployment, from_statuses=[S.READY], to=S.PROGRESSING,
                    reason=seen.problem or "No longer ready.", level="warning")
        return S.PROGRESSING
    timeout = timedelta(minutes=settings.DEPLOYMENT_PROGRESS_TIMEOUT_MINUTES)
    if deployment.status_changed_at and timezone.now() - deployment.status_changed_at > timeout:
        _fail(deployment, from_statuses=[S.PROGRESSING],
              reason=f"Not ready after {settings.DEPLOYMENT_PROGRESS_TIMEOUT_MINUTES} min: "
                     f"{seen.problem or 'no Ready condition yet'}.")
        return S.FAILED
    return S.PROGRESSING


def _change(*, actor, deployment: Deployment, action: str, message: str, details: dict,
            from_statuses=(S.READY, S.FAILED, S.PROGRESSING, S.STOPPED), to: str = S.PENDING,
            **fields) -> Deployment:
    """Save new desired state and hand it to the worker."""
    if deployment.backend not in CLUSTER_BACKENDS:
        raise ValidationError("Only KServe deployments are managed by the portal.")
    for field, value in fields.items():
        setattr(deployment, field, value)
    if to == S.PENDING:
        kserve_deployment_validate(actor=actor, deployment=deployment)
    elif to == S.STOPPING:
        registry_host()  # a stop is applied: the manifest with the stop annotation
    with transaction.atomic():
        if to == S.PENDING:
            _book_gpus(deployment)
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if locked.status not in from_statuses:
            raise ValidationError(f"The deployment is {locked.get_status_display().lower()}; "
                                  "wait until it settles.")
        Deployment.objects.filter(pk=deployment.pk).update(**fields)
        changed = _transition(deployment, from_statuses=from_statuses, to=to, reason=message,
                              actor=actor, action=action, details=details)
        if changed:
            _enqueue(deployment)
    return deployment


def deployment_retry(*, actor, deployment: Deployment) -> Deployment:
    """Resume what failed: a failed delete deletes again; anything else applies again (with
    the stop annotation if a stop was asked for, which then ends stopped)."""
    if deployment.delete_requested:
        return _change(actor=actor, deployment=deployment, action="deployment.retried",
                       message="Retry requested: deleting again.", details={"delete": True},
                       from_statuses=[S.FAILED], to=S.DELETING)
    return _change(actor=actor, deployment=deployment, action="deployment.retried",
                   message="Retry requested.", details={}, from_statuses=[S.FAILED])


def deployment_update_preview(*, deployment: Deployment, version: ModelVersion,
                              canary_traffic_percent: int | None = None) -> Deployment:
    """The deployment as `deployment_update_version` would leave it, unsaved: what the
    roll-out form previews. Refuses what the roll-out would refuse, without auditing."""
    proposed = copy.copy(deployment)
    fields = _update_fields(deployment, version, canary_traffic_percent)
    for field, value in fields.items():
        setattr(proposed, field, value)
    return proposed


def _update_fields(deployment: Deployment, version: ModelVersion,
                   canary_traffic_percent: int | None) -> dict:
    """The checks of a roll-out, and the fields it changes."""
    if version.model_id != deployment.model_id:
        raise ValidationError({"version": f"{version} is not a version of "
                                          f"{deployment.model.slug}."})
    if version.pk == deployment.version_id:
        raise ValidationError({"version": f"{version} is already deployed."})
    if deployment.canary_version_id:
        raise ValidationError({"version": "A canary is pending: promote or roll it back "
                                          "first."})
    backend = backend_for(deployment)
    if not canary_traffic_percent:
        return {"previous_version": deployment.version, "version": version,
                **backend.rollout_fields(deployment, version, None)}
    if not 1 <= canary_traffic_percent <= 99:
        raise ValidationError({"canary_traffic_percent": "Give 1 to 99 percent."})
    return {"canary_version": version, "canary_traffic_percent": canary_traffic_percent,
            **backend.rollout_fields(deployment, version, canary_traffic_percent)}


def deployment_update_version(*, actor, deployment: Deployment, version: ModelVersion,
                              canary_traffic_percent: int | None = None) -> Deployment:
    """Roll out `version`: all at once (rolling), or as a canary taking that % of traffic."""
    fields = _update_fields(deployment, version, canary_traffic_percent)
    details = {"from_version": deployment.version.version, "to_version": version.version,
               "digest": version.manifest_digest}
    if canary_traffic_percent:
        return _change(actor=actor, deployment=deployment, action="deployment.canary_started",
                       message=f"Canary {version.version} at {canary_traffic_percent}% of "
                               "traffic.",
                       details={**details, "percent": canary_traffic_percent}, **fields)
    return _change(actor=actor, deployment=deployment, action="deployment.updated",
                   message=f"Rolling update to {version.version}.", details=details, **fields)


def deployment_promote(*, actor, deployment: Deployment) -> Deployment:
    if not deployment.canary_version_id:
        raise ValidationError("There is no canary to promote.")
    canary = deployment.canary_version
    return _change(actor=actor, deployment=deployment, action="deployment.promoted",
                   message=f"Canary {canary.version} promoted to 100% of traffic.",
                   details={"version": canary.version, "digest": canary.manifest_digest},
                   previous_version=deployment.version, version=canary, canary_version=None,
                   canary_traffic_percent=None,
                   **backend_for(deployment).promotion_fields(deployment))


def deployment_rollback(*, actor, deployment: Deployment) -> Deployment:
    """Drop a pending canary, or return to the version before the last update."""
    if deployment.canary_version_id:
        return _change(actor=actor, deployment=deployment, action="deployment.rolled_back",
                       message=f"Canary {deployment.canary_version.version} rolled back.",
                       details={"canary": deployment.canary_version.version},
                       canary_version=None, canary_traffic_percent=None)
    if not deployment.previous_version_id:
        raise ValidationError("There is nothing to roll back to.")
    previous = deployment.previous_version
    return _change(actor=actor, deployment=deployment, action="deployment.rolled_back",
                   message=f"Rolled back to {previous.version}.",
                   details={"from_version": deployment.version.version,
                            "to_version": previous.version},
                   version=previous, previous_version=deployment.version,
                   **backend_for(deployment).rollback_fields(deployment))


def deployment_scale(*, actor, deployment: Deployment, min_replicas: int, max_replicas: int,
                     scale_metric: str = "", scale_target: int | None = None,
                     autoscaler: str | None = None,
                     prefill_replicas: int | None = None) -> Deployment:
    """Replicas, and how they scale; `autoscaler` and `prefill_replicas` (LLMInferenceService)
    stay as they are when None."""
    if (deployment.canary_version_id and deployment.mode == DeploymentMode.STANDARD
            and min_replicas < 1):
        raise ValidationError({"min_replicas": "A Standard-mode canary is pending and its "
                                               "pods follow the minimum: promote or roll it "
                                               "back before scaling to 0."})
    more = {k: v for k, v in {"autoscaler": autoscaler,
                              "prefill_replicas": prefill_replicas}.items() if v is not None}
    return _change(actor=actor, deployment=deployment, action="deployment.scaled",
                   message=f"Scaled to {min_replicas}–{max_replicas} replicas.",
                   details={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "scale_metric": scale_metric, "scale_target": scale_target, **more},
                   min_replicas=min_replicas, max_replicas=max_replicas,
                   scale_metric=scale_metric, scale_target=scale_target, **more)


def deployment_stop(*, actor, deployment: Deployment) -> Deployment:
    return _change(actor=actor, deployment=deployment, action="deployment.stopping",
                   message="Stop requested (serving.kserve.io/stop).", details={},
                   from_statuses=[S.READY, S.PROGRESSING, S.FAILED], to=S.STOPPING,
                   stop_requested=True)


def deployment_start(*, actor, deployment: Deployment) -> Deployment:
    return _change(actor=actor, deployment=deployment, action="deployment.started",
                   message="Start requested.", details={}, from_statuses=[S.STOPPED],
                   stop_requested=False)


def deployment_delete(*, actor, deployment: Deployment) -> Deployment:
    if deployment.backend == Backend.EXTERNAL:
        with transaction.atomic():
            _transition(deployment, from_statuses=list(S.values), to=S.DELETED,
                        reason="Endpoint unregistered.", actor=actor)
        return deployment
    return _change(actor=actor, deployment=deployment, action="deployment.deleting",
                   message="Delete requested.", details={},
                   from_statuses=[S.READY, S.PROGRESSING, S.FAILED, S.STOPPED], to=S.DELETING,
                   delete_requested=True)


# --- Periodic work ------------------------------------------------------------------------

def deployment_reconcile(deployment_id: int) -> str:
    """Compare the live objects with the desired ones; re-apply when they were deleted or
    edited outside the portal."""
    deployment = Deployment.objects.select_related(
        "cluster", "tenant", "model", "version", "canary_version").get(pk=deployment_id)
    if deployment.backend not in CLUSTER_BACKENDS or deployment.status not in (
            S.READY, S.STOPPED, S.PROGRESSING):
        return "skipped"
    backend = backend_for(deployment)
    try:
        registry_host()  # the desired manifest names the registry
        seen = backend.observe(deployment)
        if seen.found and not seen.drifted:
            if deployment.status != S.STOPPED:
                deployment_follow(deployment.pk)
            return "in sync"
        what = "deleted outside the portal" if not seen.found else "changed outside the portal"
        outcome = backend.apply(deployment)
    except (kube.KubeError, ValidationError, RegistryNotConfigured) as exc:
        note = f"Reconcile could not check the deployment: {_reason(exc)}"
        last = deployment.events.first()
        if last is None or last.message != note[:1000]:  # once, not every beat
            _event(deployment, note, "warning")
        return "unreachable"
    with transaction.atomic():
        _event(deployment, f"Drift repaired: the {backend.kind} was {what}; {outcome}.",
               "warning")
        audit.record(action="deployment.drift_repaired", actor=SYSTEM, tenant=deployment.tenant,
                     target=deployment, details={"drift": what, "outcome": outcome})
    if deployment.status == S.READY:
        _transition(deployment, from_statuses=[S.READY], to=S.PROGRESSING,
                    reason="Re-applied after drift; waiting for Ready.", level="warning")
    return "repaired"


def deployments_reconcile_all() -> dict[str, int]:
    counts: dict[str, int] = {}
    live = Deployment.objects.filter(backend__in=CLUSTER_BACKENDS,
                                     status__in=[S.READY, S.STOPPED, S.PROGRESSING])
    for deployment_id in live.values_list("pk", flat=True):
        try:
            outcome = deployment_reconcile(deployment_id)
        except Deployment.DoesNotExist:
            continue  # removed while the run went on
        except Exception:  # one deployment's surprise must not stop the others' reconcile
            logger.exception("Reconciling deployment %s failed", deployment_id)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    pairs = Deployment.objects.filter(backend__in=CLUSTER_BACKENDS, tenant__isnull=False).exclude(
        status=S.DELETED).values_list("cluster_id", "tenant_id").distinct()
    for cluster_id, tenant_id in pairs:
        tenant_namespace_ensure(cluster=Cluster.objects.get(pk=cluster_id),
                                tenant=Tenant.objects.get(pk=tenant_id))
    from deployments.services.external import external_endpoints_check_all

    for status, count in external_endpoints_check_all().items():
        counts[f"external_{status}"] = count
    return counts


def deployments_fail_stale() -> int:
    """Nothing stays in 'applying' (or 'progressing') forever: a worker that died mid-step
    leaves a failed deployment with a reason and a retry button. Work that was never picked
    up (pending, stopping, deleting: the broker was down when it was queued) is queued
    again."""
    from deployments import tasks

    now = timezone.now()
    waiting = Deployment.objects.filter(
        backend__in=CLUSTER_BACKENDS, status__in=[S.PENDING, S.STOPPING, S.DELETING],
        status_changed_at__lt=now - timedelta(minutes=settings.DEPLOYMENT_APPLYING_STALE_MINUTES))
    for deployment_id in waiting.values_list("pk", flat=True):
        tasks.drive_deployment.delay(deployment_id)
    stale = Deployment.objects.filter(
        Q(status=S.APPLYING,
          status_changed_at__lt=now - timedelta(minutes=settings.DEPLOYMENT_APPLYING_STALE_MINUTES))
        | Q(status=S.PROGRESSING, status_changed_at__lt=now - timedelta(
            minutes=settings.DEPLOYMENT_PROGRESS_TIMEOUT_MINUTES)))
    failed = 0
    for deployment in stale:
        reason = ("The worker stopped while applying; retry to apply again."
                  if deployment.status == S.APPLYING else
                  f"Not ready after {settings.DEPLOYMENT_PROGRESS_TIMEOUT_MINUTES} min.")
        failed += _transition(deployment, from_statuses=[deployment.status], to=S.FAILED,
                              reason=reason, level="error")
    return failed
