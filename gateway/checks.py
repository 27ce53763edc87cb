"""Checks that may refuse a request after authentication and before forwarding: the rate
limiter here, the budget check in `gateway.quota`. They read only cached or Redis state,
never the database."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from gateway import ratelimit
from gateway.directory import KeyInfo, Route, TenantInfo
from gateway.errors import GatewayError
from gateway.redis_pipe import RedisReplyError

if TYPE_CHECKING:
    from gateway.app import GatewayApp

# The gateway's request path logs as one logger, which operators' filters and alerts name.
logger = logging.getLogger("gateway.app")


class PreRequestCheck(Protocol):
    """What `GatewayApp.checks` holds: a check that may refuse a request (by raising
    GatewayError) after authentication and before forwarding, and otherwise returns headers
    for the response. The rate limiter is one; the budget check (`gateway.quota.BudgetCheck`)
    runs beside them, its Redis read queued before theirs. Checks read only cached or Redis
    state: never the database."""

    async def __call__(self, app: GatewayApp, key: KeyInfo, tenant: TenantInfo,
                       route: Route) -> list[tuple[bytes, bytes]]: ...


class RateLimitCheck:
    async def __call__(self, app: GatewayApp, key: KeyInfo, tenant: TenantInfo,
                       route: Route) -> list[tuple[bytes, bytes]]:
        limits = (key.rpm, key.tpm, tenant.rpm, tenant.tpm)
        if not any(limits):
            return []
        now = time.time()
        windows = ratelimit.window_keys(key.id, tenant.id, now)
        args = (4, *windows, *limits, ratelimit.WINDOW_SECONDS * 2)
        try:
            try:
                result = await app.redis.execute("EVALSHA", app.ratelimit_sha, *args)
            except RedisReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                # Redis restarted and forgot the script.
                app.ratelimit_sha = await app.load_scripts()
                result = await app.redis.execute("EVALSHA", app.ratelimit_sha, *args)
        except (RedisReplyError, ConnectionError, OSError) as exc:
            logger.warning("Rate limiter unavailable: %s", exc)  # an outage: no traceback each
            raise GatewayError(503, "The gateway can't check rate limits right now; retry "
                                    "shortly.", type="server_error",
                               code="rate_limiter_unavailable") from None
        decision = ratelimit.decide([int(v) for v in result], limits, now)
        if decision.refused:
            who = "this API key" if decision.scope == "key" else "your organisation"
            raise GatewayError(
                429, f"Rate limit reached for {who}: {decision.refused} per minute. Retry after "
                     f"{decision.retry_after} s, or ask your admin for a higher limit.",
                type="requests", code="rate_limit_exceeded", headers=decision.headers)
        return decision.headers
