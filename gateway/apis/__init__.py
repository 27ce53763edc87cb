"""What differs between the APIs the gateway serves: each API's request checks, where its
usage is and in which shape, what counts as generated content in its streams, and the shape
of its errors. The gateway's request path (`gateway.app`, `gateway.forwarder`) is the same
for all of them: authenticate, route, rate-limit, check budgets, forward, meter.

- `chat`: OpenAI's chat completions, completions and embeddings;
- `responses`: OpenAI's Responses API (`/v1/responses`);
- `messages`: Anthropic's Messages API (`/v1/messages`), as KServe v0.20 routes it to vLLM.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import orjson

from gateway import errors
from gateway.errors import GatewayError


@dataclass
class Usage:
    """Tokens one request used, as its model server reported them. `input_tokens` includes
    the cached ones (charged at the model's cached-input price); `output_tokens` includes the
    reasoning ones. `output_final` is False while a stream has reported its input but not
    yet its final output count (Anthropic's `message_start` before `message_delta`)."""

    input_tokens: int
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    output_final: bool = True


def count(value: Any) -> int:
    """A token count from a usage object: a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def detail(usage: dict, details: str, name: str) -> int:
    """`usage[details][name]` (e.g. `prompt_tokens_details.cached_tokens`), else 0."""
    inner = usage.get(details)
    return count(inner.get(name)) if isinstance(inner, dict) else 0


def openai_style_usage(usage: Any, *, inputs: str, outputs: str) -> Usage | None:
    """OpenAI's usage object, whose APIs name the counts differently: `inputs`/`outputs` are
    the keys of the input and output counts (`prompt_tokens`/`completion_tokens` in Chat
    Completions, `input_tokens`/`output_tokens` in Responses); the cached and reasoning
    counts sit in `<inputs>_details.cached_tokens` and `<outputs>_details.reasoning_tokens`.
    None when the input count is missing."""
    if not isinstance(usage, dict) or not isinstance(usage.get(inputs), int):
        return None
    return Usage(input_tokens=count(usage[inputs]), output_tokens=count(usage.get(outputs)),
                 cached_input_tokens=detail(usage, f"{inputs}_details", "cached_tokens"),
                 reasoning_tokens=detail(usage, f"{outputs}_details", "reasoning_tokens"))


def data_of(event: bytes) -> Any:
    """The JSON of a server-sent event's `data:` line (None when it has none or isn't JSON)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                return orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                return None
    return None


_TYPE_NAMES = {list: "an array", bool: "a boolean", int: "an integer",
               (int, float): "a number", dict: "an object", (str, list): "a string or an array"}


def check_body(raw: bytes, field_types: dict, int_ranges: dict) -> dict:
    """The request body as a JSON object with a `model`, its fields of the given types and
    integers in range (what the gateway itself relies on: token reservations, fan-out; the
    upstream checks the model-specific bounds such as context length)."""
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.bad_request("The request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise errors.bad_request("You must provide a model parameter.", param="model")
    for name, expected in field_types.items():
        value = request.get(name)
        if value is not None and (not isinstance(value, expected)
                                  or (expected is int and isinstance(value, bool))):
            raise errors.bad_request(f"Invalid type for '{name}': expected "
                                     f"{_TYPE_NAMES[expected]}.", param=name,
                                     code="invalid_type")
    for name, (low, high) in int_ranges.items():
        value = request.get(name)
        if value is not None and not low <= value <= high:
            raise errors.bad_request(f"Invalid value for '{name}': {value} is out of range; "
                                     f"use {low} to {high}.", param=name, code="invalid_value")
    return request


class Api(ABC):
    """One API's behaviour on the gateway's request path. The defaults are OpenAI's; each API
    says how it parses requests and reads usage and text (the abstract methods)."""

    name = ""  # the usage record's `endpoint`
    tasks: tuple[str, ...] = ("chat",)  # catalog tasks of the models that serve it
    upstream_path = ""  # after the upstream's base URL (which ends in /v1)
    missing_key_hint = "Send it in the Authorization header as 'Bearer YOUR_KEY'"

    @abstractmethod
    def parse(self, raw: bytes) -> dict:
        """The request, checked; GatewayError (400) when it is malformed."""

    def upstream_body(self, request: dict, model_name: str, stream: bool) -> dict:
        """What goes to the model server: the request under the upstream's model name (and,
        where the API needs asking, a request for usage in streams)."""
        return {**request, "model": model_name}

    def client_wants_usage(self, request: dict) -> bool:
        return True

    def error_body(self, exc: GatewayError) -> bytes:
        return exc.body()

    def rate_limit_headers(self, headers: list[tuple[bytes, bytes]], now: float
                           ) -> list[tuple[bytes, bytes]]:
        """Headers this API's clients read for the rate limits, besides OpenAI's
        `x-ratelimit-*` ones in `headers` (sent where a limit applies); none by default."""
        return []

    def stream_error(self, exc: GatewayError) -> bytes:
        """The event that ends a stream the gateway cut off."""
        return b"data: " + exc.body() + b"\n\n"

    @abstractmethod
    def usage(self, answer: dict) -> Usage | None:
        """The usage of a whole (non-streamed) answer; None when it reports none."""

    @abstractmethod
    def stream_usage(self, chunk: dict, known: Usage | None) -> Usage | None:
        """The usage known after a streamed event whose JSON is `chunk` (events that mention
        `usage` only)."""

    def hides(self, chunk: dict, client_wants_usage: bool) -> bool:
        """Whether the gateway drops this event (one it asked for and the client did not)."""
        return False

    @abstractmethod
    def is_content(self, event: bytes) -> bool:
        """Whether a streamed event carries generated content (counted when no usage comes)."""

    def prompt(self, request: dict) -> dict:
        """The request as the token counter reads it (`messages`, `prompt` or `input`)."""
        return request

    @abstractmethod
    def answer_text(self, answer: Any) -> str:
        """The generated text of a whole answer (counted when no usage comes)."""

    @abstractmethod
    def stream_text(self, events: list[bytes]) -> str:
        """The generated text of the streamed events that reached the client."""
