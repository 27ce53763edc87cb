"""Thin Celery tasks: ids in, one service call, done. The services own the state machine."""

from __future__ import annotations

from celery import shared_task

from deployments import services
from deployments.models import DeploymentStatus

# While a deployment is progressing, its status is read this often (seconds).
FOLLOW_INTERVAL_SECONDS = 3


@shared_task
def drive_deployment(deployment_id: int) -> str:
    status = services.deployment_drive(deployment_id)
    if status == DeploymentStatus.PROGRESSING:
        follow_deployment.apply_async((deployment_id,), countdown=1)
    return status


@shared_task
def follow_deployment(deployment_id: int) -> str:
    status = services.deployment_follow(deployment_id)
    if status == DeploymentStatus.PROGRESSING:
        follow_deployment.apply_async((deployment_id,), countdown=FOLLOW_INTERVAL_SECONDS)
    return status


@shared_task
def reconcile_deployments() -> dict:
    return services.deployments_reconcile_all()


@shared_task
def fail_stale_deployments() -> int:
    return services.deployments_fail_stale()


@shared_task
def sync_tenant_namespace(cluster_id: int, tenant_id: int) -> bool:
    from deployments.models import Cluster
    from tenants.models import Tenant

    record = services.tenant_namespace_ensure(cluster=Cluster.objects.get(pk=cluster_id),
                                              tenant=Tenant.objects.get(pk=tenant_id))
    return bool(record.ok)
