"""Chain verification against signed checkpoints, shared by `audit_verify`, reports and the
offline bundle verifier. Pure Python (no Django), so an auditor can run it with the public
key alone.

Why checkpoints: the hash chain alone proves only that the rows are consistent with each
other. A database owner can switch the append-only triggers off, rewrite history and
recompute every hash after it; the chain is then consistent again. A checkpoint is the head
hash at some sequence number, signed with a key the database never sees, so a rewritten
history no longer matches the signed head hash at that point.

Purged prefixes: retention removes the oldest events, always up to a checkpoint. The first
remaining event then links to that checkpoint's signed head hash, and an `audit.purged`
event later in the chain names the same point — both are required.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import GENESIS_HASH, checkpoint_payload, row_hash_matches
from portal.signing import key_id as public_key_id
from portal.signing import verify as verify_signature

PURGE_ACTION = "audit.purged"


@dataclass(frozen=True)
class SignedCheckpoint:
    last_seq: int
    head_hash: str
    created_at: str  # canonical UTC time, as signed
    key_id: str
    signature: str
    # Base64 of the TSA's RFC 3161 answer over the signed payload (`audit.timestamps`);
    # None while the checkpoint is not (yet) timestamped, and in bundles made before them.
    timestamp: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"last_seq": self.last_seq, "head_hash": self.head_hash,
                "created_at": self.created_at, "key_id": self.key_id,
                "signature": self.signature, "timestamp": self.timestamp}


@dataclass
class IntegrityReport:
    first_seq: int | None = None
    last_seq: int | None = None
    count: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints_total: int = 0
    checkpoints_matched: int = 0
    checkpoints_before_range: int = 0
    purged_through: int | None = None
    error: str | None = None
    broken_seq: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "count": self.count, "head_hash": self.head_hash,
                "checkpoints_total": self.checkpoints_total,
                "checkpoints_matched": self.checkpoints_matched,
                "checkpoints_before_range": self.checkpoints_before_range,
                "purged_through": self.purged_through, "error": self.error,
                "broken_seq": self.broken_seq}


def check_signatures(checkpoints: Iterable[SignedCheckpoint],
                     public_key: Ed25519PublicKey) -> str | None:
    """The first checkpoint whose signature fails, described; None when all are good."""
    expected_key = public_key_id(public_key)
    for cp in checkpoints:
        if cp.key_id != expected_key:
            return (f"the checkpoint at #{cp.last_seq} was signed with key {cp.key_id}, "
                    f"not with the verifying key {expected_key}")
        payload = checkpoint_payload(last_seq=cp.last_seq, head_hash=cp.head_hash,
                                     created_at=cp.created_at)
        if not verify_signature(public_key, payload, cp.signature):
            return f"the checkpoint at #{cp.last_seq} has an invalid signature"
    return None


def verify_chain(
    rows: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[SignedCheckpoint],
    public_key: Ed25519PublicKey,
    *,
    extract: bool = False,
) -> IntegrityReport:
    """Walk `rows` in seq order, checking links, hashes and every checkpoint they reach.

    The whole chain (`extract=False`) must start at #1 or right after a checkpoint named by
    an `audit.purged` event. An extract (`extract=True`, an evidence bundle's audit file)
    must start at #1 or right after any checkpoint, and may contain link-only rows
    (`{"seq", "prev_hash", "hash", "redacted": true}`) whose contents are out of its scope.
    """
    checkpoints = sorted(checkpoints, key=lambda cp: cp.last_seq)
    report = IntegrityReport(checkpoints_total=len(checkpoints))
    bad = check_signatures(checkpoints, public_key)
    if bad:
        return _broken(report, bad, None)
    by_seq = {cp.last_seq: cp for cp in checkpoints}

    prev, expected_seq = GENESIS_HASH, 1
    # Events #1–#unrecorded_purge are gone; None again once an audit.purged event records it.
    unrecorded_purge: int | None = None
    for row in rows:
        seq = row["seq"]
        if report.first_seq is None:
            report.first_seq = seq
            if seq != 1:
                anchor = by_seq.get(seq - 1)
                if anchor is None:
                    return _broken(report, _unanchored_start(seq, extract), seq)
                prev, expected_seq = anchor.head_hash, seq
                if not extract:
                    unrecorded_purge = report.purged_through = seq - 1
        cp = by_seq.get(seq)
        fault = _row_fault(row, expected_seq, prev, cp)
        if fault is not None:
            return _broken(report, *fault)
        if cp is not None:
            report.checkpoints_matched += 1
        if unrecorded_purge is not None and _records_purge(row, unrecorded_purge):
            unrecorded_purge = None
        prev = row["hash"]
        report.last_seq = seq
        report.count += 1
        expected_seq = seq + 1

    report.head_hash = prev
    return _check_range(report, checkpoints, unrecorded_purge, extract=extract)


def _broken(report: IntegrityReport, error: str, broken_seq: int | None) -> IntegrityReport:
    """`report`, failed with `error` at `broken_seq`."""
    report.error = error
    report.broken_seq = broken_seq
    return report


def _unanchored_start(seq: int, extract: bool) -> str:
    """Why a first event `seq` other than #1 is refused when no checkpoint at `seq - 1` exists."""
    what = "the extract starts" if extract else "events before it are gone"
    return (f"#{seq} is the first event, but {what} and no signed "
            f"checkpoint at #{seq - 1} anchors it")


def _row_fault(row: Mapping[str, Any], expected_seq: int, prev: str,
               cp: SignedCheckpoint | None) -> tuple[str, int] | None:
    """Why `row` breaks the chain, with the seq to blame; None when it follows `prev` at
    `expected_seq`, its contents match its hash (unless redacted) and it matches `cp`, the
    signed checkpoint at its seq, if any."""
    seq = row["seq"]
    if seq != expected_seq:
        missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}–{seq - 1}"
        return f"event(s) {missing} missing before #{seq}", expected_seq
    if row["prev_hash"] != prev:
        return f"#{seq} does not link to the event before it", seq
    if not row.get("redacted") and not row_hash_matches(row):
        return f"#{seq} was altered: its contents no longer match its hash", seq
    if cp is not None and cp.head_hash != row["hash"]:
        return (f"#{seq} differs from the signed checkpoint of {cp.created_at}: "
                "history up to it was rewritten", seq)
    return None


def _records_purge(row: Mapping[str, Any], through_seq: int) -> bool:
    """Whether `row` is the `audit.purged` event for the purge of events #1–#`through_seq`."""
    return (not row.get("redacted") and row.get("action") == PURGE_ACTION
            and (row.get("details") or {}).get("through_seq") == through_seq)


def _check_range(report: IntegrityReport, checkpoints: list[SignedCheckpoint],
                 unrecorded_purge: int | None, *, extract: bool) -> IntegrityReport:
    """After the walk: count the checkpoints before the range, then fail on a purge of
    events #1–#`unrecorded_purge` that no `audit.purged` event records or (whole chain
    only) on signed checkpoints beyond the last event."""
    first = report.first_seq or 1
    report.checkpoints_before_range = sum(1 for cp in checkpoints if cp.last_seq < first)
    if unrecorded_purge is not None:
        return _broken(report, f"events #1–#{unrecorded_purge} are gone but no audit.purged "
                               "event records their purge", first)
    last = report.last_seq or 0
    beyond = [cp for cp in checkpoints if cp.last_seq > last]
    if beyond and not extract:
        cp = beyond[-1]
        _broken(report, f"events #{last + 1}–#{cp.last_seq} are missing: the signed checkpoint "
                        f"of {cp.created_at} covers them", last + 1)
    return report
