"""Anthropic's Messages API (`/v1/messages`), as KServe v0.20 routes it to vLLM. Usage:
`input_tokens` (the uncached input), `cache_read_input_tokens`, `cache_creation_input_tokens`
and `output_tokens`; a stream reports the input in `message_start` and the output in
`message_delta` (cumulative, and newer servers repeat the input there). The gateway records
all input tokens, cache reads among them as cached input; cache writes are charged as input.
Errors have Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import errors
from gateway.apis import Api, Usage, check_body, count, data_of
from gateway.errors import GatewayError
from gateway.tokens import text_of

_FIELD_TYPES = {"messages": list, "stream": bool, "max_tokens": int, "system": (str, list),
                "temperature": (int, float), "top_p": (int, float), "top_k": int}
_INT_RANGES = {"max_tokens": (1, 2**31 - 1)}
# Anthropic's error types by HTTP status.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
                504: "timeout_error"}


def messages_usage(usage: Any, known: Usage | None = None, *, final: bool = True
                   ) -> Usage | None:
    """Usage from an Anthropic usage object; fields it lacks keep their `known` values (a
    stream's `message_delta` may carry only `output_tokens`)."""
    if not isinstance(usage, dict):
        return known
    has_input = isinstance(usage.get("input_tokens"), int)
    if not has_input and known is None:
        return None
    cache_read = count(usage.get("cache_read_input_tokens"))
    if has_input:
        input_tokens = (count(usage["input_tokens"]) + cache_read
                        + count(usage.get("cache_creation_input_tokens")))
    else:
        input_tokens, cache_read = known.input_tokens, known.cached_input_tokens
    return Usage(input_tokens=input_tokens, output_tokens=count(usage.get("output_tokens")),
                 cached_input_tokens=cache_read, output_final=final)


_RATE_LIMIT = b"x-ratelimit-"


def anthropic_rate_limit_headers(headers: list[tuple[bytes, bytes]], now: float
                                 ) -> list[tuple[bytes, bytes]]:
    """Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` from the
    gateway's `x-ratelimit-*` headers: the same figures, the reset as an RFC 3339 time."""
    translated = []
    for name, value in headers:
        if not name.startswith(_RATE_LIMIT):
            continue
        what, _, kind = name[len(_RATE_LIMIT):].decode().partition("-")  # limit-requests
        if what == "reset":
            seconds = int(value.decode().rstrip("s"))
            value = datetime.fromtimestamp(int(now) + seconds, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ").encode()
        translated.append((f"anthropic-ratelimit-{kind}-{what}".encode(), value))
    return translated


class Messages(Api):
    name, tasks, upstream_path = "messages", ("chat",), "/messages"
    missing_key_hint = ("Send it in the x-api-key header, or in the Authorization header as "
                        "'Bearer YOUR_KEY'")

    def rate_limit_headers(self, headers, now):
        return anthropic_rate_limit_headers(headers, now)

    def parse(self, raw: bytes) -> dict:
        request = check_body(raw, _FIELD_TYPES, _INT_RANGES)
        if not request.get("messages"):
            raise errors.bad_request("messages: Field required (a non-empty array).",
                                     param="messages")
        if request.get("max_tokens") is None:
            raise errors.bad_request("max_tokens: Field required.", param="max_tokens")
        return request

    def error_body(self, exc: GatewayError) -> bytes:
        return orjson.dumps({"type": "error", "error": {"type": _error_type(exc),
                                                        "message": exc.message}})

    def stream_error(self, exc: GatewayError) -> bytes:
        return b"event: error\ndata: " + self.error_body(exc) + b"\n\n"

    def usage(self, answer: dict) -> Usage | None:
        return messages_usage(answer.get("usage"))

    def stream_usage(self, chunk: dict, known: Usage | None) -> Usage | None:
        kind = chunk.get("type")
        if kind == "message_start" and isinstance(chunk.get("message"), dict):
            return messages_usage(chunk["message"].get("usage"), known, final=False)
        if kind == "message_delta":
            return messages_usage(chunk.get("usage"), known)
        return known

    def is_content(self, event: bytes) -> bool:
        return b'"content_block_delta"' in event

    def prompt(self, request: dict) -> dict:
        messages = []
        if request.get("system"):
            messages.append({"role": "system", "content": text_of(request["system"])})
        for message in request.get("messages") or ():
            if isinstance(message, dict):
                messages.append({"role": message.get("role") or "user",
                                 "content": text_of(message.get("content"))})
        return {"messages": messages}

    def answer_text(self, answer: Any) -> str:
        return text_of(answer.get("content")) if isinstance(answer, dict) else ""

    def stream_text(self, events: list[bytes]) -> str:
        parts = []
        for event in events:
            chunk = data_of(event)
            delta = chunk.get("delta") if isinstance(chunk, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                parts.append(delta["text"])
        return "".join(parts)


def _error_type(exc: GatewayError) -> str:
    if exc.code == "insufficient_quota":
        return "billing_error"
    if exc.status in _ERROR_TYPES:
        return _ERROR_TYPES[exc.status]
    if exc.status >= 500:
        return "overloaded_error" if exc.status == 503 else "api_error"
    return "invalid_request_error"
