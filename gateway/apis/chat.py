"""OpenAI's chat completions, completions and embeddings: `usage.prompt_tokens` (with
`prompt_tokens_details.cached_tokens`) and `usage.completion_tokens` (with
`completion_tokens_details.reasoning_tokens`). Streams report usage only when asked
(`stream_options.include_usage`): the gateway always asks, and drops that extra chunk when
the client didn't."""

from __future__ import annotations

from typing import Any

from gateway import errors
from gateway.apis import Api, Usage, check_body, openai_style_usage
from gateway.tokens import response_text, stream_text

_FIELD_TYPES = {"messages": list, "stream": bool, "max_tokens": int, "n": int,
                "temperature": (int, float), "top_p": (int, float), "stream_options": dict}
_INT_RANGES = {"max_tokens": (1, 2**31 - 1), "n": (1, 128)}


def openai_usage(usage: Any) -> Usage | None:
    return openai_style_usage(usage, inputs="prompt_tokens", outputs="completion_tokens")


class OpenAIApi(Api):
    def parse(self, raw: bytes) -> dict:
        request = check_body(raw, _FIELD_TYPES, _INT_RANGES)
        self.require(request)
        return request

    def require(self, request: dict) -> None:
        """The endpoint's own required field."""

    def upstream_body(self, request: dict, model_name: str, stream: bool) -> dict:
        body = {**request, "model": model_name}
        if stream:
            body["stream_options"] = {**(body.get("stream_options") or {}),
                                      "include_usage": True}
        return body

    def client_wants_usage(self, request: dict) -> bool:
        options = request.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def usage(self, answer: dict) -> Usage | None:
        return openai_usage(answer.get("usage"))

    def stream_usage(self, chunk: dict, known: Usage | None) -> Usage | None:
        return openai_usage(chunk.get("usage")) or known

    def hides(self, chunk: dict, client_wants_usage: bool) -> bool:
        return (isinstance(chunk.get("usage"), dict) and not chunk.get("choices")
                and not client_wants_usage)

    def is_content(self, event: bytes) -> bool:
        return event.startswith(b"data:") and b"[DONE]" not in event

    def answer_text(self, answer: Any) -> str:
        return response_text(answer)

    def stream_text(self, events: list[bytes]) -> str:
        return stream_text(events)


class ChatCompletions(OpenAIApi):
    name, tasks, upstream_path = "chat/completions", ("chat",), "/chat/completions"

    def require(self, request: dict) -> None:
        if not request.get("messages"):
            raise errors.bad_request("'messages' is required and must be a non-empty array.",
                                     param="messages")


class Completions(OpenAIApi):
    name, tasks, upstream_path = "completions", ("completion", "chat"), "/completions"

    def require(self, request: dict) -> None:
        if request.get("prompt") is None:
            raise errors.bad_request("'prompt' is required.", param="prompt")


class Embeddings(OpenAIApi):
    name, tasks, upstream_path = "embeddings", ("embeddings",), "/embeddings"

    def require(self, request: dict) -> None:
        if not isinstance(request.get("input"), str | list):
            raise errors.bad_request("'input' is required: a string or an array.",
                                     param="input")
