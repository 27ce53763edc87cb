"""What a key has left: its own and its tenant's rate-limit windows, and the budgets that
count its usage.

Nothing here counts anything: the figures are read from the counters the rate limiter
(`gateway.ratelimit`, one per key/tenant and minute) and billing's usage drain
(`billing.budgets.counters`, one per budget and period) already keep. The gateway reads them
with one MGET on its pipelined connection — for `GET /v1/quota`, and for every request in the
same write as the rate limiter's script (`BudgetCheck`, which also refuses requests under a
blocking budget that is spent); the portal's pages read the same keys with redis-py
(`apikey_quota`) and build the same document with the same functions, so a key's page, the
playground and `/v1/quota` agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from billing.budgets.gateway import (
    MONEY_SCALE,  # counters hold money in 1e-8 units
    BudgetRule,
)
from gateway import errors, ratelimit
from gateway.errors import GatewayError
from gateway.redis_pipe import RedisReplyError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetFigure:
    rule: BudgetRule
    used: int  # in the rule's counter units

    @property
    def remaining(self) -> int:
        return max(0, self.rule.limit - self.used)

    @property
    def tokens(self) -> bool:
        return self.rule.unit == "tokens"


def money(units: int) -> str:
    """1e-8 money units as a plain decimal string ("12.5", "0.00001234"), without Decimal."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), MONEY_SCALE)
    text = f"{whole}.{fraction:08d}".rstrip("0").rstrip(".")
    return sign + text


def figure_amount(figure: BudgetFigure, units: int) -> int | str:
    return units if figure.tokens else money(units)


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


ANY_MODEL = -1


def applicable(rules: Iterable[BudgetRule], key_id: int, model_id: int, now: float
               ) -> list[tuple[BudgetRule, str]]:
    """The budgets counting a request of this key for this model (`ANY_MODEL`: the key's
    budgets of every model) in their current period, with their counter keys."""
    found = []
    for rule in rules:
        if rule.api_key_id is not None and rule.api_key_id != key_id:
            continue
        if rule.model_id is not None and model_id not in (rule.model_id, ANY_MODEL):
            continue
        counter = rule.counter_key(now)
        if counter:
            found.append((rule, counter))
    return found


def figures(pairs: list[tuple[BudgetRule, str]], values: Iterable) -> list[BudgetFigure]:
    return [BudgetFigure(rule, int(value or 0))
            for (rule, _counter), value in zip(pairs, values, strict=True)]


def tightest(found: list[BudgetFigure]) -> tuple[BudgetFigure | None, BudgetFigure | None]:
    """The token budget with the fewest tokens left, and the money budget with the smallest
    share left (money budgets may be in different currencies)."""
    tokens = [f for f in found if f.tokens]
    amounts = [f for f in found if not f.tokens]
    return (min(tokens, key=lambda f: f.remaining, default=None),
            min(amounts, key=lambda f: f.remaining / f.rule.limit if f.rule.limit else 0,
                default=None))


def budget_headers(found: list[BudgetFigure], now: float) -> list[tuple[bytes, bytes]]:
    """`x-budget-*` headers: what the tightest token and money budgets have left, and when
    their periods end (`x-budget-reset` is the earlier of the two). None without budgets."""
    tokens, amount = tightest(found)
    headers: list[tuple[bytes, bytes]] = []
    resets = []
    if tokens is not None:
        reset = tokens.rule.period_end(now)
        resets.append(reset)
        headers += [(b"x-budget-limit-tokens", str(tokens.rule.limit).encode()),
                    (b"x-budget-remaining-tokens", str(tokens.remaining).encode()),
                    (b"x-budget-reset-tokens", _utc(reset).encode())]
    if amount is not None:
        reset = amount.rule.period_end(now)
        resets.append(reset)
        headers += [(b"x-budget-limit-amount", money(amount.rule.limit).encode()),
                    (b"x-budget-remaining-amount", money(amount.remaining).encode()),
                    (b"x-budget-currency", amount.rule.currency.encode()),
                    (b"x-budget-reset-amount", _utc(reset).encode())]
    if resets:
        headers.append((b"x-budget-reset", _utc(min(resets)).encode()))
    return headers


def _window(limit: int, used: int, reset: int) -> dict:
    # Without a limit the gateway counts nothing (no script, no token counter): no figures.
    if not limit:
        return {"limit": None, "used": None, "remaining": None, "reset_seconds": reset}
    return {"limit": limit, "used": used, "remaining": max(0, limit - used),
            "reset_seconds": reset}


def quota_document(*, key_id: int, key_limits: tuple[int, int], tenant_slug: str,
                   tenant_limits: tuple[int, int], window_values: Iterable,
                   found: list[BudgetFigure], model_slugs: dict[int, str], now: float) -> dict:
    """The body of `GET /v1/quota` (and what the portal's pages show). `window_values` are
    the four counters of `ratelimit.window_keys`: key requests, key tokens, tenant requests,
    tenant tokens."""
    used = [int(value or 0) for value in window_values]
    reset = max(1, ratelimit.WINDOW_SECONDS - int(now % ratelimit.WINDOW_SECONDS))
    tokens, amount = tightest([f for f in found if f.rule.model_id is None])
    budgets = []
    for figure in found:
        rule = figure.rule
        budgets.append({
            "id": rule.id, "name": rule.name,
            "scope": "key" if rule.api_key_id is not None else "tenant",
            "model": model_slugs.get(rule.model_id) if rule.model_id else None,
            "unit": "tokens" if figure.tokens else "money",
            "currency": None if figure.tokens else rule.currency,
            "limit": figure_amount(figure, rule.limit),
            "used": figure_amount(figure, figure.used),
            "remaining": figure_amount(figure, figure.remaining),
            "blocks": rule.blocks,
            "resets_at": _utc(rule.period_end(now))})
    return {
        "object": "quota",
        "key": {"id": key_id, "rate_limits": {
            "requests": _window(key_limits[0], used[0], reset),
            "tokens": _window(key_limits[1], used[1], reset)}},
        "tenant": {"slug": tenant_slug, "rate_limits": {
            "requests": _window(tenant_limits[0], used[2], reset),
            "tokens": _window(tenant_limits[1], used[3], reset)}},
        "budget": {
            "remaining_tokens": tokens.remaining if tokens else None,
            "remaining_amount": money(amount.remaining) if amount else None,
            "currency": amount.rule.currency if amount else None,
            "resets_at": _utc(min(f.rule.period_end(now) for f in (tokens, amount) if f))
            if tokens or amount else None},
        "budgets": budgets,
    }


