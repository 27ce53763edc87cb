"""Usage records are tamper-evident without a lock per request: each ingested batch is sealed
by one audit event holding the SHA-256 of the batch's records (canonical JSON lines, sorted
by request id). Re-computing it from the stored rows later shows any edited, added or
deleted record of the batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

SEAL_ACTION = "usage.batch_sealed"
_PRICE = Decimal("0.000001")
_COST = Decimal("0.00000001")


def _decimal(value: Decimal | None, step: Decimal) -> str | None:
    return None if value is None else format(Decimal(value).quantize(step), "f")


def canonical_line(record) -> bytes:
    line = {
        "request_id": record.request_id, "tenant_id": record.tenant_id,
        "created_at": record.created_at.astimezone(UTC).isoformat(),
        "api_key_id": record.api_key_id, "model_id": record.model_id,
        "model_slug": record.model_slug, "deployment_id": record.deployment_id,
        "endpoint": record.endpoint, "status_code": record.status_code,
        "streamed": record.streamed, "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens, "estimated": record.estimated,
        "latency_ms": record.latency_ms, "ttft_ms": record.ttft_ms,
        "input_price_per_million": _decimal(record.input_price_per_million, _PRICE),
        "output_price_per_million": _decimal(record.output_price_per_million, _PRICE),
        "currency": record.currency, "cost": _decimal(record.cost, _COST),
    }
    # Fields added later appear only where they say something, so the lines (and digests) of
    # records sealed before them stay as they were.
    for name in ("cached_input_tokens", "reasoning_tokens"):
        if getattr(record, name, 0):
            line[name] = getattr(record, name)
    if getattr(record, "cached_input_price_per_million", None) is not None:
        line["cached_input_price_per_million"] = _decimal(
            record.cached_input_price_per_million, _PRICE)
    return json.dumps(line, sort_keys=True, separators=(",", ":")).encode()


def batch_digest(records: Iterable) -> str:
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.request_id):
        digest.update(canonical_line(record) + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class SealProblem:
    seq: int
    message: str


def verify_seals(*, seals, records_for) -> tuple[int, list[SealProblem]]:
    """Check each seal event against the records it covers; returns (checked, problems)."""
    checked, problems = 0, []
    for seal in seals:
        checked += 1
        records = list(records_for(seal.seq))
        if len(records) != seal.details.get("records"):
            problems.append(SealProblem(seal.seq, f"batch sealed by #{seal.seq} held "
                                                  f"{seal.details.get('records')} records; "
                                                  f"{len(records)} remain"))
        elif batch_digest(records) != seal.details.get("sha256"):
            problems.append(SealProblem(seal.seq, f"a record sealed by #{seal.seq} was altered"))
    return checked, problems
