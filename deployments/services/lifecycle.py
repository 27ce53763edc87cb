"""Deployments: the state machine (admission, every refusal before anything is applied, is in
`admission`).

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

import audit
from deployments import kube, namespaces
from deployments.backends import backend_for
from deployments.models import (
    CLUSTER_BACKENDS,
    Backend,
    Cluster,
    Deployment,
    DeploymentEvent,
    DeploymentMode,
    DeploymentStatus,
)
from deployments.services.admission import (
    _book_gpus,
    _check_version,
    kserve_deployment_validate,
    packaging_problem,
)
from deployments.services.clusters import (
    SYSTEM,
    tenant_namespace_ensure,
)
from models_catalog.models import ModelVersion
from models_catalog.selectors import RegistryNotConfigured, registry_host
from portal.api import full_clean_or_refuse, refusal
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant

logger = logging.getLogger(__name__)

S = DeploymentStatus


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
        full_clean_or_refuse(deployment)
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
        raise refusal("Only KServe deployments are managed by the portal.")
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
            raise refusal(f"The deployment is {locked.get_status_display().lower()}; "
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
        raise refusal({"version": f"{version} is not a version of "
                                  f"{deployment.model.slug}."})
    if version.pk == deployment.version_id:
        raise refusal({"version": f"{version} is already deployed."})
    if deployment.canary_version_id:
        raise refusal({"version": "A canary is pending: promote or roll it back "
                                  "first."})
    backend = backend_for(deployment)
    if not canary_traffic_percent:
        return {"previous_version": deployment.version, "version": version,
                **backend.rollout_fields(deployment, version, None)}
    if not 1 <= canary_traffic_percent <= 99:
        raise refusal({"canary_traffic_percent": "Give 1 to 99 percent."})
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
        raise refusal("There is no canary to promote.")
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
        raise refusal("There is nothing to roll back to.")
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
        raise refusal({"min_replicas": "A Standard-mode canary is pending and its "
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