@dataclass
class PendingBudgets:
    """A request's budget counters, asked for (`BudgetCheck.begin`) but not yet read."""

    pairs: list[tuple[BudgetRule, str]]
    now: float
    reply: asyncio.Future | None  # None: Redis was not connected; read in `finish`


def _retrieve(future: asyncio.Future) -> None:
    # A request refused before `finish` (a rate limit) never reads its reply: mark a failed
    # one as seen, so asyncio does not log it as lost.
    if not future.cancelled():
        future.exception()


class BudgetCheck:
    """The gateway's check of every request's budgets: no work when the tenant has none; else
    one MGET of the applicable counters, queued (`begin`) before the rate limiter's script so
    both go out in one pipelined write and come back in one round trip. `finish` refuses a
    request under a blocking budget whose counter reached its limit, and otherwise answers the
    `x-budget-*` headers. Counters trail the traffic by the usage drain; see README "Budgets
    and statements" for the resulting overshoot bound."""

    def begin(self, app, key, tenant, route) -> PendingBudgets | None:
        rules = app.directory.budgets.get(tenant.id)
        if not rules:
            return None
        now = time.time()
        pairs = applicable(rules, key.id, route.model_id, now)
        if not pairs:
            return None
        reply = None
        if app.redis.connected:
            reply = app.redis.command("MGET", *[counter for _, counter in pairs])
            reply.add_done_callback(_retrieve)
        return PendingBudgets(pairs, now, reply)

    async def finish(self, app, pending: PendingBudgets | None, *, enforce: bool = True
                     ) -> list[tuple[bytes, bytes]]:
        """The `x-budget-*` headers; refuses a spent blocking budget unless `enforce` is off
        (the request is refused already, e.g. by a rate limit, and only gets the figures)."""
        if pending is None:
            return []
        try:
            if pending.reply is None:
                values = await app.redis.execute("MGET", *[c for _, c in pending.pairs])
            else:
                values = await pending.reply
        except (RedisReplyError, ConnectionError, OSError) as exc:
            if not enforce or not any(rule.blocks for rule, _ in pending.pairs):
                return []  # nothing to enforce: the figures are only information
            logger.warning("Budget counters unavailable: %s", exc)
            raise GatewayError(503, "The gateway can't check budgets right now; retry "
                                    "shortly.", type="server_error",
                               code="budget_check_unavailable") from None
        found = figures(pending.pairs, values)
        for figure in found:
            if enforce and figure.rule.blocks and figure.used >= figure.rule.limit:
                refusal = errors.insufficient_quota(figure.rule.name)
                refusal.headers = budget_headers(found, pending.now)
                raise refusal
        return budget_headers(found, pending.now)

    async def __call__(self, app, key, tenant, route) -> list[tuple[bytes, bytes]]:
        """As a PreRequestCheck on its own (its read then waits for a round trip)."""
        return await self.finish(app, self.begin(app, key, tenant, route))


async def key_budget_headers(app, key, tenant) -> list[tuple[bytes, bytes]]:
    """The `x-budget-*` headers of an answer that names no model (`/v1/models`): the budgets
    of every model that count this key. One MGET when the tenant has budgets; none without."""
    now = time.time()
    pairs = [(rule, counter) for rule, counter in applicable(
        app.directory.budgets.get(tenant.id, ()), key.id, ANY_MODEL, now)
        if rule.model_id is None]
    if not pairs:
        return []
    try:
        values = await app.redis.execute("MGET", *[counter for _, counter in pairs])
    except (RedisReplyError, ConnectionError, OSError):
        return []
    return budget_headers(figures(pairs, values), now)


async def quota_body(app, key, tenant) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """`GET /v1/quota` for the calling key: one MGET of its rate-limit windows and its budgets'
    counters. Reading counts nothing against any limit."""
    now = time.time()
    windows = ratelimit.window_keys(key.id, tenant.id, now)
    pairs = applicable(app.directory.budgets.get(tenant.id, ()), key.id, ANY_MODEL, now)
    try:
        values = await app.redis.execute("MGET", *windows, *[c for _, c in pairs])
    except (RedisReplyError, ConnectionError, OSError) as exc:
        logger.warning("Quota counters unavailable: %s", exc)
        raise GatewayError(503, "The gateway can't read quotas right now; retry shortly.",
                           type="server_error", code="quota_unavailable") from None
    found = figures(pairs, values[4:])
    slugs = {route.model_id: route.slug for route in app.directory.routes.values()}
    document = quota_document(
        key_id=key.id, key_limits=(key.rpm, key.tpm), tenant_slug=tenant.slug,
        tenant_limits=(tenant.rpm, tenant.tpm), window_values=values[:4], found=found,
        model_slugs=slugs, now=now)
    headers = budget_headers([f for f in found if f.rule.model_id is None], now)
    return orjson.dumps(document), headers
