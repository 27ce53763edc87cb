"""The OpenAI-compatible gateway: a small ASGI app for /v1/*, routed before Django.

Per request: find the key by its public prefix in the worker's cache and compare the secret's
hash in constant time; resolve `model` to an upstream the tenant may use; one Redis EVALSHA
for rate limits; forward with the worker's pooled aiohttp session (streams pass through chunk
by chunk); read `usage`; queue a usage event. No database query, no Django request cycle, no
prompt or answer content kept anywhere. See DESIGN.md for why it is not a Django view.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import orjson
from django.conf import settings

from gateway import errors, quota, ratelimit
from gateway.deprecation import deprecation_headers
from gateway.directory import Directory, KeyInfo, Route, TenantInfo, Upstream
from gateway.errors import GatewayError
from gateway.keys import hash_token, prefix_of
from gateway.metrics import REFUSALS, GatewayMetrics
from gateway.redis_pipe import PipelinedRedis, RedisReplyError
from gateway.tokens import TokenCounter, heuristic_count, request_text, response_text, stream_text
from gateway.usage import UsageRecorder
from portal import metrics as portal_metrics
from portal import outbound, request_context, tracing
from portal.gateway_config import CONFIG_VERSION_KEY

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

# endpoint path → (catalog tasks it serves, upstream path)
ENDPOINTS = {
    "/v1/chat/completions": (("chat",), "/chat/completions"),
    "/v1/completions": (("completion", "chat"), "/completions"),
    "/v1/embeddings": (("embeddings",), "/embeddings"),
}
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]
_CONFIG_POLL_SECONDS = 0.25
# What a request's ASGI scope learns on its way, for its metrics and log lines.
_TENANT, _MODEL, _ACTOR, _FORWARDED = ("portal.tenant", "portal.model", "portal.actor",
                                       "portal.forwarded")
_STATUS, _REQUEST_ID = "portal.status", "portal.request_id"


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
        try:
            if not self.ready:
                raise GatewayError(503, "The gateway is not available: the operator must set "
                                        "REDIS_URL.", type="server_error")
            await self._handle(scope, receive, send, request_id, started)
        except GatewayError as exc:
            status = exc.status
            if exc.code in REFUSALS:
                self.metrics.count("portal_gateway_refusals", scope.get(_TENANT, ""), exc.code)
            await _respond(send, exc.status, exc.body(), _JSON + exc.headers, request_id)
        except Exception:
            status = 500
            logger.exception("Gateway error on %s", scope.get("path"), extra={
                "request_id": request_id, "tenant": scope.get(_TENANT, ""),
                "actor": scope.get(_ACTOR, "")})
            await _respond(send, 500, GatewayError(500, "The gateway hit an internal error; it "
                                                        "has been logged.",
                                                   type="server_error").body(),
                           _JSON, request_id)
        if _FORWARDED not in scope:  # the Forwarder counted its own, with tokens and timings
            self.metrics.request(scope.get(_TENANT, ""), scope.get(_MODEL, ""), status)
        if tracing.ENABLED:
            scope[_STATUS], scope[_REQUEST_ID] = status, request_id

    async def _handle(self, scope, receive, send, request_id: str, started: float) -> None:
        path, method = scope["path"], scope["method"]
        key, tenant = await self._authenticate(scope)
        scope[_TENANT] = tenant.slug
        scope[_ACTOR] = f"api_key:{key.id}"
        if path in ("/v1/quota", "/v1/quota/"):
            if method != "GET":
                raise GatewayError(405, "Use GET for /v1/quota.")
            body, headers = await quota.quota_body(self, key, tenant)
            await _respond(send, 200, body, _JSON + headers, request_id)
            return
        if path in ("/v1/models", "/v1/models/"):
            if method != "GET":
                raise GatewayError(405, "Use GET for /v1/models.")
            body = orjson.dumps({"object": "list", "data": [
                _model_entry(route) for route in self._visible_routes(key, tenant)]})
            await _respond(send, 200, body, _JSON + await quota.key_budget_headers(
                self, key, tenant), request_id)
            return
        if path.startswith("/v1/models/"):
            route = self._route_for(path[len("/v1/models/"):], key, tenant)
            await _respond(send, 200, orjson.dumps(_model_entry(route)),
                           _JSON + await quota.key_budget_headers(self, key, tenant),
                           request_id)
            return
        endpoint = ENDPOINTS.get(path.rstrip("/"))
        if endpoint is None:
            raise GatewayError(404, f"Unknown request URL: {method} {path}.",
                               code="unknown_url")
        if method != "POST":
            raise GatewayError(405, f"Use POST for {path}.")
        request = _parse_body(await self._read_body(scope, receive), path)
        route = self._route_for(request["model"], key, tenant)
        scope[_MODEL] = route.slug
        tasks, upstream_path = endpoint
        if route.task not in tasks:
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
            raise
        headers += await self.budget_check.finish(self, budgets)
        await Forwarder(self, scope, receive, send, request_id, started, key, tenant, route,
                        path, upstream_path, request, headers).run()

    async def _authenticate(self, scope: Scope) -> tuple[KeyInfo, TenantInfo]:
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.missing_key()
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
        return [route for route in self.directory.routes.values()
                if route.visible_to(tenant.id)
                and (not key.model_ids or route.model_id in key.model_ids)]

    def _route_for(self, model: str, key: KeyInfo, tenant: TenantInfo) -> Route:
        route = self.directory.routes.get(model)
        if (route is None or not route.visible_to(tenant.id)
                or (key.model_ids and route.model_id not in key.model_ids)):
            raise errors.model_not_found(model)
        return route


class Forwarder:
    """One request's trip to an upstream and back, and its usage event."""

    def __init__(self, app: GatewayApp, scope, receive, send, request_id, started, key, tenant,
                 route: Route, path: str, upstream_path: str, request: dict, headers):
        self.app, self.scope, self.receive, self.send = app, scope, receive, send
        self.request_id, self.started = request_id, started
        self.key, self.tenant, self.route = key, tenant, route
        self.path, self.upstream_path, self.request = path, upstream_path, request
        self.headers = headers
        self.stream = request.get("stream") is True
        self.client_wants_usage = bool(
            self.stream and isinstance(request.get("stream_options"), dict)
            and request["stream_options"].get("include_usage"))
        self.upstream: Upstream | None = None
        self.status = 0
        self.usage: dict | None = None
        self.output_chunks = 0
        self.events: list[bytes] = []  # a streamed answer's events, to count if no `usage`
        self.reply: dict | None = None  # a non-streamed answer without `usage`, to count
        self.ttft_ms: int | None = None
        self.started_response = False
        self.cut_off: GatewayError | None = None  # why the gateway ended a stream early

    async def run(self) -> None:
        self.scope[_FORWARDED] = True
        try:
            response = await self._connect()
        except GatewayError as exc:
            self.status = exc.status
            await self._record()
            raise
        try:
            if self.stream and response.status == 200:
                await self._relay_stream(response)
            else:
                await self._relay_whole(response)
        except GatewayError as exc:
            self.app.metrics.count("portal_gateway_upstream_errors", self.route.slug,
                                   exc.code or "error")
            raise
        finally:
            response.release()
            await self._record()

    def _payload(self, upstream: Upstream) -> bytes:
        body = dict(self.request)
        body["model"] = upstream.model_name
        if self.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return orjson.dumps(body)

    async def _connect(self) -> aiohttp.ClientResponse:
        upstreams = self.route.upstreams_for(self.tenant.id)
        last_error = "no upstream"
        for upstream in upstreams:
            # The same id as a plain UUID: some servers (llama-cpp-python's) refuse any other
            # X-Request-ID with a bare 400.
            headers = {"Content-Type": "application/json",
                       "X-Request-ID": str(uuid.UUID(self.request_id.removeprefix("req_")))}
            if upstream.auth_header:
                headers["Authorization"] = upstream.auth_header
            self.upstream = upstream
            try:
                if tracing.ENABLED:
                    return await self._traced_post(upstream, headers)
                return await self.app.session.post(
                    upstream.url + self.upstream_path, data=self._payload(upstream),
                    headers=headers,
                    timeout=self.app.stream_timeout if self.stream else self.app.answer_timeout)
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                last_error = exc.__class__.__name__
                self._upstream_failed("connect", last_error)
                if upstream is not upstreams[-1]:
                    self.app.metrics.count("portal_gateway_upstream_retries", self.route.slug)
                continue  # the request never reached that upstream: try the next one
            except TimeoutError:
                self._upstream_failed("timeout", "no answer in time")
                raise GatewayError(504, f"The model server for `{self.route.slug}` did not "
                                        "answer in time.", type="server_error",
                                   code="upstream_timeout") from None
            except aiohttp.ClientError as exc:
                self._upstream_failed("error", exc.__class__.__name__)
                raise GatewayError(502, f"The model server for `{self.route.slug}` failed "
                                        f"({exc.__class__.__name__}).", type="server_error",
                                   code="upstream_error") from None
        if not upstreams and self.route.disabled_for(self.tenant.id):
            raise GatewayError(503, f"The model server for `{self.route.slug}` is disabled: "
                                    "the portal can't read the credentials it needs to call "
                                    "it. The platform operator must fix this; try again "
                                    "later.", type="server_error", code="upstream_disabled")
        raise GatewayError(503, f"No model server for `{self.route.slug}` is reachable right "
                                f"now ({last_error}); try again shortly.", type="server_error",
                           code="upstream_unavailable")

    def _upstream_failed(self, reason: str, what: str) -> None:
        """Count a failed attempt and say so in the log, with the request's id (the one in
        the client's X-Request-ID header and in its usage record)."""
        self.app.metrics.count("portal_gateway_upstream_errors", self.route.slug, reason)
        logger.warning("Model server of %s (deployment %s) failed: %s (%s).", self.route.slug,
                       self.upstream.deployment_id, reason, what, extra={
                           "request_id": self.request_id, "tenant": self.tenant.slug,
                           "actor": f"api_key:{self.key.id}"})

    async def _traced_post(self, upstream: Upstream, headers: dict) -> aiohttp.ClientResponse:
        """The model server's call in a client span, its context sent as `traceparent`."""
        with tracing.span(f"POST {self.upstream_path}", kind="client", attributes={
                "http.request.method": "POST", "portal.model": self.route.slug,
                "portal.deployment_id": upstream.deployment_id}) as span:
            tracing.inject(headers)
            response = await self.app.session.post(
                upstream.url + self.upstream_path, data=self._payload(upstream),
                headers=headers,
                timeout=self.app.stream_timeout if self.stream else self.app.answer_timeout)
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def _relay_whole(self, response: aiohttp.ClientResponse) -> None:
        try:
            body = await self._read_answer(response)
        except TimeoutError:
            self.status = 504
            raise GatewayError(504, f"The model server for `{self.route.slug}` did not finish "
                                    "in time.", type="server_error",
                               code="upstream_timeout") from None
        except GatewayError as exc:
            self.status = exc.status
            raise
        self.status = response.status
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if response.status >= 400 and not (isinstance(data, dict) and "error" in data):
            self.status = 502
            raise GatewayError(502, f"The model server for `{self.route.slug}` answered HTTP "
                                    f"{response.status} without an error description.",
                               type="server_error", code="upstream_error")
        if isinstance(data, dict):
            if isinstance(data.get("usage"), dict):
                self.usage = data["usage"]
            else:
                self.reply = data
            if response.status < 400 and self.upstream.model_name != self.route.slug:
                data["model"] = self.route.slug
                body = orjson.dumps(data)
        if response.status >= 500:  # the model server's own error, passed on to the client
            self.app.metrics.count("portal_gateway_upstream_errors", self.route.slug,
                                   "status_5xx")
        self.ttft_ms = _elapsed_ms(self.started)
        await _respond(self.send, self.status, body, _JSON + self.headers)

    async def _read_answer(self, response: aiohttp.ClientResponse) -> bytes:
        """The upstream's whole answer, refused (502) past GATEWAY_MAX_UPSTREAM_BODY_BYTES:
        by its Content-Length before reading, else by counting."""
        limit = self.app.max_upstream_body
        length = response.content_length
        if length is not None and length <= limit:
            return await response.read()
        chunks, size = [], 0
        if length is None:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        raise GatewayError(502, f"The model server for `{self.route.slug}` sent an answer larger "
                                f"than {limit} bytes; the gateway refused it.",
                           type="server_error", code="upstream_response_too_large")

    async def _relay_stream(self, response: aiohttp.ClientResponse) -> None:
        """Pass the stream through event by event. The response starts with the first event,
        so an upstream that fails before it gets a plain error response; after it, a failure
        ends the stream with an error event in OpenAI's shape."""
        self.status = 200
        disconnected = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(self.receive, disconnected))
        rename = (self.upstream.model_name != self.route.slug,
                  f'"model":"{self.upstream.model_name}"'.encode(),
                  f'"model":"{self.route.slug}"'.encode())
        pending = b""
        try:
            try:
                async for chunk in response.content.iter_any():
                    if disconnected.is_set():
                        self.status = 499  # client closed the request; charged for what was made
                        break
                    pending += chunk
                    events, _, pending = pending.rpartition(b"\n\n")
                    if events:
                        out = self._filter_events(events + b"\n\n", rename)
                        if out:
                            await self._send_events(out)
                    if self.cut_off or len(pending) > self.app.max_stream_event:
                        raise self.cut_off or self._event_too_large()
                if pending and not disconnected.is_set():
                    await self._send_events(self._filter_events(pending, rename) or b"")
            except TimeoutError:
                raise GatewayError(504, f"The model server for `{self.route.slug}` sent nothing "
                                        f"for {self.app.stream_idle_timeout} s; the answer was "
                                        "cut off.", type="server_error",
                                   code="upstream_timeout") from None
        except GatewayError as exc:
            self.status = exc.status
            if not self.started_response:
                raise
            self.app.metrics.count("portal_gateway_upstream_errors", self.route.slug,
                                   exc.code or "error")
            await self._send_events(b"data: " + exc.body() + b"\n\n")
        finally:
            watcher.cancel()
        if not disconnected.is_set():
            await self._send_events(b"")
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_events(self, events: bytes) -> None:
        if not self.started_response:
            self.started_response = True
            await self.send({"type": "http.response.start", "status": 200,
                             "headers": _SSE + self.headers})
        if events:
            await self.send({"type": "http.response.body", "body": events, "more_body": True})

    def _event_too_large(self) -> GatewayError:
        return GatewayError(502, f"The model server for `{self.route.slug}` sent a stream event "
                                 f"larger than {self.app.max_stream_event} bytes; the answer was "
                                 "cut off.", type="server_error",
                            code="upstream_event_too_large")

    def _filter_events(self, events: bytes, rename: tuple[bool, bytes, bytes]) -> bytes:
        """Count content chunks, capture `usage`, drop the usage-only chunk the client didn't
        ask for, and show the catalog's model name."""
        kept = []
        for event in events.split(b"\n\n"):
            if not event:
                continue
            if len(event) > self.app.max_stream_event:
                self.cut_off = self._event_too_large()  # what came before it still goes out
                break
            if self.ttft_ms is None:
                self.ttft_ms = _elapsed_ms(self.started)
            if b'"usage"' in event and b'"usage":null' not in event:
                data_line = event.partition(b"data:")[2].strip()
                try:
                    chunk = orjson.loads(data_line)
                except orjson.JSONDecodeError:
                    chunk = None
                if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                    self.usage = chunk["usage"]
                    if not chunk.get("choices") and not self.client_wants_usage:
                        continue
            elif event.startswith(b"data:") and b"[DONE]" not in event:
                self.output_chunks += 1
                self.events.append(event)
            if rename[0]:
                event = event.replace(rename[1], rename[2])
            kept.append(event)
        return b"\n\n".join(kept) + b"\n\n" if kept else b""

    async def _record(self) -> None:
        usage = self.usage or {}
        exact = isinstance(usage.get("prompt_tokens"), int)
        if exact:
            input_tokens = usage["prompt_tokens"]
            output_tokens = int(usage.get("completion_tokens") or 0)
        elif self.status and self.status < 400 or self.status == 499 or self.output_chunks:
            # Served, abandoned by the client, or cut off by the gateway after content went
            # out (a stream event too large, a stalled stream): charged for what was delivered.
            input_tokens, output_tokens = await self._estimate()
        else:
            input_tokens = output_tokens = 0
        tokens = input_tokens + output_tokens
        latency_ms = _elapsed_ms(self.started)
        self.app.metrics.served(
            self.tenant.slug, self.route.slug, self.status, input_tokens, output_tokens,
            latency_ms / 1000, None if self.ttft_ms is None else self.ttft_ms / 1000)
        # Token counters feed only tokens-per-minute limits: skip them when none applies.
        windows = None
        if self.key.tpm or self.tenant.tpm:
            windows = ratelimit.window_keys(self.key.id, self.tenant.id, time.time())
        self.app.usage.record({
            "request_id": self.request_id, "ts": time.time(), "tenant_id": self.tenant.id,
            "key_id": self.key.id, "model_id": self.route.model_id, "model": self.route.slug,
            "deployment_id": self.upstream.deployment_id if self.upstream else None,
            "endpoint": self.path.rstrip("/").rsplit("/v1/", 1)[-1], "status": self.status,
            "streamed": self.stream, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "estimated": not exact and tokens > 0,
            "latency_ms": latency_ms, "ttft_ms": self.ttft_ms,
        }, (windows[1], windows[3]) if windows else None, tokens)


    async def _estimate(self) -> tuple[int, int]:
        """Counts with the model's own tokenizer (the answer is already sent: this delays no
        client). Without one, a streamed answer counts one token per content chunk, as
        servers send them."""
        tokens = self.app.tokens
        answer = stream_text(self.events) if self.stream else response_text(self.reply)
        try:
            input_tokens = await tokens.prompt_tokens(self.route.model_id, self.request)
            output_tokens = await tokens.completion_tokens(self.route.model_id, answer)
        except Exception:  # counting must never cost the usage record
            logger.exception("Token estimate failed for model %s", self.route.slug)
            input_tokens, output_tokens = heuristic_count(request_text(self.request)[0]), None
        if output_tokens is None:
            output_tokens = self.output_chunks if self.stream else heuristic_count(answer)
        return max(1, input_tokens), output_tokens


