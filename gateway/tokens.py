"""Token counts for requests whose model server reported no `usage` (records are then
flagged `estimated`). Exact counts always come from the server's own `usage` when it sends
one; otherwise the gateway counts with the model's own tokenizer — the `tokenizer.json` the
catalog kept from the ModelCar's /models — and only for a model without one (an external
endpoint registered without a catalog image) falls back to ~4 characters per token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async

logger = logging.getLogger(__name__)

_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text with BPE tokenizers
# Chat templates wrap each message in a few special tokens (role markers, separators).
_TOKENS_PER_MESSAGE = 3


def request_text(request: dict) -> tuple[str, int]:
    """The prompt's text and how many chat messages it has."""
    messages = request.get("messages")
    parts = [_text(request.get("prompt")), _text(request.get("input")), _text(messages)]
    return "\n".join(p for p in parts if p), len(messages) if isinstance(messages, list) else 0


def response_text(body: Any) -> str:
    """The generated text of a non-streamed completion or chat completion."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return ""
    parts = []
    for choice in body["choices"]:
        if isinstance(choice, dict):
            message = choice.get("message")
            parts.append(_text(message.get("content")) if isinstance(message, dict)
                         else _text(choice.get("text")))
    return "".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_text(item) for item in value) if t)
    if isinstance(value, dict):
        return "\n".join(t for t in (_text(value.get("content")), _text(value.get("text")))
                         if t)
    return ""


def heuristic_count(text: str) -> int:
    return -(-len(text) // _CHARS_PER_TOKEN)


def _load_tokenizer(model_id: int):
    from django.db import close_old_connections
    from tokenizers import Tokenizer

    from models_catalog.selectors import model_tokenizer_json

    close_old_connections()
    document = model_tokenizer_json(model_id=model_id)
    if not document:
        return None
    try:
        return Tokenizer.from_str(document)
    except Exception:  # a tokenizer.json the library can't read: count by characters
        logger.warning("tokenizer.json of model %s could not be loaded", model_id)
        return None


class TokenCounter:
    """Per worker: each model's tokenizer, loaded once when first needed (and again after
    `ttl` seconds, so a newly published version's tokenizer is picked up)."""

    def __init__(self, ttl: float = 300.0, size: int = 16):
        self.ttl, self.size = ttl, size
        self._tokenizers: dict[int, tuple[Any, float]] = {}

    async def tokenizer(self, model_id: int):
        cached = self._tokenizers.get(model_id)
        if cached is not None and time.monotonic() - cached[1] < self.ttl:
            return cached[0]
        loaded = await sync_to_async(_load_tokenizer, thread_sensitive=False)(model_id)
        if len(self._tokenizers) >= self.size:  # tokenizers are large: keep a handful
            self._tokenizers.pop(next(iter(self._tokenizers)))
        self._tokenizers[model_id] = (loaded, time.monotonic())
        return loaded

    async def count(self, model_id: int | None, text: str, *, messages: int = 0) -> int:
        if not text:
            return 0
        tokenizer = await self.tokenizer(model_id) if model_id else None
        if tokenizer is None:
            return heuristic_count(text) + messages * _TOKENS_PER_MESSAGE
        encoding = await asyncio.get_running_loop().run_in_executor(
            None, lambda: tokenizer.encode(text, add_special_tokens=False))
        return len(encoding.ids) + messages * _TOKENS_PER_MESSAGE
