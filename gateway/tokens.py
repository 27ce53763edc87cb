"""Token counts for requests whose model server reported no `usage` (records are then
flagged `estimated`). Exact counts always come from the server's own `usage` when it sends
one; otherwise the gateway counts with the model's own tokenizer, which the catalog kept from
its ModelCar:

- a GGUF's vocabulary (`gateway.spm`, exactly as llama.cpp tokenizes), with the model's chat
  template when the image has one: the prompt is rendered as the model server renders it and
  counted whole, so the count is the server's own;
- or the image's tokenizer.json (`tokenizers`), with a few tokens per chat message for the
  template's markers.

A model without either (an external endpoint registered without a catalog image) is counted
at ~4 characters per token. Tokenizers are loaded when the gateway starts and again only when
a newer version of the model is published — never per request.
"""

from __future__ import annotations

import asyncio
import json
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
    parts = [text_of(request.get("prompt")), text_of(request.get("input")), text_of(messages)]
    return "\n".join(p for p in parts if p), len(messages) if isinstance(messages, list) else 0


def response_text(body: Any) -> str:
    """The generated text of a non-streamed completion or chat completion."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return ""
    parts = []
    for choice in body["choices"]:
        if isinstance(choice, dict):
            message = choice.get("message")
            parts.append(text_of(message.get("content")) if isinstance(message, dict)
                         else text_of(choice.get("text")))
    return "".join(parts)


def stream_text(events: list[bytes]) -> str:
    """The generated text of a streamed answer, from its server-sent events."""
    parts = []
    for event in events:
        data = event.partition(b"data:")[2].strip()
        if not data or data == b"[DONE]":
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            parts.append(text_of(delta.get("content")) if isinstance(delta, dict)
                         else text_of(choice.get("text")))
    return "".join(parts)


def text_of(value: Any) -> str:
    """The text in a message's content: a string, or text parts (`text`, `content`) nested
    in lists and objects, as chat, Responses and Messages requests and answers hold it."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (text_of(item) for item in value) if t)
    if isinstance(value, dict):
        return "\n".join(t for t in (text_of(value.get("content")), text_of(value.get("text")))
                         if t)
    return ""


def heuristic_count(text: str) -> int:
    return -(-len(text) // _CHARS_PER_TOKEN)


class HuggingFaceCounter:
    """A tokenizer.json; chat templates are not known, so messages count a few tokens each."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def text(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt(self, request: dict) -> int | None:
        return None


class GgufCounter:
    """A GGUF vocabulary counted as llama.cpp does, with the model's chat template if any."""

    def __init__(self, document: dict):
        from gateway.spm import SpmTokenizer

        self.tokenizer = SpmTokenizer(document)
        tokens = document["tokens"]
        self.bos_token = tokens[document["bos_id"]] if document.get("bos_id") is not None else ""
        self.eos_token = tokens[document["eos_id"]] if document.get("eos_id") is not None else ""
        self.template = None
        if document.get("chat_template"):
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            # As model servers render chat templates (Hugging Face, llama.cpp's Python server):
            # sandboxed, trim_blocks and lstrip_blocks.
            environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            self.template = environment.from_string(document["chat_template"])

    def text(self, text: str) -> int:
        return self.tokenizer.count(text)

    def prompt(self, request: dict) -> int | None:
        """The prompt as the server tokenizes it: a chat rendered with the model's template
        (which writes the BOS token itself), or a completion prompt after a BOS token."""
        messages = request.get("messages")
        if isinstance(messages, list):
            if self.template is None:
                return None
            rendered = self.template.render(messages=messages, bos_token=self.bos_token,
                                            eos_token=self.eos_token,
                                            add_generation_prompt=True,
                                            raise_exception=_raise)
            return self.tokenizer.count(rendered)
        prompt = request.get("prompt")
        if isinstance(prompt, str):
            return self.tokenizer.count(prompt, add_bos=True)
        return None


def _raise(message: str):
    raise ValueError(message)


def counter_from_document(document: str):
    """The counter for a stored tokenizer document (GGUF vocabulary or tokenizer.json)."""
    from gateway.spm import DOCUMENT_FORMAT

    if document.lstrip().startswith('{"format":"' + DOCUMENT_FORMAT + '"'):
        return GgufCounter(json.loads(document))
    from tokenizers import Tokenizer

    return HuggingFaceCounter(Tokenizer.from_str(document))


def _load_counter(model_id: int, loaded_version: int | None):
    """(version id, counter) of the model's serving tokenizer; the counter is None when it is
    the one already loaded (`loaded_version`) or when the model has none."""
    from django.db import close_old_connections

    from models_catalog.selectors import model_tokenizer_json, model_tokenizer_version

    close_old_connections()
    version = model_tokenizer_version(model_id=model_id)
    if version is None or version == loaded_version:
        return version, None
    document = model_tokenizer_json(model_id=model_id)
    if not document:
        return None, None
    try:
        return version, counter_from_document(document)
    except Exception:  # a tokenizer the gateway can't read: count by characters
        logger.warning("The tokenizer of model %s could not be loaded", model_id)
        return version, None


class TokenCounter:
    """Per worker: each model's tokenizer, loaded at start-up (`preload`) or when first needed,
    and checked every `ttl` seconds for a newer published version (a cheap query; the
    tokenizer itself is loaded again only when it changed)."""

    def __init__(self, ttl: float = 300.0, size: int = 16):
        self.ttl, self.size = ttl, size
        # model id → (version id, counter, checked at)
        self._counters: dict[int, tuple[int | None, Any, float]] = {}

    async def preload(self, model_ids) -> None:
        for model_id in model_ids:
            try:
                await self.counter(model_id)
            except Exception:  # never stop the gateway for a tokenizer
                logger.exception("Loading the tokenizer of model %s failed", model_id)

    async def counter(self, model_id: int):
        cached = self._counters.get(model_id)
        if cached is not None and time.monotonic() - cached[2] < self.ttl:
            return cached[1]
        known = cached[0] if cached is not None else None
        version, loaded = await sync_to_async(_load_counter, thread_sensitive=False)(
            model_id, known)
        counter = cached[1] if cached is not None and version == known else loaded
        if model_id not in self._counters and len(self._counters) >= self.size:
            self._counters.pop(next(iter(self._counters)))  # tokenizers are large
        self._counters[model_id] = (version, counter, time.monotonic())
        return counter

    async def count(self, model_id: int | None, text: str, *, messages: int = 0) -> int:
        if not text:
            return 0
        counter = await self.counter(model_id) if model_id else None
        if counter is None:
            return heuristic_count(text) + messages * _TOKENS_PER_MESSAGE
        count = await asyncio.get_running_loop().run_in_executor(None, counter.text, text)
        return count + messages * _TOKENS_PER_MESSAGE

    async def prompt_tokens(self, model_id: int | None, request: dict) -> int:
        """The request's prompt tokens: exact where the model's tokenizer and template say how
        the server counts them, else its text plus a few tokens per message."""
        counter = await self.counter(model_id) if model_id else None
        if counter is not None:
            try:
                exact = await asyncio.get_running_loop().run_in_executor(
                    None, counter.prompt, request)
            except Exception:  # a template that refuses these messages: count the text
                exact = None
            if exact is not None:
                return exact
        text, messages = request_text(request)
        return await self.count(model_id, text, messages=messages)

    async def completion_tokens(self, model_id: int | None, text: str) -> int | None:
        """The answer's tokens with the model's tokenizer; None when the model has none."""
        counter = await self.counter(model_id) if model_id else None
        if counter is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(None, counter.text, text)
