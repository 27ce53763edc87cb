"""External OpenAI-compatible endpoints registered as deployments."""

from __future__ import annotations

from urllib.parse import urlsplit

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
from deployments.services.clusters import SYSTEM
from deployments.services.lifecycle import _event
from models_catalog import services as catalog_services
from models_catalog.models import Model
from portal import crypto, outbound
from portal.api import full_clean_or_refuse, refusal
from portal.gateway_config import bump_gateway_config
from portal.text import validate_header_token
from tenants.models import Tenant

# --- External endpoints -------------------------------------------------------------------

def _host_and_port(url: str) -> str:
    """An endpoint's display name when none is given."""
    return urlsplit(url).netloc or url

def _check_upstream_key(key: str | None) -> None:
    try:
        validate_header_token(key)
    except ValidationError as exc:
        raise refusal({"upstream_api_key": exc.messages}) from None


def endpoint_model_resolve(*, actor, slug: str, task: str = "") -> Model:
    """The catalog model an endpoint serves: the one with `slug`, or a new one of `task`
    (available to every tenant, like any catalog entry) when the slug is not taken yet."""
    model = Model.objects.filter(slug=slug).first()
    if model is None:
        if not task:
            raise refusal({"task": f"{slug!r} is not in the catalog yet: choose its "
                                   "task (chat, completion or embeddings) to add it."})
        return catalog_services.model_create(actor=actor, slug=slug, name=slug, task=task)
    if task and model.task != task:
        raise refusal({"task": f"{model.slug} is a {model.task} model, not {task}."})
    return model


def _check_base_url(base_url: str) -> None:
    """Endpoints are called only where the outbound policy allows (a name that does not
    resolve yet passes here, and fails its health check: every connection is vetted)."""
    try:
        outbound.check_url(base_url, outbound.msp_policy(), unresolvable_ok=True)
    except outbound.OutboundRefused as exc:
        raise refusal({"base_url": exc.message}) from None


def external_endpoint_register(
    *, actor, base_url: str, model: Model | None = None, model_slug: str = "", task: str = "",
    upstream_model: str = "", upstream_api_key: str = "", tenant: Tenant | None = None,
    name: str = "",
) -> Deployment:
    """Register an already-running OpenAI-compatible server as a deployment of `model` (or
    of the catalog model `model_slug`, created with `task` if new) and health-check it.

    The registration is recorded first; the health check runs after, outside any
    transaction, so a slow endpoint never holds the audit chain's lock. A failed health check
    leaves the endpoint registered, as failed with the reason: the operator fixes the server
    and checks again, without entering the key a second time.
    """
    _check_upstream_key(upstream_api_key)
    if not base_url.rstrip("/"):
        raise refusal({"base_url": "Give the endpoint's base URL."})
    _check_base_url(base_url)
    with transaction.atomic():
        if model is None:
            model = endpoint_model_resolve(actor=actor, slug=model_slug, task=task)
        deployment = Deployment(
            model=model, tenant=tenant, backend=Backend.EXTERNAL,
            base_url=base_url.rstrip("/"), name=name or _host_and_port(base_url),
            upstream_model=upstream_model,
            upstream_api_key_encrypted=crypto.encrypt(upstream_api_key),
        )
        full_clean_or_refuse(deployment)
        deployment.save()
        _event(deployment, f"Registered {deployment.base_url} as {model.slug}"
                           f"{f' (upstream name {upstream_model})' if upstream_model else ''}.")
        audit.record(action="deployment.registered", actor=actor, tenant=tenant,
                     target=deployment,
                     details={"model": model.slug, "backend": Backend.EXTERNAL,
                              "base_url": deployment.base_url,
                              "scope": tenant.slug if tenant else "shared"})
    return deployment_check(actor=actor, deployment=deployment)


