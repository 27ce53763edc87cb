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
from models_catalog import services as catalog_services
from models_catalog.models import Model
from portal import crypto
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant

# --- External endpoints -------------------------------------------------------------------

def endpoint_model_resolve(*, actor, slug: str, task: str = "") -> Model:
    """The catalog model an endpoint serves: the one with `slug`, or a new one of `task`
    (available to every tenant, like any catalog entry) when the slug is not taken yet."""
    model = Model.objects.filter(slug=slug).first()
    if model is None:
        if not task:
            raise ValidationError({"task": f"{slug!r} is not in the catalog yet: choose its "
                                           "task (chat, completion or embeddings) to add it."})
        return catalog_services.model_create(actor=actor, slug=slug, name=slug, task=task)
    if task and model.task != task:
        raise ValidationError({"task": f"{model.slug} is a {model.task} model, not {task}."})
    return model


@transaction.atomic
def external_endpoint_register(
    *, actor, base_url: str, model: Model | None = None, model_slug: str = "", task: str = "",
    upstream_model: str = "", upstream_api_key: str = "", tenant: Tenant | None = None,
    name: str = "",
) -> Deployment:
    """Register an already-running OpenAI-compatible server as a deployment of `model` (or
    of the catalog model `model_slug`, created with `task` if new) and health-check it.

    A failed health check still registers the endpoint, as failed with the reason: the
    operator fixes the server and checks again, without entering the key a second time.
    """
    if model is None:
        model = endpoint_model_resolve(actor=actor, slug=model_slug, task=task)
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