# --- helpers ------------------------------------------------------------------------------


def _model_entry(route: Route) -> dict:
    return {"id": route.slug, "object": "model", "created": route.created,
            "owned_by": route.owned_by}


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _client_address(scope: Scope) -> request_context.IPAddress | None:
    """The client's address; X-Forwarded-For counts only from TRUSTED_PROXIES."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded_for = ""
    if request_context.is_trusted_proxy(peer):
        forwarded_for = ",".join(value.decode("latin-1") for name, value in scope["headers"]
                                 if name == b"x-forwarded-for")
    return request_context.client_address(peer, forwarded_for)


_FIELD_TYPES = {"messages": list, "stream": bool, "max_tokens": int, "n": int,
                "temperature": (int, float), "top_p": (int, float), "stream_options": dict}
_TYPE_NAMES = {list: "an array", bool: "a boolean", int: "an integer",
               (int, float): "a number", dict: "an object"}
# Bounds the gateway itself must rely on (token reservations, fan-out); the upstream checks the
# model-specific ones (context length, sampling ranges).
_INT_RANGES = {"max_tokens": (1, 2**31 - 1), "n": (1, 128)}


def _parse_body(raw: bytes, path: str) -> dict:
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.bad_request("The request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise errors.bad_request("You must provide a model parameter.", param="model")
    for name, expected in _FIELD_TYPES.items():
        value = request.get(name)
        if value is not None and (not isinstance(value, expected)
                                  or (expected is int and isinstance(value, bool))):
            raise errors.bad_request(f"Invalid type for '{name}': expected "
                                     f"{_TYPE_NAMES[expected]}.", param=name,
                                     code="invalid_type")
    for name, (low, high) in _INT_RANGES.items():
        value = request.get(name)
        if value is not None and not low <= value <= high:
            raise errors.bad_request(f"Invalid value for '{name}': {value} is out of range; "
                                     f"use {low} to {high}.", param=name, code="invalid_value")
    if path.endswith("chat/completions") and not request.get("messages"):
        raise errors.bad_request("'messages' is required and must be a non-empty array.",
                                 param="messages")
    if path.endswith("/embeddings") and not isinstance(request.get("input"), str | list):
        raise errors.bad_request("'input' is required: a string or an array.", param="input")
    if path.endswith("/v1/completions") and request.get("prompt") is None:
        raise errors.bad_request("'prompt' is required.", param="prompt")
    return request


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return


async def _respond(send: Send, status: int, body: bytes, headers, request_id: str | None = None
                   ) -> None:
    if request_id:
        headers = [*headers, (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
