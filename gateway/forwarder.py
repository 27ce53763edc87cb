"""One request's trip to a model server and back, and its usage event: the same for every
API the gateway serves (`gateway.apis` says where each keeps its usage)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gateway import ratelimit
from gateway.apis import Api, Usage, data_of
from gateway.directory import Route, Upstream
from gateway.errors import GatewayError
from gateway.tokens import heuristic_count, request_text
from portal import tracing

if TYPE_CHECKING:
    from gateway.app import GatewayApp

# The gateway's request path logs as one logger, which operators' filters and alerts name.
logger = logging.getLogger("gateway.app")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]
# Set in a request's ASGI scope once the Forwarder took it (it counts its own metrics).
FORWARDED = "portal.forwarded"


class Forwarder:
    """One request's trip to an upstream and back, and its usage event."""

    def __init__(self, app: GatewayApp, scope, receive, send, request_id, started, key, tenant,
                 route: Route, api: Api, request: dict, headers):
        self.app, self.scope, self.receive, self.send = app, scope, receive, send
        self.request_id, self.started = request_id, started
        self.key, self.tenant, self.route = key, tenant, route
        self.api, self.upstream_path, self.request = api, api.upstream_path, request
        self.headers = headers
        self.stream = request.get("stream") is True
        self.client_wants_usage = self.stream and api.client_wants_usage(request)
        self.upstream: Upstream | None = None
        self.status = 0
        self.usage: Usage | None = None
        self.output_chunks = 0
        self.events: list[bytes] = []  # a streamed answer's events, to count if no `usage`
        self.reply: dict | None = None  # a non-streamed answer without `usage`, to count
        self.ttft_ms: int | None = None
        self.started_response = False
        self.cut_off: GatewayError | None = None  # why the gateway ended a stream early

    async def run(self) -> None:
        self.scope[FORWARDED] = True
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
        return orjson.dumps(self.api.upstream_body(self.request, upstream.model_name,
                                                   self.stream))

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
            self.usage = self.api.usage(data)
            if self.usage is None:
                self.reply = data
            if response.status < 400 and self.upstream.model_name != self.route.slug:
                data["model"] = self.route.slug
                body = orjson.dumps(data)
        if response.status >= 500:  # the model server's own error, passed on to the client
            self.app.metrics.count("portal_gateway_upstream_errors", self.route.slug,
                                   "status_5xx")
        self.ttft_ms = elapsed_ms(self.started)
        await respond(self.send, self.status, body, JSON + self.headers)

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
        ends the stream with an error event in the API's own shape."""
        self.status = 200
        disconnected = asyncio.Event()
        watcher = asyncio.create_task(watch_disconnect(self.receive, disconnected))
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
            await self._send_events(self.api.stream_error(exc))
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
                self.ttft_ms = elapsed_ms(self.started)
            if b'"usage"' in event and b'"usage":null' not in event:
                chunk = data_of(event)
                if isinstance(chunk, dict):
                    self.usage = self.api.stream_usage(chunk, self.usage)
                    if self.api.hides(chunk, self.client_wants_usage):
                        continue
            elif self.api.is_content(event):
                self.output_chunks += 1
                self.events.append(event)
            if rename[0]:
                event = event.replace(rename[1], rename[2])
            kept.append(event)
        return b"\n\n".join(kept) + b"\n\n" if kept else b""

    async def _record(self) -> None:
        usage = self.usage
        exact = usage is not None and usage.output_final
        cached_input_tokens = reasoning_tokens = 0
        if usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            cached_input_tokens, reasoning_tokens = (usage.cached_input_tokens,
                                                     usage.reasoning_tokens)
            if not exact:
                # A stream that ended before its final count (abandoned, cut off): its input
                # is known, its output is counted from what was delivered.
                output_tokens = max(output_tokens, (await self._estimate())[1])
        elif self.status and self.status < 400 or self.status == 499 or self.output_chunks:
            # Served, abandoned by the client, or cut off by the gateway after content went
            # out (a stream event too large, a stalled stream): charged for what was delivered.
            input_tokens, output_tokens = await self._estimate()
        else:
            input_tokens = output_tokens = 0
        tokens = input_tokens + output_tokens
        latency_ms = elapsed_ms(self.started)
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
            "endpoint": self.api.name, "status": self.status,
            "streamed": self.stream, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "cached_input_tokens": cached_input_tokens,
            "reasoning_tokens": reasoning_tokens, "estimated": not exact and tokens > 0,
            "latency_ms": latency_ms, "ttft_ms": self.ttft_ms,
        }, (windows[1], windows[3]) if windows else None, tokens)

    async def _estimate(self) -> tuple[int, int]:
        """Counts with the model's own tokenizer (the answer is already sent: this delays no
        client). Without one, a streamed answer counts one token per content chunk, as
        servers send them."""
        tokens = self.app.tokens
        answer = (self.api.stream_text(self.events) if self.stream
                  else self.api.answer_text(self.reply))
        prompt = self.api.prompt(self.request)
        try:
            input_tokens = await tokens.prompt_tokens(self.route.model_id, prompt)
            output_tokens = await tokens.completion_tokens(self.route.model_id, answer)
        except Exception:  # counting must never cost the usage record
            logger.exception("Token estimate failed for model %s", self.route.slug)
            input_tokens, output_tokens = heuristic_count(request_text(prompt)[0]), None
        if output_tokens is None:
            output_tokens = self.output_chunks if self.stream else heuristic_count(answer)
        return max(1, input_tokens), output_tokens


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return


async def respond(send: Send, status: int, body: bytes, headers, request_id: str | None = None
                   ) -> None:
    if request_id:
        headers = [*headers, (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
