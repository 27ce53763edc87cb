"""OpenAI's Responses API (`/v1/responses`): `usage.input_tokens` (with
`input_tokens_details.cached_tokens`) and `usage.output_tokens` (with
`output_tokens_details.reasoning_tokens`); a stream reports them once, in its
`response.completed` event (or `response.incomplete` / `response.failed`)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway import errors
from gateway.apis import Api, Usage, check_body, data_of, openai_style_usage
from gateway.errors import GatewayError
from gateway.tokens import text_of

_FIELD_TYPES = {"input": (str, list), "stream": bool, "max_output_tokens": int,
                "temperature": (int, float), "top_p": (int, float), "background": bool}
_INT_RANGES = {"max_output_tokens": (1, 2**31 - 1)}
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def responses_usage(usage: Any) -> Usage | None:
    return openai_style_usage(usage, inputs="input_tokens", outputs="output_tokens")


class Responses(Api):
    name, tasks, upstream_path = "responses", ("chat",), "/responses"

    def parse(self, raw: bytes) -> dict:
        request = check_body(raw, _FIELD_TYPES, _INT_RANGES)
        if request.get("input") in (None, "", []):
            raise errors.bad_request("'input' is required: a string or an array of input "
                                     "items.", param="input")
        if request.get("background"):
            # A background response is fetched later, where the gateway can't meter it.
            raise errors.bad_request("Background responses are not supported here; send the "
                                     "request without 'background' (streamed or not).",
                                     param="background", code="unsupported_parameter")
        return request

    def stream_error(self, exc: GatewayError) -> bytes:
        # The Responses API's error event; its `error` member is what the `openai` client
        # raises as APIError.
        event = {"type": "error", "code": exc.code, "message": exc.message, "param": exc.param,
                 "error": orjson.loads(exc.body())["error"]}
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"

    def usage(self, answer: dict) -> Usage | None:
        return responses_usage(answer.get("usage"))

    def stream_usage(self, chunk: dict, known: Usage | None) -> Usage | None:
        response = chunk.get("response")
        if chunk.get("type") in _FINAL_EVENTS and isinstance(response, dict):
            return responses_usage(response.get("usage")) or known
        return known

    def is_content(self, event: bytes) -> bool:
        return b'"response.output_text.delta"' in event or b'"response.refusal.delta"' in event

    def prompt(self, request: dict) -> dict:
        messages = []
        if request.get("instructions"):
            messages.append({"role": "system", "content": text_of(request["instructions"])})
        items = request.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        for item in items or ():
            if isinstance(item, dict):
                messages.append({"role": item.get("role") or "user", "content": text_of(item)})
        return {"messages": messages}

    def answer_text(self, answer: Any) -> str:
        if not isinstance(answer, dict) or not isinstance(answer.get("output"), list):
            return ""
        return "".join(text_of(item.get("content")) for item in answer["output"]
                       if isinstance(item, dict) and item.get("type") == "message")

    def stream_text(self, events: list[bytes]) -> str:
        parts = []
        for event in events:
            chunk = data_of(event)
            if isinstance(chunk, dict) and isinstance(chunk.get("delta"), str):
                parts.append(chunk["delta"])
        return "".join(parts)
