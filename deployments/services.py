from __future__ import annotations

import requests
from django.db import transaction
from django.utils import timezone

import audit
from deployments.models import Backend, Deployment, DeploymentStatus
from models_catalog.models import Model
from portal import crypto
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant

HEALTH_TIMEOUT_SECONDS = 5


def probe_openai_endpoint(*, base_url: str, api_key: str, expected_model: str) -> str | None:
    """GET <base_url>/models like any OpenAI client; None when healthy, else what is wrong."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = requests.get(base_url.rstrip("/") + "/models", headers=headers,
                                timeout=HEALTH_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return f"{base_url} is unreachable ({exc.__class__.__name__})."
    if response.status_code in (401, 403):
        return f"{base_url} refused the upstream API key (HTTP {response.status_code})."
    if response.status_code != 200:
        return f"{base_url}/models answered HTTP {response.status_code}."
    try:
        served = {entry["id"] for entry in response.json().get("data", [])}
    except (ValueError, AttributeError, KeyError, TypeError):
        return f"{base_url}/models did not answer with an OpenAI model list."
    if expected_model not in served:
        listed = ", ".join(sorted(served)[:5]) or "none"
        return f"{base_url} does not serve {expected_model!r} (it serves: {listed})."
    return None


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
    problem = probe_openai_endpoint(
        base_url=deployment.base_url,
        api_key=crypto.decrypt(deployment.upstream_api_key_encrypted),
        expected_model=deployment.served_model_name)
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
