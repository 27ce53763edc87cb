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


# The canonical line written by PostgreSQL, so that a month of batches is checked without
# loading millions of rows into Python: (field, how it is written, when it is left out), in
# the line's sorted key order. It must give canonical_line's bytes exactly; strings that JSON
# would escape beyond a quote or a backslash (control characters, non-ASCII) make the row not
# `plain`, and such a batch is checked in Python instead.
_LINE_FIELDS = (
    ("api_key_id", "int", None), ("cached_input_price_per_million", "decimal", "null"),
    ("cached_input_tokens", "int", "zero"), ("cost", "decimal", None),
    ("created_at", "time", None), ("currency", "text", None), ("deployment_id", "int", None),
    ("endpoint", "text", None), ("estimated", "bool", None),
    ("input_price_per_million", "decimal", None), ("input_tokens", "int", None),
    ("latency_ms", "int", None), ("model_id", "int", None), ("model_slug", "text", None),
    ("output_price_per_million", "decimal", None), ("output_tokens", "int", None),
    ("reasoning_tokens", "int", "zero"), ("request_id", "text", None),
    ("status_code", "int", None), ("streamed", "bool", None), ("tenant_id", "int", None),
    ("ttft_ms", "int", None),
)
_TEXT_FIELDS = [name for name, kind, _ in _LINE_FIELDS if kind == "text"]


def _value_sql(name: str, kind: str) -> str:
    if kind == "int":
        return f"COALESCE({name}::text, 'null')"
    if kind == "bool":
        return f"CASE WHEN {name} THEN 'true' ELSE 'false' END"
    if kind == "text":
        return f"""'"' || replace(replace({name}, '\\', '\\\\'), '"', '\\"') || '"'"""
    if kind == "decimal":  # numeric(p, s) prints with exactly its scale, as _decimal does
        return f"""COALESCE('"' || {name}::text || '"', 'null')"""
    # isoformat() in UTC: microseconds only when there are some
    return (f"""'"' || to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || """
            f"CASE WHEN date_trunc('second', {name}) = {name} THEN '' "
            f"""ELSE to_char({name} AT TIME ZONE 'UTC', '.US') END || '+00:00"'""")


def line_sql() -> tuple[str, str]:
    """SQL expressions for a usage record row's canonical line and for whether it is plain
    (its strings need no JSON escaping beyond quote and backslash)."""
    parts = []
    for position, (name, kind, omitted_when) in enumerate(_LINE_FIELDS):
        key = f"""'{"," if position else "{"}"{name}":'"""
        if omitted_when == "zero":
            parts.append(f"CASE WHEN {name} <> 0 THEN {key} || {_value_sql(name, kind)} "
                         "ELSE '' END")
        elif omitted_when == "null":
            parts.append(f"CASE WHEN {name} IS NOT NULL THEN {key} || "
                         f"{_value_sql(name, kind)} ELSE '' END")
        else:
            parts.append(f"{key} || {_value_sql(name, kind)}")
    strings = " || ".join(_TEXT_FIELDS)
    plain = f"(octet_length({strings}) = char_length({strings}) AND ({strings}) !~ '[[:cntrl:]]')"
    return " || ".join([*parts, "'}'"]), plain


@dataclass(frozen=True)
class SealProblem:
    seq: int
    message: str


def seal_problem(*, seq: int, details: dict, records: int, digest: str | None
                 ) -> SealProblem | None:
    """What is wrong with the batch a seal covers, given its remaining records' count and
    digest (None: nothing to say)."""
    if records != details.get("records"):
        return SealProblem(seq, f"batch sealed by #{seq} held {details.get('records')} "
                                f"records; {records} remain")
    if digest != details.get("sha256"):
        return SealProblem(seq, f"a record sealed by #{seq} was altered")
    return None


def verify_seals(*, seals, records_for) -> tuple[int, list[SealProblem]]:
    """Check each seal event against the records it covers; returns (checked, problems)."""
    checked, problems = 0, []
    for seal in seals:
        checked += 1
        records = list(records_for(seal.seq))
        problem = seal_problem(seq=seal.seq, details=seal.details, records=len(records),
                               digest=batch_digest(records))
        if problem:
            problems.append(problem)
    return checked, problems
