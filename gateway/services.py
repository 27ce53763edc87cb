"""Writes for API keys: create, revoke, rotate. Each is audited and tells gateway workers."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from audit.models import AuditEvent
from gateway.keys import hash_token, new_token, token_for
from gateway.models import PLAYGROUND_KEY_NAME, ApiKey
from gateway.selectors import apikey_bulk_selection
from models_catalog.models import Model
from models_catalog.selectors import model_list_for_tenant
from portal.api import ApplicationError, full_clean_or_refuse, refusal
from portal.dates import OUT_OF_RANGE, is_supported
from portal.gateway_config import bump_gateway_config
from tenants.bearer import ServiceAccount
from tenants.models import Tenant, User


def _normalized_networks(networks: list[str]) -> list[str]:
    cleaned = []
    for raw in networks:
        try:
            cleaned.append(str(ipaddress.ip_network(raw.strip(), strict=False)))
        except ValueError:
            raise refusal({"allowed_networks": [
                f"{raw!r} is not a network: use CIDR notation such as 203.0.113.0/24."]}) from None
    return cleaned


def _check_expiry(expires_at: datetime | None) -> None:
    now = timezone.now()
    max_days = settings.GATEWAY_KEY_MAX_DAYS
    if expires_at is None:
        if settings.GATEWAY_KEY_EXPIRY_REQUIRED:
            raise refusal({"expires_at": [
                f"Keys must expire on this platform: choose a date within {max_days} days."]})
        return
    if not is_supported(expires_at):
        raise refusal({"expires_at": [OUT_OF_RANGE]})
    if expires_at <= now:
        raise refusal({"expires_at": ["Choose a time in the future."]})
    if max_days and expires_at > now + timedelta(days=max_days):
        raise refusal({"expires_at": [
            f"Keys may live at most {max_days} days on this platform."]})


def _entitled_models(tenant: Tenant, wanted: Iterable[Model | str]) -> list[Model]:
    """The models a key may be limited to: each one the tenant may use now (entitled, not
    retired). `wanted` holds models or their slugs."""
    slugs = {item.slug if isinstance(item, Model) else item for item in wanted}
    if not slugs:
        return []
    models = list(model_list_for_tenant(tenant=tenant).filter(slug__in=slugs))
    refused = sorted(slugs - {model.slug for model in models})
    if refused:
        listed = ", ".join(refused)
        raise ApplicationError(
            f"{tenant.name} can't use: {listed}. Choose among the models its catalog lists.",
            field_errors={"allowed_models": [f"Unknown or not available to {tenant.name}: "
                                             f"{listed}."]})
    return models


@transaction.atomic
def apikey_create(
    *, actor, tenant: Tenant, name: str, owner: User | ServiceAccount | None = None,
    expires_at: datetime | None = None, allowed_models: Iterable[Model | str] | None = None,
    rpm_limit: int | None = None, tpm_limit: int | None = None,
    allowed_networks: list[str] | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it and its token, which is shown once and never stored.

    `owner` is the person or the service account (a bearer token's principal) who manages
    the key from then on; None for keys made by an operator's command. `allowed_models`
    (models or slugs; none: every model the tenant may use) must all be models the tenant
    may use, else nothing is created."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if not tenant.is_active:
        raise ApplicationError(f"{tenant.name} is suspended: no new API keys.")
    active = ApiKey.objects.for_tenant(tenant).filter(revoked_at__isnull=True).exclude(
        expires_at__lte=timezone.now()).count()
    if active >= tenant.max_api_keys:
        raise ApplicationError(
            f"{tenant.name} already has {active} active API keys, its quota. Revoke one you no "
            "longer use, or ask your operator for a higher quota.")
    _check_expiry(expires_at)
    models = _entitled_models(tenant, allowed_models or [])
    prefix, token = new_token()
    service_account = owner.pk if getattr(owner, "is_service_account", False) else ""
    person = None if service_account else owner
    key = ApiKey(tenant=tenant, name=name.strip(), owner=person,
                 service_account=service_account, prefix=prefix,
                 secret_hash=hash_token(token), expires_at=expires_at, rpm_limit=rpm_limit,
                 tpm_limit=tpm_limit,
                 allowed_networks=_normalized_networks(allowed_networks or []))
    full_clean_or_refuse(key)
    key.save()
    key.allowed_models.set(models)
    audit.record(action="apikey.created", actor=actor, tenant=tenant, target=key, details={
        "name": key.name, "prefix": key.prefix, "owner": person.email if person else None,
        "service_account": service_account or None,
        "expires_at": expires_at, "models": sorted(m.slug for m in models),
        "rpm_limit": rpm_limit, "tpm_limit": tpm_limit, "networks": key.allowed_networks})
    bump_gateway_config()
    return key, token


@transaction.atomic
def apikey_revoke(*, actor, key: ApiKey) -> ApiKey:
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at:
        raise ApplicationError("This key is already revoked.")
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit.record(action="apikey.revoked", actor=actor, tenant=key.tenant, target=key,
                 details={"prefix": key.prefix, "name": key.name})
    bump_gateway_config()
    return key


@transaction.atomic
def apikey_rotate(*, actor, key: ApiKey, grace: timedelta = timedelta(hours=24)
                  ) -> tuple[ApiKey, str]:
    """A new secret for the same key; the old one keeps working for `grace`."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.status != "active":
        raise ApplicationError(f"This key is {key.status}; create a new one instead.")
    if grace < timedelta(0) or grace > timedelta(days=30):
        raise refusal({"grace": ["Choose a grace period between 0 and 30 days."]})
    token = token_for(key.prefix)
    key.previous_secret_hash = key.secret_hash if grace else ""
    key.previous_valid_until = timezone.now() + grace if grace else None
    key.secret_hash = hash_token(token)
    key.save(update_fields=["secret_hash", "previous_secret_hash", "previous_valid_until"])
    audit.record(action="apikey.rotated", actor=actor, tenant=key.tenant, target=key,
                 details={"prefix": key.prefix, "grace_seconds": int(grace.total_seconds())})
    bump_gateway_config()
    return key, token


