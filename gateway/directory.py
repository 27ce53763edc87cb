"""What the gateway knows about keys, tenants and routes, cached in each worker.

Routes and tenants are loaded whole (they are small) at start-up and whenever the portal
bumps the configuration version; keys are loaded one by one on first use and cached, unknown
prefixes too (apart, so garbage can't push real keys out). Both caches are bounded and drop
their least recently used entries when full. The database is reached only on a reload or a
miss, in a thread, never on the hot path, and only through the owning apps' selectors
(`*_for_gateway`) and billing's interface for the gateway (`billing.budgets.gateway`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from billing.budgets.gateway import BudgetRule, gateway_budget_rules
from deployments.selectors import deployment_list_for_gateway
from gateway.selectors import apikey_get_by_prefix
from models_catalog.selectors import model_list_for_gateway
from portal import stored_secrets
from tenants.selectors import tenant_list_for_gateway

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    tenant_id: int
    secret_hash: str
    previous_secret_hash: str
    previous_valid_until: float | None
    expires_at: float | None
    revoked: bool
    model_ids: frozenset[int]
    rpm: int
    tpm: int
    networks: tuple


@dataclass(frozen=True)
class TenantInfo:
    id: int
    slug: str
    active: bool
    rpm: int
    tpm: int


@dataclass(frozen=True)
class Upstream:
    deployment_id: int
    tenant_id: int | None
    url: str
    model_name: str
    auth_header: str
    disabled: bool = False  # skipped: its stored API key can't be decrypted


@dataclass
class Route:
    model_id: int
    slug: str
    task: str
    lifecycle: str
    all_tenants: bool
    entitled: frozenset[int]
    created: int
    owned_by: str
    upstreams: list[Upstream] = field(default_factory=list)
    # A deprecation's dates (epoch seconds) and successor's slug: gateway.deprecation.
    deprecated_at: float | None = None
    sunset_at: float | None = None
    successor: str = ""
    _turn: itertools.count = field(default_factory=itertools.count)

    def upstreams_for(self, tenant_id: int) -> list[Upstream]:
        """Shared upstreams plus this tenant's dedicated ones, rotated for load balancing."""
        usable = [u for u in self.upstreams
                  if u.tenant_id in (None, tenant_id) and not u.disabled]
        if len(usable) > 1:
            start = next(self._turn) % len(usable)
            usable = usable[start:] + usable[:start]
        return usable

    def disabled_for(self, tenant_id: int) -> list[Upstream]:
        return [u for u in self.upstreams if u.tenant_id in (None, tenant_id) and u.disabled]

    def entitles(self, tenant_id: int) -> bool:
        return self.all_tenants or tenant_id in self.entitled

    def visible_to(self, tenant_id: int) -> bool:
        return (self.lifecycle != "retired" and self.entitles(tenant_id)
                and any(u.tenant_id in (None, tenant_id) for u in self.upstreams))


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _tenant_info(tenant) -> TenantInfo:
    return TenantInfo(tenant.pk, tenant.slug, tenant.is_active, tenant.rate_limit_rpm or 0,
                      tenant.rate_limit_tpm or 0)


def _load_key(prefix: str) -> tuple[KeyInfo, TenantInfo] | None:
    close_old_connections()
    key = apikey_get_by_prefix(prefix)
    if key is None:
        return None
    return KeyInfo(
        id=key.pk, tenant_id=key.tenant_id, secret_hash=key.secret_hash,
        previous_secret_hash=key.previous_secret_hash,
        previous_valid_until=_epoch(key.previous_valid_until),
        expires_at=_epoch(key.expires_at), revoked=key.revoked_at is not None,
        model_ids=frozenset(m.pk for m in key.allowed_models.all()),
        rpm=key.rpm_limit or 0, tpm=key.tpm_limit or 0,
        networks=tuple(ipaddress.ip_network(n) for n in key.allowed_networks),
    ), _tenant_info(key.tenant)


