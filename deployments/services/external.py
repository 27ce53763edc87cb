"""External OpenAI-compatible endpoints registered as deployments."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from deployments.backends import backend_for
from deployments.models import (
    Backend,
    Deployment,
    DeploymentStatus,
)
from models_catalog.models import Model
from portal import crypto
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant

# --- External endpoints -------------------------------------------------------------------

@transaction.atomic
def external_endpoint_register(
    *, actor, model: Model, base_url: str, upstream_model: str = "", upstream_api_key: str = "",
    tenant: Tenant | None = None, name: str = "",
) -> Deployment:
    """Register an already-running OpenAI-compatible server as a deployment of `model`."""
    deployment = Deployment(
        model=model, tenant=tenant, backend=Backend.EXTERNAL, base_url=base_url.rstrip("/"),
        name=name or base_url.split("://", 1)[-1].split("/", 1)[0],
        upstream_model=upstream_model,
        upstream_api_key_encrypted=crypto.encrypt(upstream_api_key),
    )
    if not deployment.base_url:
        raise ValidationError({"base_url": "Give the endpoint's base URL."})
    deployment.full_clean()
    deployment.save()
    audit.record(action="deployment.registered", actor=actor, tenant=tenant, target=deployment,
                 details={"model": model.slug, "backend": Backend.EXTERNAL,
                          "base_url": deployment.base_url,
                          "scope": tenant.slug if tenant else "shared"})
    return deployment_check(actor=actor, deployment=deployment)


@transaction.atomic
def deployment_check(*, actor, deployment: Deployment) -> Deployment:
    """Health-check an external endpoint and record the outcome when it changes."""
    seen = backend_for(deployment).observe(deployment)
    problem = seen.problem
    status = DeploymentStatus.FAILED if problem else DeploymentStatus.READY
    changed = status != deployment.status
    deployment.status, deployment.status_reason = status, problem or ""
    deployment.last_checked_at = timezone.now()
    deployment.save(update_fields=["status", "status_reason", "last_checked_at", "updated_at"])
    if changed:
        audit.record(action=f"deployment.{status}", actor=actor, tenant=deployment.tenant,
                     target=deployment, details={"reason": problem or ""})
        bump_gateway_config()
    return deployment
