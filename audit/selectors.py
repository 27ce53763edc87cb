from __future__ import annotations

import base64
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection
from django.db.models import Max, QuerySet, TextField
from django.db.models.functions import Cast, Upper
from django.http import Http404

from audit.chain import HASHED_FIELDS, canonical_time, iter_rows
from audit.filters import EventFilter
from audit.integrity import IntegrityReport, SignedCheckpoint, verify_chain
from audit.models import AuditCheckpoint, AuditEvent, CheckpointTimestamp, ComplianceReport
from portal import signing


def seq_bounds(*, since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """The seq range that can hold events of [since, until).

    Keyset pages and index scans work on seq; a time range is turned into seq bounds with
    one LIMIT 1 lookup each, then every filter index (all end in seq) applies them as an
    index condition. Appends take the chain lock before reading the clock, so time and seq
    rise together; the created_at condition is still applied, so the result stays exact
    even if a clock once stepped back.
    """
    events = AuditEvent.objects.order_by()
    low = high = None
    if since is not None:
        low = events.filter(created_at__gte=since).order_by("seq").values_list(
            "seq", flat=True).first()
        low = -1 if low is None else low
    if until is not None:
        high = events.filter(created_at__lt=until).order_by("-seq").values_list(
            "seq", flat=True).first()
        high = -1 if high is None else high
    return low, high


def event_queryset(filters: EventFilter) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if filters.tenant_id is not None:
        qs = qs.filter(tenant_id=filters.tenant_id)
    if filters.action.endswith((".", "*")):
        qs = qs.filter(action__startswith=filters.action.rstrip("*"))
    elif filters.action:
        qs = qs.filter(action=filters.action)
    if filters.actor:
        qs = qs.filter(actor_label=filters.actor)
    if filters.target_type:
        qs = qs.filter(target_type=filters.target_type)
    if filters.target_id:
        qs = qs.filter(target_id=filters.target_id)
    if filters.since or filters.until:
        low, high = seq_bounds(since=filters.since, until=filters.until)
        if low is not None:
            qs = qs.filter(seq__gte=low, created_at__gte=filters.since)
        if high is not None:
            qs = qs.filter(seq__lte=high, created_at__lt=filters.until)
    if filters.search:
        # Same expression as the trigram index audit_details_trgm (migration 0003).
        qs = qs.annotate(details_upper=Upper(Cast("details", TextField()))).filter(
            details_upper__contains=filters.search.upper())
    return qs


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    older_cursor: int | None  # pass as `before` for the next older page
    newer_cursor: int | None  # pass as `after` for the next newer page


def event_page(*, filters: EventFilter, before: int | None = None, after: int | None = None,
               limit: int = 50) -> EventPage:
    """Newest first, keyset-paginated on seq: deep pages cost the same as the first."""
    qs = event_queryset(filters)
    if after is not None and before is None:
        rows = list(qs.filter(seq__gt=after).order_by("seq")[: limit + 1])
        has_newer = len(rows) > limit
        events = list(reversed(rows[:limit]))
        has_older = bool(events) and qs.filter(seq__lt=events[-1].seq).exists()
    else:
        if before is not None:
            qs_page = qs.filter(seq__lt=before)
        else:
            qs_page = qs
        rows = list(qs_page.order_by("-seq")[: limit + 1])
        has_older = len(rows) > limit
        events = rows[:limit]
        has_newer = before is not None and bool(events) and qs.filter(
            seq__gt=events[0].seq).exists()
    return EventPage(
        events=events,
        older_cursor=events[-1].seq if has_older and events else None,
        newer_cursor=events[0].seq if has_newer and events else None,
    )


EXPORT_FIELDS = (*HASHED_FIELDS, "hash")


def event_export_rows(filters: EventFilter) -> Iterator[dict[str, Any]]:
    """Every matching event, oldest first, streamed (a server-side cursor on PostgreSQL)."""
    for row in event_queryset(filters).order_by("seq").values(*EXPORT_FIELDS).iterator(2000):
        row["created_at"] = canonical_time(row["created_at"])
        yield row


def event_get(*, seq: int, tenant_id: int | None = None) -> AuditEvent:
    """The event; 404 when missing or, for a tenant's page, another tenant's."""
    qs = AuditEvent.objects.filter(seq=seq)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    event = qs.first()
    if event is None:
        raise Http404("No such audit event.")
    return event


def event_neighbours(*, event: AuditEvent, tenant_id: int | None = None
                     ) -> tuple[int | None, int | None]:
    """Seq of the previous and next event the same reader may see."""
    qs = AuditEvent.objects.all()
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    previous = qs.filter(seq__lt=event.seq).order_by("-seq").values_list("seq", flat=True).first()
    following = qs.filter(seq__gt=event.seq).order_by("seq").values_list("seq", flat=True).first()
    return previous, following


def checkpoint_covering(seq: int) -> AuditCheckpoint | None:
    return AuditCheckpoint.objects.filter(last_seq__gte=seq).order_by("last_seq").first()


def chain_head() -> AuditEvent | None:
    return AuditEvent.objects.order_by("-seq").first()


def chain_tail_seq() -> int | None:
    return AuditEvent.objects.order_by("seq").values_list("seq", flat=True).first()


def checkpoint_list(*, limit: int = 100, before: int | None = None) -> list[AuditCheckpoint]:
    """Newest first, each with its timestamp row (if any; the token itself left out)."""
    qs = (AuditCheckpoint.objects.select_related("timestamp").defer("timestamp__response")
          .order_by("-last_seq"))
    if before is not None:
        qs = qs.filter(last_seq__lt=before)
    return list(qs[:limit])


def checkpoint_get(*, last_seq: int) -> AuditCheckpoint:
    checkpoint = (AuditCheckpoint.objects.select_related("timestamp")
                  .filter(last_seq=last_seq).first())
    if checkpoint is None:
        raise Http404("No checkpoint ends at this sequence number.")
    return checkpoint


def _signed(cp: AuditCheckpoint, response: bytes | None = None) -> SignedCheckpoint:
    return SignedCheckpoint(cp.last_seq, cp.head_hash, canonical_time(cp.created_at), cp.key_id,
                            cp.signature,
                            base64.b64encode(response).decode() if response else None)


def signed_checkpoints(*, low: int | None = None, high: int | None = None,
                       with_timestamps: bool = False) -> list[SignedCheckpoint]:
    """The checkpoints of a seq range; `with_timestamps` adds each one's TSA answer (a few KB
    each: bundles want them, the chain's own verification does not)."""
    qs = AuditCheckpoint.objects.order_by("last_seq")
    if low is not None:
        qs = qs.filter(last_seq__gte=low)
    if high is not None:
        qs = qs.filter(last_seq__lte=high)
    if not with_timestamps:
        return [_signed(cp) for cp in qs]
    qs = qs.select_related("timestamp")
    return [_signed(cp, _response_of(cp)) for cp in qs]


def _response_of(checkpoint: AuditCheckpoint) -> bytes | None:
    stamp = checkpoint.timestamp_or_none
    return bytes(stamp.response) if stamp is not None and stamp.response is not None else None


def timestamped_checkpoints() -> Iterator[SignedCheckpoint]:
    """Every checkpoint with its TSA answer, oldest first, streamed (for `audit_verify`)."""
    qs = AuditCheckpoint.objects.select_related("timestamp").order_by("last_seq")
    for checkpoint in qs.iterator(chunk_size=500):
        yield _signed(checkpoint, _response_of(checkpoint))


def timestamped_checkpoint_count() -> int:
    return CheckpointTimestamp.objects.filter(response__isnull=False).count()


def checkpoints_awaiting_timestamp() -> list[int]:
    """Seqs of the checkpoints made with timestamps on whose timestamp is still missing."""
    return list(CheckpointTimestamp.objects.filter(response__isnull=True)
                .order_by("checkpoint__last_seq")
                .values_list("checkpoint__last_seq", flat=True))


_FAST_ROWS_SQL = """
    SELECT seq, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           actor_type, actor_id, actor_label, tenant_id, tenant_slug, action, target_type,
           target_id, details, client_ip, request_id, prev_hash, hash
    FROM audit_auditevent {where} ORDER BY seq
"""


def chain_rows(*, low: int | None = None, high: int | None = None
               ) -> Iterator[dict[str, Any]]:
    """Links in seq order, streamed. On PostgreSQL a server-side cursor with the time already
    in canonical form: this loop feeds `audit_verify`, which must sustain >100k events/s."""
    if connection.vendor != "postgresql":
        qs = AuditEvent.objects.all()
        if low is not None:
            qs = qs.filter(seq__gte=low)
        if high is not None:
            qs = qs.filter(seq__lte=high)
        for row in iter_rows(qs):
            row["created_at"] = canonical_time(row["created_at"])
            yield row
        return
    conditions, params = [], []
    if low is not None:
        conditions.append("seq >= %s")
        params.append(low)
    if high is not None:
        conditions.append("seq <= %s")
        params.append(high)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    names = EXPORT_FIELDS
    loads = orjson.loads
    with connection.chunked_cursor() as cursor:
        cursor.execute(_FAST_ROWS_SQL.format(where=where), params)
        for batch in _prefetched(cursor, 10000):
            for values in batch:
                row = dict(zip(names, values, strict=True))
                # Django's PostgreSQL connection hands jsonb over as text.
                if isinstance(row["details"], str):
                    row["details"] = loads(row["details"])
                yield row


def _prefetched(cursor, size: int) -> Iterator[list]:
    """The cursor's batches, the next one fetched by a thread while this one is consumed.

    The server formats rows while Python hashes the previous batch: on two cores that
    overlap is a third of `audit_verify`'s time. The thread only waits on the socket and
    parses rows; the cursor is used by one thread at a time (the queue hands it over)."""
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch():
        try:
            while not stop.is_set():
                batch = cursor.fetchmany(size)
                batches.put(batch)
                if not batch:
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            batches.put(exc)

    worker = threading.Thread(target=fetch, name="audit-chain-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            batch = batches.get()
            if isinstance(batch, BaseException):
                raise batch
            if not batch:
                return
            yield batch
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def chain_verify() -> IntegrityReport:
    """The whole chain, checked link by link and against every signed checkpoint."""
    return verify_chain(chain_rows(), signed_checkpoints(), signing.platform_public_key())


def latest_event_by_actor(*, action: str, actor_ids: list[str]) -> dict[str, AuditEvent]:
    """actor id → that actor's newest event with `action` (e.g. each person's last sign-in)."""
    newest = (AuditEvent.objects.filter(action=action, actor_type="user", actor_id__in=actor_ids)
              .values("actor_id").annotate(last=Max("seq")).values_list("last", flat=True))
    return {e.actor_id: e for e in AuditEvent.objects.filter(seq__in=list(newest))}


def report_list(*, limit: int = 200) -> list[ComplianceReport]:
    return list(ComplianceReport.objects.order_by("-created_at", "-id")[:limit])


def report_get(*, pk: int) -> ComplianceReport:
    report = ComplianceReport.objects.filter(pk=pk).first()
    if report is None:
        raise Http404("No such report.")
    return report
