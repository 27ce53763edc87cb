"""The hash chain's arithmetic, shared by appends and every verifier."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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
    """SHA-256 of the canonical JSON of a link's fields (times as UTC ISO-8601 strings)."""
    document = {name: fields[name] for name in HASHED_FIELDS}
    document["created_at"] = canonical_time(document["created_at"])
    return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    first_seq: int | None
    last_seq: int | None
    count: int
    head_hash: str
    error: str | None = None
    broken_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def verify_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    expected_prev: str = GENESIS_HASH,
    expected_first_seq: int | None = 1,
) -> VerifyResult:
    """Walk links in `seq` order; stop at the first one whose position, link or hash is wrong."""
    first = last = None
    prev = expected_prev
    count = 0
    expected_seq = expected_first_seq
    for row in rows:
        seq = row["seq"]
        if first is None:
            first = seq
        if expected_seq is not None and seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}–{seq - 1}"
            return VerifyResult(first, last, count, prev,
                                f"event(s) {missing} missing before #{seq}", expected_seq)
        if row["prev_hash"] != prev:
            return VerifyResult(first, last, count, prev,
                                f"#{seq} does not link to the event before it", seq)
        if link_hash(row) != row["hash"]:
            return VerifyResult(first, last, count, prev,
                                f"#{seq} was altered: its contents no longer match its hash", seq)
        prev = row["hash"]
        last = seq
        count += 1
        expected_seq = seq + 1
    return VerifyResult(first, last, count, prev)


def iter_rows(queryset, chunk_size: int = 5000) -> Iterator[dict[str, Any]]:
    """Stream links in seq order without loading the table."""
    yield from queryset.order_by("seq").values(*HASHED_FIELDS, "hash").iterator(chunk_size)