def apikeys_mark_used(events: list[dict]) -> None:
    """Record when keys were last used, from a stored batch of usage events (operational data,
    not audited). The usage drain calls it for every batch (registered in GatewayConfig.ready)."""
    last_used: dict[int, datetime] = {}
    for event in events:
        if event.get("key_id"):
            when = datetime.fromtimestamp(event["ts"], tz=UTC)
            last_used[event["key_id"]] = max(last_used.get(event["key_id"], when), when)
    for key_id, when in last_used.items():
        ApiKey.objects.filter(pk=key_id).exclude(last_used_at__gte=when).update(
            last_used_at=when)


PLAYGROUND_KEY_LIFETIME = timedelta(hours=24)


@transaction.atomic
def playground_token(*, user: User, tenant: Tenant) -> str:
    """A token for the person's own playground key: created on first use (expiring after a
    day), otherwise rotated, since secrets are never stored. Other open playground tabs keep
    working for an hour."""
    key = (ApiKey.objects.for_tenant(tenant)
           .filter(owner=user, name=PLAYGROUND_KEY_NAME, revoked_at__isnull=True,
                   expires_at__gt=timezone.now() + timedelta(hours=1))
           .order_by("-created_at").first())
    if key is None:
        _key, token = apikey_create(actor=user, tenant=tenant, name=PLAYGROUND_KEY_NAME,
                                    owner=user,
                                    expires_at=timezone.now() + PLAYGROUND_KEY_LIFETIME)
        return token
    _key, token = apikey_rotate(actor=user, key=key, grace=timedelta(hours=1))
    return token


def apikeys_bulk_revoke(*, actor, tenant: Tenant | None, owner: User | None = None,
                        model: Model | None = None, key_ids: Iterable[int] | None = None,
                        dry_run: bool = False) -> tuple[list[ApiKey], AuditEvent | None]:
    """Revoke every key of a tenant, of a person in it, or allowed to a model (in one tenant,
    or with `tenant=None` in every tenant: the MSP's scope). `dry_run` only lists them.
    `key_ids` (the keys a dry run listed) limits the revoke to those, so a key created
    between the dry run and the confirmation is not revoked unseen.

    One audit event names every key revoked (and the SHA-256 of their sorted ids, which stays
    whole however long the list); returns the keys and that event."""
    if tenant is None and model is None:
        raise ApplicationError("Choose the tenant, the person or the model whose keys to "
                               "revoke.")
    selection = apikey_bulk_selection(tenant=tenant, owner=owner, model=model)
    if key_ids is not None:
        selection = selection.filter(pk__in=list(key_ids))
    if dry_run:
        return list(selection), None
    with transaction.atomic():
        ids = list(selection.values_list("pk", flat=True))
        # Lock the rows (plain, no outer joins), then revoke what is still unrevoked.
        locked = list(ApiKey.objects.select_for_update().filter(pk__in=ids,
                                                                revoked_at__isnull=True)
                      .order_by("pk").values_list("pk", flat=True))
        if not locked:
            return [], None
        ApiKey.objects.filter(pk__in=locked).update(revoked_at=timezone.now())
        keys = list(ApiKey.objects.filter(pk__in=locked).select_related("owner", "tenant")
                    .order_by("tenant__slug", "pk"))
        scope = {"tenant": tenant.slug if tenant else None,
                 "owner": owner.email if owner else None,
                 "model": model.slug if model else None}
        event = audit.record(
            action="apikey.bulk_revoked", actor=actor, tenant=tenant,
            target=owner or model or tenant,
            details={"scope": scope, "count": len(locked),
                     "key_ids_sha256": hashlib.sha256(
                         ",".join(map(str, locked)).encode()).hexdigest(),
                     "tenants": sorted({key.tenant.slug for key in keys}),
                     "key_ids": locked})
        bump_gateway_config()
    return keys, event