def external_endpoint_update(*, actor, deployment: Deployment, base_url: str | None = None,
                             upstream_model: str | None = None, name: str | None = None,
                             upstream_api_key: str | None = None) -> Deployment:
    """Change where an external endpoint is and how it is called, then check it again (after
    the change is recorded, outside any transaction).

    Fields left None keep their value; `upstream_api_key=""` removes the stored key. The key
    never appears in the audit trail — only whether it changed.
    """
    if deployment.backend != Backend.EXTERNAL or deployment.status == DeploymentStatus.DELETED:
        raise refusal("Only a registered external endpoint can be edited.")
    _check_upstream_key(upstream_api_key)
    changed = {}
    for field, value in (("base_url", base_url and base_url.rstrip("/")),
                         ("upstream_model", upstream_model), ("name", name)):
        if value is not None and value != getattr(deployment, field):
            changed[field] = value
    if changed.get("name") == "":
        changed["name"] = _host_and_port(deployment.base_url)
    if "base_url" in changed:
        _check_base_url(changed["base_url"])
    with transaction.atomic():
        for field, value in changed.items():
            setattr(deployment, field, value)
        if upstream_api_key is not None:
            deployment.upstream_api_key_encrypted = crypto.encrypt(upstream_api_key)
        full_clean_or_refuse(deployment)
        deployment.save()
        key = None if upstream_api_key is None else ("removed" if not upstream_api_key
                                                     else "replaced")
        audit.record(action="deployment.endpoint_updated", actor=actor,
                     tenant=deployment.tenant, target=deployment,
                     details={**changed, **({"upstream_api_key": key} if key else {})})
        what = ", ".join([*changed, *(["the upstream API key"] if key else [])]) or "nothing"
        _event(deployment, f"Endpoint edited ({what} changed).")
        bump_gateway_config()
    # Another server, or another key: not known to work until it answers.
    return deployment_check(actor=actor, deployment=deployment,
                            known_good=not ("base_url" in changed or key))


def deployment_check(*, actor, deployment: Deployment, known_good: bool = True) -> Deployment:
    """Health-check an external endpoint; a change of outcome goes on its timeline, into the
    audit trail and to the gateway workers. A ready endpoint that takes the connection but
    answers too slowly (busy generating) stays ready; a new one — or one just re-pointed or
    given another key (`known_good=False`) — fails with the reason.

    The probe runs first, outside any transaction; the outcome is recorded after, in a short
    one — unless the endpoint was deleted or re-pointed meanwhile (the edit's own check
    records that)."""
    seen = backend_for(deployment).observe(deployment)
    # A ready server that is busy generating is still there: keep routing to it.
    still_there = seen.busy and known_good and deployment.status == DeploymentStatus.READY
    problem = "" if still_there else seen.problem
    status = DeploymentStatus.FAILED if problem else DeploymentStatus.READY
    with transaction.atomic():
        current = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if (current.status == DeploymentStatus.DELETED
                or current.base_url != deployment.base_url
                or current.upstream_api_key_encrypted != deployment.upstream_api_key_encrypted):
            return current
        changed = status != current.status
        now = timezone.now()
        deployment.status, deployment.status_reason = status, problem or ""
        deployment.last_checked_at = now
        fields = ["status", "status_reason", "last_checked_at", "updated_at"]
        if changed:
            deployment.status_changed_at = now
            fields.append("status_changed_at")
        deployment.save(update_fields=fields)
        if changed:
            _event(deployment, problem or f"Healthy: {deployment.base_url}/models lists "
                                          f"{deployment.served_model_name}.",
                   "warning" if problem else "info")
            audit.record(action=f"deployment.{status}", actor=actor, tenant=deployment.tenant,
                         target=deployment, details={"reason": problem or ""})
            bump_gateway_config()
    return deployment


def external_endpoints_check_all() -> dict[str, int]:
    """The beat's health check of every registered endpoint, so the gateway stops routing to
    one that went away and starts again when it is back."""
    counts: dict[str, int] = {}
    live = Deployment.objects.filter(backend=Backend.EXTERNAL).exclude(
        status=DeploymentStatus.DELETED).select_related("model", "tenant")
    for deployment in live:
        status = deployment_check(actor=SYSTEM, deployment=deployment).status
        counts[status] = counts.get(status, 0) + 1
    return counts
