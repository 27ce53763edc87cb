"""The hash chain's arithmetic, shared by appends and every verifier."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

# The columns a link's hash covers, in the order `iter_rows` yields them.
HASHED_FIELDS = (
    "seq",
    "created_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "tenant_id",
    "tenant_slug",
    "action",
    "target_type",
    "target_id",
    "details",
    "client_ip",
    "request_id",
    "prev_hash",
)


def canonical_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a link's fields (times as UTC ISO-8601 strings).

    `created_at` may be a datetime or already its canonical string (as exports carry it)."""
    document = {name: fields[name] for name in HASHED_FIELDS}
    if isinstance(document["created_at"], datetime):
        document["created_at"] = canonical_time(document["created_at"])
    return hashlib.sha256(canonical_json(document)).hexdigest()


def checkpoint_payload(*, last_seq: int, head_hash: str, created_at: str) -> bytes:
    """The bytes a checkpoint signature covers."""
    return canonical_json({"kind": "audit-checkpoint", "last_seq": last_seq,
                           "head_hash": head_hash, "created_at": created_at})


def iter_rows(queryset, chunk_size: int = 5000) -> Iterator[dict[str, Any]]:
    """Stream links in seq order without loading the table."""
    yield from queryset.order_by("seq").values(*HASHED_FIELDS, "hash").iterator(chunk_size)
