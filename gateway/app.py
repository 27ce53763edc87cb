"""The OpenAI-compatible gateway: a small ASGI app for /v1/*, routed before Django.

Serves OpenAI's chat completions, completions, embeddings and Responses API, and Anthropic's
Messages API (`gateway.apis` holds what differs between them). Per request: find the key (an
`Authorization: Bearer` or `x-api-key` header) by its public prefix in the worker's cache and
compare the secret's hash in constant time; resolve `model` to an upstream the tenant may
use; one Redis EVALSHA for rate limits; forward with the worker's pooled aiohttp session
(`gateway.forwarder`; streams pass through chunk by chunk); read the usage; queue a usage
event. No database query, no Django request cycle, no prompt or answer content kept anywhere.
See DESIGN.md for why it is not a Django view.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid

import aiohttp
import orjson
from django.conf import settings

from gateway import errors, quota, ratelimit
from gateway.apis import Api
from gateway.apis.chat import ChatCompletions, Completions, Embeddings
from gateway.apis.messages import Messages
from gateway.apis.responses import Responses
from gateway.checks import PreRequestCheck, RateLimitCheck
from gateway.deprecation import deprecation_headers, past_sunset
from gateway.directory import Directory, KeyInfo, Route, TenantInfo
from gateway.errors import GatewayError
from gateway.forwarder import FORWARDED, JSON, Forwarder, Receive, Scope, Send, respond
from gateway.keys import hash_token, prefix_of
from gateway.metrics import REFUSALS, GatewayMetrics
from gateway.redis_pipe import PipelinedRedis, RedisReplyError
from gateway.tokens import TokenCounter
from gateway.usage import UsageRecorder
from portal import metrics as portal_metrics
from portal import outbound, request_context, tracing
from portal.gateway_config import CONFIG_VERSION_KEY

logger = logging.getLogger(__name__)

# endpoint path → the API it serves
ENDPOINTS: dict[str, Api] = {
    "/v1/chat/completions": ChatCompletions(),
    "/v1/completions": Completions(),
    "/v1/embeddings": Embeddings(),
    "/v1/responses": Responses(),
    "/v1/messages": Messages(),
}
_OPENAI = ChatCompletions()  # the error shape of /v1/models and unknown URLs
_CONFIG_POLL_SECONDS = 0.25
# What a request's ASGI scope learns on its way, for its metrics and log lines.
_TENANT, _MODEL, _ACTOR = "portal.tenant", "portal.model", "portal.actor"
_STATUS, _REQUEST_ID = "portal.status", "portal.request_id"


class GatewayApp:
    def __init__(self) -> None:
        self.directory = Directory(ttl=settings.GATEWAY_CACHE_TTL,
                                   max_keys=settings.GATEWAY_KEY_CACHE_SIZE)
        self.failed_auth = ratelimit.FailedAuthLimiter(settings.GATEWAY_AUTH_FAILURES_PER_MINUTE)
        self.max_body = settings.GATEWAY_MAX_BODY_BYTES
        self.body_timeout = settings.GATEWAY_BODY_TIMEOUT
        self.max_upstream_body = settings.GATEWAY_MAX_UPSTREAM_BODY_BYTES
        self.max_stream_event = settings.GATEWAY_MAX_STREAM_EVENT_BYTES
        self.stream_idle_timeout = settings.GATEWAY_STREAM_IDLE_TIMEOUT
        self.answer_timeout = aiohttp.ClientTimeout(total=settings.GATEWAY_UPSTREAM_TIMEOUT,
                                                    sock_connect=settings.GATEWAY_CONNECT_TIMEOUT)
        # A stream may also not fall silent for longer than this between two chunks.
        self.stream_timeout = aiohttp.ClientTimeout(
            total=settings.GATEWAY_UPSTREAM_TIMEOUT, sock_connect=settings.GATEWAY_CONNECT_TIMEOUT,
            sock_read=self.stream_idle_timeout)
        self.checks: list[PreRequestCheck] = [RateLimitCheck()]
        self.budget_check = quota.BudgetCheck()
        self.redis: PipelinedRedis | None = None
        self.session: aiohttp.ClientSession | None = None
        self.usage: UsageRecorder | None = None
        self.tokens = TokenCounter()
        self.metrics = GatewayMetrics()
        self.metrics.gauges["portal_gateway_usage_events_buffered"] = (
            lambda: self.usage.buffered() if self.usage else 0)
        self.metrics.samplers.append(self._sample_usage_drops)
        self.ratelimit_sha = ""
        self._config_version: bytes | None = None
        self._watcher: asyncio.Task | None = None
        self._preload: asyncio.Task | None = None
        self.ready = False

    # --- lifecycle -------------------------------------------------------------------

    def _sample_usage_drops(self, metrics: GatewayMetrics) -> None:
        if self.usage:
            metrics.counters["portal_gateway_usage_events_dropped"][()] = self.usage.dropped

    async def startup(self) -> None:
        if portal_metrics.metrics_dir():
            self.metrics.start(portal_metrics.metrics_dir())
        if not settings.REDIS_URL:
            logger.warning("REDIS_URL is not set: the /v1 gateway answers 503 until it is.")
            return
        self.redis = PipelinedRedis(settings.REDIS_URL)
        self.ratelimit_sha = await self.load_scripts()
        # Model servers are reached through the outbound policy: every DNS answer is vetted
        # and the connector connects to (and caches) only vetted ones.
        resolver = outbound.VettedResolver(outbound.msp_policy())
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, resolver=resolver),
            timeout=self.answer_timeout, auto_decompress=False)
        self.usage = UsageRecorder(self.redis)
        self.usage.start()
        self._config_version = await self.redis.execute("GET", CONFIG_VERSION_KEY)
        await self.directory.reload()
        self._watcher = asyncio.create_task(self._watch_config(), name="config-watcher")
        # Tokenizers for requests whose server reports no usage: loaded now, not per request.
        self._preload = asyncio.create_task(self.tokens.preload(
            sorted({route.model_id for route in self.directory.routes.values()})),
            name="tokenizer-preload")
        self.ready = True

    async def shutdown(self) -> None:
        for task in (self._watcher, self._preload):
            if task:
                task.cancel()
        if self.usage:
            await self.usage.close()
        await self.metrics.close(portal_metrics.metrics_dir())
        tracing.shutdown()
        if self.session:
            await self.session.close()
        if self.redis:
            await self.redis.close()

    async def load_scripts(self) -> str:
        sha = await self.redis.execute("SCRIPT", "LOAD", ratelimit.LUA)
        return sha.decode() if isinstance(sha, bytes) else sha

    async def _watch_config(self) -> None:
        """Reload within a second of any change in the portal (a revoked key, a new route)."""
        redis_down = False
        while True:
            await asyncio.sleep(_CONFIG_POLL_SECONDS)
            try:
                version = await self.redis.execute("GET", CONFIG_VERSION_KEY)
                redis_down = False
                if version != self._config_version or self.directory.stale():
                    self._config_version = version
                    await self.directory.reload()
            except (RedisReplyError, ConnectionError, OSError) as exc:
                if not redis_down:  # once per outage, not four times a second
                    logger.warning("Redis is unreachable (%s); serving from the cached "
                                   "configuration until it is back.", exc)
                redis_down = True
            except Exception:  # keep serving from the cache; log and try again
                logger.exception("Gateway configuration reload failed.")

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("Gateway start-up failed.")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- requests --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not tracing.ENABLED:
            await self._serve(scope, receive, send)
            return
        path = scope["path"]
        name = path if path.rstrip("/") in ENDPOINTS or path.startswith("/v1/models") else "/v1"
        incoming = {key.decode("latin-1"): value.decode("latin-1")
                    for key, value in scope["headers"] if key == b"traceparent"}
        with tracing.span(f"{scope['method']} {name}", kind="server",
                          parent=tracing.extract(incoming),
                          attributes={"http.request.method": scope["method"],
                                      "url.path": path}) as span:
            await self._serve(scope, receive, send)
            span.set_attributes({"http.response.status_code": scope.get(_STATUS, 0),
                                 "portal.tenant": scope.get(_TENANT, ""),
                                 "portal.model": scope.get(_MODEL, ""),
                                 "portal.request_id": scope.get(_REQUEST_ID, "")})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = "req_" + uuid.uuid4().hex
        started = time.perf_counter()
        status = 200
        # Errors come in the shape of the API the client called (Anthropic's on /v1/messages).
        api = ENDPOINTS.get(scope["path"].rstrip("/"), _OPENAI)
        try:
            if not self.ready:
                raise GatewayError(503, "The gateway is not available: the operator must set "
                                        "REDIS_URL.", type="server_error")
            await self._handle(scope, receive, send, request_id, started, api)
        except GatewayError as exc:
            status = exc.status
            if exc.code in REFUSALS:
                self.metrics.count("portal_gateway_refusals", scope.get(_TENANT, ""), exc.code)
            await respond(send, exc.status, api.error_body(exc), JSON + exc.headers, request_id)
        except Exception:
            status = 500
            logger.exception("Gateway error on %s", scope.get("path"), extra={
                "request_id": request_id, "tenant": scope.get(_TENANT, ""),
                "actor": scope.get(_ACTOR, "")})
            await respond(send, 500, api.error_body(GatewayError(
                500, "The gateway hit an internal error; it has been logged.",
                type="server_error")), JSON, request_id)
        if FORWARDED not in scope:  # the Forwarder counted its own, with tokens and timings
            self.metrics.request(scope.get(_TENANT, ""), scope.get(_MODEL, ""), status)
        if tracing.ENABLED:
            scope[_STATUS], scope[_REQUEST_ID] = status, request_id

    async def _handle(self, scope, receive, send, request_id: str, started: float,
                      api: Api) -> None:
        path, method = scope["path"], scope["method"]
        key, tenant = await self._authenticate(scope, api)
        scope[_TENANT] = tenant.slug
        scope[_ACTOR] = f"api_key:{key.id}"
        if path in ("/v1/quota", "/v1/quota/"):
            if method != "GET":
                raise GatewayError(405, "Use GET for /v1/quota.")
            body, headers = await quota.quota_body(self, key, tenant)
            await respond(send, 200, body, JSON + headers, request_id)
            return
        if path in ("/v1/models", "/v1/models/"):
            if method != "GET":
                raise GatewayError(405, "Use GET for /v1/models.")
            body = orjson.dumps({"object": "list", "data": [
                _model_entry(route) for route in self._visible_routes(key, tenant)]})
            await respond(send, 200, body, JSON + await quota.key_budget_headers(
                self, key, tenant), request_id)
            return
        if path.startswith("/v1/models/"):
            route = self._route_for(path[len("/v1/models/"):], key, tenant)
            await respond(send, 200, orjson.dumps(_model_entry(route)),
                          JSON + await quota.key_budget_headers(self, key, tenant), request_id)
            return
        if path.rstrip("/") not in ENDPOINTS:
            raise GatewayError(404, f"Unknown request URL: {method} {path}.",
                               code="unknown_url")
        if method != "POST":
            raise GatewayError(405, f"Use POST for {path}.")
        request = api.parse(await self._read_body(scope, receive))
        route = self._route_for(request["model"], key, tenant)
        scope[_MODEL] = route.slug
        if route.task not in api.tasks:
            raise errors.bad_request(
                f"`{route.slug}` is a {route.task} model; it can't serve {path}.", param="model")
        headers = [(b"x-request-id", request_id.encode()),
                   *deprecation_headers(route, time.time())]
        # The budget counters' MGET is queued first: it goes out in the same pipelined write
        # as the rate limiter's script, and its reply comes back in the same round trip.
        budgets = self.budget_check.begin(self, key, tenant, route)
        try:
            for check in self.checks:
                headers += await check(self, key, tenant, route)
        except GatewayError as refusal:  # a 429 shows the budgets' figures too
            refusal.headers = [*refusal.headers, *await self.budget_check.finish(
                self, budgets, enforce=False)]
            refusal.headers += api.rate_limit_headers(refusal.headers, time.time())
            raise
        headers += await self.budget_check.finish(self, budgets)
        headers += api.rate_limit_headers(headers, time.time())
        await Forwarder(self, scope, receive, send, request_id, started, key, tenant, route,
                        api, request, headers).run()

    async def _authenticate(self, scope: Scope, api: Api) -> tuple[KeyInfo, TenantInfo]:
        authorization = api_key = ""
        for name, value in scope["headers"]:
            if name == b"authorization" and not authorization:
                authorization = value.decode("latin-1")
            elif name == b"x-api-key" and not api_key:  # as Anthropic's clients send it
                api_key = value.decode("latin-1").strip()
        scheme, _, token = authorization.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        token = token or api_key
        if not token:
            raise errors.missing_key(api.missing_key_hint)
        prefix = prefix_of(token)
        now = time.time()
        key = self.directory.cached_key(prefix) if prefix else None
        if key is None:  # garbage, an unknown prefix or a cache miss: the guarded slow path
            key = await self._lookup_key(scope, prefix, now)
        presented = hash_token(token)
        matches = hmac.compare_digest(presented, key.secret_hash) or bool(
            key.previous_secret_hash and key.previous_valid_until
            and now < key.previous_valid_until
            and hmac.compare_digest(presented, key.previous_secret_hash))
        if not matches:
            self.failed_auth.add(self.failed_auth.client_key(_client_address(scope)), now)
            raise errors.invalid_key()
        if key.revoked:
            raise errors.invalid_key("This API key has been revoked.")
        if key.expires_at is not None and now >= key.expires_at:
            raise errors.invalid_key("This API key has expired; create a new one in the portal.")
        tenant = self.directory.tenants.get(key.tenant_id)
        if tenant is None or not tenant.active:
            raise GatewayError(403, "Your organisation's access is suspended; contact your "
                                    "platform operator.", type="permission_error",
                               code="tenant_suspended")
        if key.networks:
            address = _client_address(scope)
            if address is None or not any(address in net for net in key.networks):
                raise GatewayError(403, "This API key may not be used from your network "
                                        f"address ({address}).", type="permission_error",
                                   code="ip_not_allowed")
        return key, tenant

    async def _lookup_key(self, scope: Scope, prefix: str | None, now: float) -> KeyInfo:
        """A key that is not in the cache, for a client that has not failed too often: each
        failure counts against the client's address (FailedAuthLimiter), and past the limit
        it gets a 429 before any database lookup."""
        client = self.failed_auth.client_key(_client_address(scope))
        retry_after = self.failed_auth.retry_after(client, now)
        if retry_after:
            raise GatewayError(
                429, "Too many requests with invalid API keys from your address; retry after "
                     f"{retry_after} s with a valid key.", type="requests",
                code="too_many_invalid_keys",
                headers=[(b"retry-after", str(retry_after).encode())])
        key = await self.directory.key(prefix) if prefix else None
        if key is None:
            self.failed_auth.add(client, now)
            raise errors.invalid_key()
        return key

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, at most `max_body` bytes (413 as soon as Content-Length or the
        bytes counted so far say more), within `body_timeout` seconds (408): a client that
        trickles its body is cut off."""
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise errors.request_too_large(limit)
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise GatewayError(400, "The client closed the connection before "
                                                "sending the body.")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise errors.request_too_large(limit)
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        return b"".join(chunks)
        except TimeoutError:
            raise GatewayError(408, f"The request body did not arrive within {self.body_timeout}"
                                    " s; send it at once.", code="request_timeout",
                               headers=[(b"connection", b"close")]) from None

    def _visible_routes(self, key: KeyInfo, tenant: TenantInfo) -> list[Route]:
        """What GET /v1/models lists: models past their sunset answer 410 and are left out."""
        now = time.time()
        return [route for route in self.directory.routes.values()
                if route.visible_to(tenant.id)
                and (not key.model_ids or route.model_id in key.model_ids)
                and not past_sunset(route, now)]

    def _route_for(self, model: str, key: KeyInfo, tenant: TenantInfo) -> Route:
        route = self.directory.routes.get(model)
        if route is None or (key.model_ids and route.model_id not in key.model_ids):
            raise errors.model_not_found(model)
        if not route.visible_to(tenant.id):
            # A retired model the tenant was entitled to: say so, and what to use instead
            # (still OpenAI's 404 model_not_found); to others it does not exist.
            if route.lifecycle == "retired" and route.entitles(tenant.id):
                raise errors.model_retired(route.slug, route.successor)
            raise errors.model_not_found(model)
        return route


# --- helpers ------------------------------------------------------------------------------


def _model_entry(route: Route) -> dict:
    return {"id": route.slug, "object": "model", "created": route.created,
            "owned_by": route.owned_by}


def _client_address(scope: Scope) -> request_context.IPAddress | None:
    """The client's address; X-Forwarded-For counts only from TRUSTED_PROXIES."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded_for = ""
    if request_context.is_trusted_proxy(peer):
        forwarded_for = ",".join(value.decode("latin-1") for name, value in scope["headers"]
                                 if name == b"x-forwarded-for")
    return request_context.client_address(peer, forwarded_for)