def _load_routes_and_tenants() -> tuple[dict[str, Route], dict[int, TenantInfo]]:
    """Every tenant and every model with its ready upstreams: four queries, however many
    rows (the owning apps' selectors load what the gateway reads, nothing per row)."""
    close_old_connections()
    tenants = {t.pk: _tenant_info(t) for t in tenant_list_for_gateway()}
    routes: dict[str, Route] = {}
    for model in model_list_for_gateway():
        routes[model.slug] = Route(
            model_id=model.pk, slug=model.slug, task=model.task, lifecycle=model.lifecycle,
            all_tenants=model.available_to_all_tenants,
            entitled=frozenset(t.pk for t in model.entitled_tenants.all()),
            created=int(model.created_at.timestamp()), owned_by=model.provider or "platform",
            deprecated_at=_epoch(model.deprecated_at), sunset_at=_epoch(model.sunset_at),
            successor=model.successor.slug if model.successor_id else "")
    by_id = {route.model_id: route for route in routes.values()}
    for deployment in deployment_list_for_gateway():
        try:
            key = stored_secrets.reveal(deployment, "upstream_api_key_encrypted")
            disabled = False
        except stored_secrets.SecretUnreadable as exc:
            # Only this upstream is skipped (and audited once); the others keep serving.
            logger.warning("Skipping deployment %s (%s): %s", deployment.pk, deployment.name,
                           exc.message)
            key, disabled = "", True
        by_id[deployment.model_id].upstreams.append(Upstream(
            deployment_id=deployment.pk, tenant_id=deployment.tenant_id,
            url=deployment.base_url.rstrip("/"), model_name=deployment.served_model_name,
            auth_header=f"Bearer {key}" if key else "", disabled=disabled))
    return routes, tenants


class Directory:
    def __init__(self, ttl: float, max_keys: int = 100_000):
        self.ttl = ttl
        self.max_keys = max_keys
        self.routes: dict[str, Route] = {}
        self.tenants: dict[int, TenantInfo] = {}
        self.budgets: dict[int, list[BudgetRule]] = {}
        # prefix → (key, cached at) and unknown prefix → cached at; least recently used first.
        self._keys: OrderedDict[str, tuple[KeyInfo, float]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._loading: dict[str, asyncio.Future] = {}
        self._generation = 0  # bumped by every reload; a lookup begun before one isn't kept
        self.loaded_at = 0.0

    async def reload(self) -> None:
        routes, tenants = await sync_to_async(_load_routes_and_tenants, thread_sensitive=False)()
        budgets = await sync_to_async(gateway_budget_rules, thread_sensitive=False)()
        self.routes, self.tenants, self.budgets = routes, tenants, budgets
        self._keys, self._unknown = OrderedDict(), OrderedDict()
        self._generation += 1
        self.loaded_at = time.monotonic()

    def cached_key(self, prefix: str) -> KeyInfo | None:
        """The key with this prefix when it is cached and fresh; None needs `key()`."""
        cached = self._keys.get(prefix)
        if cached is None or time.monotonic() - cached[1] >= self.ttl:
            return None
        self._keys.move_to_end(prefix)
        return cached[0]

    def known_unknown(self, prefix: str) -> bool:
        """Whether this prefix was looked up recently and no key has it."""
        seen = self._unknown.get(prefix)
        if seen is None or time.monotonic() - seen >= self.ttl:
            return False
        self._unknown.move_to_end(prefix)
        return True

    async def key(self, prefix: str) -> KeyInfo | None:
        info = self.cached_key(prefix)
        if info is not None or self.known_unknown(prefix):
            return info
        # One database lookup per prefix at a time: the requests that miss together (a cold
        # worker under load, an expired entry) all wait for the same one.
        pending = self._loading.get(prefix)
        if pending is None:
            pending = asyncio.ensure_future(self._load(prefix, time.monotonic(),
                                                       self._generation))
            self._loading[prefix] = pending
            pending.add_done_callback(lambda _: self._loading.pop(prefix, None))
        return await asyncio.shield(pending)

    async def _load(self, prefix: str, now: float, generation: int) -> KeyInfo | None:
        loaded = await sync_to_async(_load_key, thread_sensitive=False)(prefix)
        info = None
        if loaded is not None:
            info, tenant = loaded
            # A tenant created after the last reload arrives with its key.
            self.tenants.setdefault(tenant.id, tenant)
        if generation == self._generation:
            if info is None:
                self._remember(self._unknown, prefix, now)
            else:
                self._unknown.pop(prefix, None)
                self._remember(self._keys, prefix, (info, now))
        return info

    def _remember(self, cache: OrderedDict, prefix: str, value) -> None:
        cache[prefix] = value
        cache.move_to_end(prefix)
        while len(cache) > self.max_keys:
            cache.popitem(last=False)

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at >= self.ttl
