from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from billing.budgets.gateway import gateway_budget_rules
from gateway import quota, ratelimit
from gateway.models import PLAYGROUND_KEY_NAME, ApiKey
from models_catalog.models import Model
from tenants.models import Tenant, User


def apikey_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return (ApiKey.objects.for_tenant(tenant).select_related("owner")
            .prefetch_related("allowed_models").order_by("revoked_at", "-created_at", "-pk"))


def apikey_get(*, tenant: Tenant, pk: int) -> ApiKey:
    return apikey_list(tenant=tenant).get_or_404(pk, missing="No such API key.")


def apikey_get_by_prefix(prefix: str) -> ApiKey | None:
    """The key with this prefix, its tenant and allowed models (two queries), for the
    gateway's key cache; None when no key has it."""
    return (ApiKey.objects.filter(prefix=prefix).select_related("tenant")
            .prefetch_related("allowed_models").first())


def apikey_quota(*, key: ApiKey) -> dict | None:
    """What the key has left, as `GET /v1/quota` answers it (`gateway.quota`): the same
    counters, rules and document, read here with redis-py. None without Redis (no gateway)."""
    if not settings.REDIS_URL:
        return None
    now = time.time()
    tenant = key.tenant
    rules = gateway_budget_rules(tenant_id=tenant.pk).get(tenant.pk, [])
    pairs = quota.applicable(rules, key.pk, quota.ANY_MODEL, now)
    windows = ratelimit.window_keys(key.pk, tenant.pk, now)
    try:
        values = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5).mget(
            [*windows, *[counter for _, counter in pairs]])
    except redis.RedisError:
        return None
    model_ids = {rule.model_id for rule, _ in pairs if rule.model_id}
    slugs = dict(Model.objects.filter(pk__in=model_ids).values_list("pk", "slug"))
    return quota.quota_document(
        key_id=key.pk, key_limits=(key.rpm_limit or 0, key.tpm_limit or 0),
        tenant_slug=tenant.slug,
        tenant_limits=(tenant.rate_limit_rpm or 0, tenant.rate_limit_tpm or 0),
        window_values=values[:4], found=quota.figures(pairs, values[4:]), model_slugs=slugs,
        now=now)


def playground_key(*, user, tenant: Tenant) -> ApiKey | None:
    """The person's current playground key (`services.playground_token` makes it), if any."""
    return (ApiKey.objects.for_tenant(tenant).select_related("tenant")
            .filter(owner=user, name=PLAYGROUND_KEY_NAME, revoked_at__isnull=True,
                    expires_at__gt=timezone.now())
            .order_by("-created_at").first())


def apikey_bulk_selection(*, tenant: Tenant | None, owner=None, model: Model | None = None
                          ) -> QuerySet[ApiKey]:
    """The keys a bulk revoke acts on: not yet revoked, of `tenant` (None: every tenant — the
    MSP's scope, with `model`), owned by `owner` and/or allowed to `model` (keys that list it
    among their allowed models; keys allowed every model are not "allowed to a model")."""
    keys = ApiKey.objects.filter(revoked_at__isnull=True)
    if tenant is not None:
        keys = keys.for_tenant(tenant)
    if owner is not None:
        keys = keys.filter(owner=owner)
    if model is not None:
        keys = keys.filter(allowed_models=model)
    return (keys.select_related("owner", "tenant").prefetch_related("allowed_models")
            .order_by("tenant__slug", "pk"))


def key_owner_get(*, tenant: Tenant, pk: int):
    """A person whose keys a tenant admin may act on: a member of the tenant or the owner of
    one of its keys; anyone else is a 404, exactly like nobody."""
    owner = (User.objects.filter(pk=pk).filter(
        Q(memberships__tenant=tenant) | Q(api_keys__tenant=tenant)).distinct().first())
    if owner is None:
        raise Http404("No such person in this tenant.")
    return owner


def key_owner_choices(*, tenant: Tenant) -> QuerySet[User]:
    return (User.objects.filter(Q(memberships__tenant=tenant) | Q(api_keys__tenant=tenant))
            .distinct().order_by("email"))
