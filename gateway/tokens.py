"""Token estimates, used ONLY when an upstream reports no `usage` (records are then flagged
`estimated`). Exact counts always come from the upstream's own tokenizer via `usage`."""

from __future__ import annotations

from typing import Any

_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text with BPE tokenizers


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    if isinstance(value, dict):
        return _text_length(value.get("content")) + _text_length(value.get("text"))
    return 0


def estimate_prompt_tokens(request: dict) -> int:
    length = (_text_length(request.get("messages")) + _text_length(request.get("prompt"))
              + _text_length(request.get("input")))
    return max(1, -(-length // _CHARS_PER_TOKEN))
