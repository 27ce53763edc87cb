from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit import limits, tsa
from audit.chain import GENESIS_HASH, canonical_time, checkpoint_payload, link_hash
from audit.integrity import PURGE_ACTION, IntegrityReport, verify_chain
from audit.models import (
    ActorType,
    AuditCheckpoint,
    AuditEvent,
    CheckpointTimestamp,
    ComplianceReport,
    ReportOrigin,
    ReportStatus,
)
from audit.reports import generate, periods
from audit.timestamps import TimestampError
from portal import locks, request_context, signing

logger = logging.getLogger(__name__)

def _actor_fields(actor: Any) -> tuple[str, str, str]:
    """A user, an API key (anything with `audit_actor_type`), a system label, or None."""
    if actor is None:
        return ActorType.SYSTEM, "", "system"
    if isinstance(actor, str):
        return ActorType.SYSTEM, "", actor
    actor_type = getattr(actor, "audit_actor_type", ActorType.USER)
    label = getattr(actor, "audit_label", None) or str(actor)
    return actor_type, str(actor.pk), label


def _target_fields(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        target_type, target_id = target
        return str(target_type), str(target_id)
    return target._meta.label_lower, str(target.pk)


def _normalized(details: dict[str, Any] | None) -> dict[str, Any]:
    # Store exactly what a later reader gets back, so the hash recomputes byte for byte.
    return limits.bounded_details(json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder)))


def _column(name: str, value: str) -> str:
    return limits.bounded_text(value, AuditEvent._meta.get_field(name).max_length)


def _lock_chain() -> None:
    """Serialize with every other append (and purge) until the transaction ends."""
    locks.hold(locks.AUDIT)


@transaction.atomic
def record_event(
    *,
    action: str,
    actor: Any = None,
    tenant: Any = None,
    target: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """Append one event, in the caller's transaction.

    `tenant` is any object with `pk` and `slug`; `target` a model instance or a
    `(type, id)` pair. Appends are serialized with a transaction-scoped advisory lock
    (SQLite: the IMMEDIATE write lock), so concurrent writers never fork the chain.

    Every string is bounded (`audit.limits`). Events of the anonymous actor caused by a
    request are admitted within per-client and overall budgets: over a budget, one
    `audit.anonymous_throttled` event is written instead and then nothing (None) until the
    next minute.
    """
    context = request_context.current()
    if actor == limits.ANONYMOUS and (context.request_id or context.client_ip):
        verdict = limits.anonymous_admission(action=action, client_ip=context.client_ip)
        if verdict is None:
            return None
        if verdict:
            action, actor, tenant, target, details = (limits.THROTTLED_ACTION, "system:audit",
                                                      None, None, verdict)
    _lock_chain()
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)

    actor_type, actor_id, actor_label = _actor_fields(actor)
    target_type, target_id = _target_fields(target)
    event = AuditEvent(
        seq=seq,
        created_at=timezone.now(),
        actor_type=actor_type,
        actor_id=_column("actor_id", actor_id),
        actor_label=_column("actor_label", actor_label),
        tenant_id=getattr(tenant, "pk", None),
        tenant_slug=_column("tenant_slug", getattr(tenant, "slug", "") or ""),
        action=_column("action", action),
        target_type=_column("target_type", target_type),
        target_id=_column("target_id", target_id),
        details=_normalized(details),
        client_ip=context.client_ip,
        request_id=_column("request_id", context.request_id),
        prev_hash=prev_hash,
    )
    event.hash = link_hash(vars(event))
    event.save(force_insert=True)
    return event


def _retention_horizon(now) -> int | None:
    """The lowest seq of any event still within its retention (None: every event is past it)."""
    classes = settings.AUDIT_RETENTION_CLASSES
    candidates = []
    for prefix, days in classes.items():
        candidates.append(AuditEvent.objects.filter(
            action__startswith=prefix, created_at__gte=now - timedelta(days=days))
            .order_by("seq").values_list("seq", flat=True).first())
    others = AuditEvent.objects.filter(
        created_at__gte=now - timedelta(days=settings.AUDIT_RETENTION_DEFAULT_DAYS))
    for prefix in classes:
        others = others.exclude(action__startswith=prefix)
    candidates.append(others.order_by("seq").values_list("seq", flat=True).first())
    kept = [seq for seq in candidates if seq is not None]
    return min(kept) if kept else None


@transaction.atomic
def audit_purge(*, now=None) -> AuditEvent | None:
    """Remove the oldest events that are past retention, up to a signed checkpoint.

    Purges the longest prefix #first–#P where P is a checkpoint and every event in it is past
    its class's retention. The prefix is verified first (a tampered prefix is evidence and is
    never purged: the refusal is recorded instead); then an `audit.purged` event records the
    range, its size and the SHA-256 over its hashes, and the delete follows in the same
    transaction (the table's guard lets it through only up to that record, migration 0005).
    Returns the purge record, or None when there is nothing to purge.
    """
    from audit.selectors import chain_rows, chain_tail_seq, signed_checkpoints

    now = now or timezone.now()
    _lock_chain()
    first = chain_tail_seq()
    if first is None:
        return None
    horizon = _retention_horizon(now)
    anchor = (AuditCheckpoint.objects.filter(last_seq__gte=first)
              .filter(**({"last_seq__lt": horizon} if horizon is not None else {}))
              .order_by("-last_seq").first())
    if anchor is None:
        return None
    digest = hashlib.sha256()

    def hashed(rows):
        for row in rows:
            digest.update(row["hash"].encode())
            yield row

    result = verify_chain(hashed(chain_rows(low=first, high=anchor.last_seq)),
                          signed_checkpoints(high=anchor.last_seq),
                          signing.platform_public_key(), extract=first != 1)
    if not result.ok or result.last_seq != anchor.last_seq:
        record_event(action="audit.purge_refused", actor="system:retention",
                     details={"first_seq": first, "through_seq": anchor.last_seq,
                              "error": result.error or "the range is incomplete"})
        logger.error("Retention purge refused: %s", result.error)
        return None
    purge = record_event(
        action=PURGE_ACTION, actor="system:retention",
        details={"first_seq": first, "through_seq": anchor.last_seq,
                 "through_hash": anchor.head_hash, "count": result.count,
                 "range_sha256": digest.hexdigest(),
                 "retention_days": {"default": settings.AUDIT_RETENTION_DEFAULT_DAYS,
                                    **settings.AUDIT_RETENTION_CLASSES}})
    AuditEvent.objects.filter(seq__lte=anchor.last_seq).delete()
    return purge


def checkpoint_create(*, actor: Any = None) -> AuditCheckpoint | None:
    """Sign the current head. None when the head is already checkpointed (nothing new).

    Beat calls this at a fixed interval; people (and report generation) on demand. Only a
    person's request is itself recorded: recording beat's checkpoints would add an event
    each time and so never let the head rest. With timestamps on, the checkpoint is made
    "not yet timestamped" and the TSA is asked afterwards, by a task (`checkpoint_timestamp`):
    a TSA that is slow or down never holds a checkpoint up.
    """
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    if head is None or AuditCheckpoint.objects.filter(last_seq__gte=head[0]).exists():
        return None
    created_at = timezone.now()
    payload = checkpoint_payload(last_seq=head[0], head_hash=head[1],
                                 created_at=canonical_time(created_at))
    try:
        with transaction.atomic():
            checkpoint = AuditCheckpoint.objects.create(
                last_seq=head[0], head_hash=head[1], created_at=created_at,
                key_id=signing.platform_key_id(), signature=signing.sign(payload))
            if tsa.enabled():
                CheckpointTimestamp.objects.create(checkpoint=checkpoint,
                                                   next_attempt_at=created_at)
                transaction.on_commit(lambda: _enqueue_timestamp(checkpoint.pk))
    except IntegrityError:
        return None  # a concurrent caller checkpointed the same head
    if actor is not None and not isinstance(actor, str):
        record_event(action="audit.checkpoint_created", actor=actor, target=checkpoint,
                     details={"last_seq": checkpoint.last_seq,
                              "head_hash": checkpoint.head_hash})
    return checkpoint


def _enqueue_timestamp(checkpoint_id: int) -> None:
    from audit.tasks import timestamp_checkpoint

    timestamp_checkpoint.delay(checkpoint_id)


# Attempts at a checkpoint's timestamp wait 1, 2, 4 … minutes, at most an hour, after a
# failure; a claimed attempt holds its row for the TSA timeout and a minute more.
TIMESTAMP_FIRST_BACKOFF = timedelta(minutes=1)
TIMESTAMP_MAX_BACKOFF = timedelta(hours=1)


def checkpoint_timestamp(*, checkpoint_id: int, now=None) -> CheckpointTimestamp | None:
    """Ask the TSA to timestamp a checkpoint whose attempt is due. None when timestamps are
    off or nothing is due (stamped already, waiting for its next attempt, or claimed).

    The attempt is claimed with a compare-and-set on `next_attempt_at`; the TSA is then
    called outside any transaction or lock, and the outcome stored in one short UPDATE:
    the verified answer, or the reason and the time of the next attempt. Not recorded in
    the chain, like beat's checkpoints: an event per timestamp would keep the head moving.
    """
    if not tsa.enabled():
        return None
    now = now or timezone.now()
    pending = CheckpointTimestamp.objects.filter(checkpoint_id=checkpoint_id,
                                                 response__isnull=True)
    lease = timedelta(seconds=settings.TSA_TIMEOUT_SECONDS + 60)
    if not pending.filter(next_attempt_at__lte=now).update(next_attempt_at=now + lease,
                                                           attempts=F("attempts") + 1):
        return None
    checkpoint = AuditCheckpoint.objects.get(pk=checkpoint_id)
    payload = checkpoint_payload(last_seq=checkpoint.last_seq, head_hash=checkpoint.head_hash,
                                 created_at=canonical_time(checkpoint.created_at))
    try:
        response, stamp = tsa.stamp(payload)
    except (TimestampError, OSError) as exc:  # OSError: TSA_CA_FILE went missing
        attempts = pending.values_list("attempts", flat=True).first() or 1
        backoff = min(TIMESTAMP_MAX_BACKOFF, TIMESTAMP_FIRST_BACKOFF * 2 ** (attempts - 1))
        pending.update(last_error=str(exc)[:500], next_attempt_at=now + backoff)
        logger.warning("Checkpoint #%s not timestamped (attempt %s, next in %s): %s",
                       checkpoint.last_seq, attempts, backoff, exc)
    else:
        pending.update(response=response, time=stamp.time, tsa=stamp.tsa[:254],
                       last_error="", next_attempt_at=None)
    return CheckpointTimestamp.objects.get(checkpoint_id=checkpoint_id)


def checkpoint_timestamps_retry(*, now=None) -> list[int]:
    """Beat: timestamp the checkpoints whose next attempt is due, oldest first; the seqs of
    those stamped. Stops at the first failure, so a TSA that is down costs one timeout per
    run, not one per waiting checkpoint."""
    if not tsa.enabled():
        return []
    now = now or timezone.now()
    due = (CheckpointTimestamp.objects.filter(response__isnull=True, next_attempt_at__lte=now)
           .order_by("next_attempt_at").values_list("checkpoint_id", flat=True)[:100])
    stamped = []
    for checkpoint_id in list(due):
        row = checkpoint_timestamp(checkpoint_id=checkpoint_id, now=now)
        if row is None:
            continue  # claimed by another worker meanwhile
        if not row.is_stamped:
            break
        stamped.append(row.checkpoint.last_seq)
    return stamped


def chain_verification_record() -> IntegrityReport:
    """Verify the whole chain and record the outcome in it (the periodic integrity check)."""
    from audit.selectors import chain_verify

    result = chain_verify()
    if result.ok:
        record_event(
            action="audit.chain_verified",
            actor="system:beat",
            details={"first_seq": result.first_seq, "last_seq": result.last_seq,
                     "head_hash": result.head_hash,
                     "checkpoints_matched": result.checkpoints_matched},
        )
    else:
        logger.error("Audit chain broken: %s", result.error)
        record_event(
            action="audit.chain_broken",
            actor="system:beat",
            details={"error": result.error, "broken_seq": result.broken_seq},
        )
    return result


# --- Compliance reports -----------------------------------------------------------------


def _enqueue_generation(report: ComplianceReport) -> None:
    from audit.tasks import generate_report

    transaction.on_commit(lambda: generate_report.delay(report.pk))


@transaction.atomic
def report_request(*, actor: Any, period: periods.Period, tenant: Any = None,
                   origin: str = ReportOrigin.ON_DEMAND, enqueue: bool = True
                   ) -> ComplianceReport:
    """Ask for a report of a period that has ended, for the platform or one tenant
    (any object with `pk` and `slug`). Generation runs in a Celery task after commit."""
    periods.ensure_over(period, now=timezone.now())
    report = ComplianceReport(
        kind=period.kind, period_label=period.label, period_start=period.start,
        period_end=period.end, tenant_id=getattr(tenant, "pk", None),
        tenant_slug=getattr(tenant, "slug", "") or "", origin=origin,
        requested_by=_actor_fields(actor)[2][:254])
    report.full_clean()
    report.save()
    record_event(action="report.requested", actor=actor, tenant=tenant, target=report,
                 details={"period": period.label, "origin": origin})
    if enqueue:
        _enqueue_generation(report)
    return report


def report_generate(*, report_id: int) -> ComplianceReport | None:
    """Claim a pending report and produce its files. None when someone else holds it.

    The claim is a compare-and-set from pending to running, so a task delivered twice
    generates once. Failures are kept with their reason, for the retry button."""
    claimed = ComplianceReport.objects.filter(pk=report_id, status=ReportStatus.PENDING).update(
        status=ReportStatus.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1,
        error="")
    if not claimed:
        return None
    report = ComplianceReport.objects.get(pk=report_id)
    tenant = _ReportTenant(report.tenant_id, report.tenant_slug) if report.tenant_id else None
    # Sign the head first, so the period's last events are anchored by a checkpoint.
    checkpoint_create()
    try:
        files = generate.produce(
            report_id=report.pk,
            period=periods.Period(report.kind, report.period_label, report.period_start,
                                  report.period_end),
            tenant_id=report.tenant_id, tenant_slug=report.tenant_slug,
            generated_at=timezone.now(), directory=generate.reports_dir())
    except Exception as exc:  # any failure is kept, with its reason, for a retry
        logger.exception("Report %s failed", report.pk)
        with transaction.atomic():
            ComplianceReport.objects.filter(pk=report.pk).update(
                status=ReportStatus.FAILED, finished_at=timezone.now(),
                error=f"{type(exc).__name__}: {exc}"[:2000])
            record_event(action="report.failed", actor="system:reports", tenant=tenant,
                         target=report, details={"error": f"{type(exc).__name__}: {exc}"[:500]})
        report.refresh_from_db()
        return report
    with transaction.atomic():
        ComplianceReport.objects.filter(pk=report.pk).update(
            status=ReportStatus.READY, finished_at=timezone.now(), pdf_name=files.pdf_name,
            pdf_size=files.pdf_size, bundle_name=files.bundle_name,
            bundle_size=files.bundle_size, bundle_sha256=files.bundle_sha256)
        record_event(action="report.generated", actor="system:reports", tenant=tenant,
                     target=report, details={"period": report.period_label,
                                             "bundle_sha256": files.bundle_sha256})
    report.refresh_from_db()
    return report


class _ReportTenant:
    """The tenant of a report, as audit events record it (id and slug)."""

    def __init__(self, pk: int, slug: str):
        self.pk, self.slug = pk, slug


@transaction.atomic
def report_retry(*, actor: Any, report: ComplianceReport) -> ComplianceReport:
    from portal.api import ApplicationError

    if not ComplianceReport.objects.filter(pk=report.pk, status=ReportStatus.FAILED).update(
            status=ReportStatus.PENDING, error=""):
        raise ApplicationError("Only a failed report can be retried.")
    report.refresh_from_db()
    tenant = _ReportTenant(report.tenant_id, report.tenant_slug) if report.tenant_id else None
    record_event(action="report.retried", actor=actor, tenant=tenant, target=report,
                 details={"period": report.period_label, "attempts": report.attempts})
    _enqueue_generation(report)
    return report


# A report of a month with millions of events takes well under ten minutes; one still
# "running" after an hour lost its worker (restart, OOM kill). A pending one the broker
# never delivered is sent again after a few minutes.
REPORT_RUNNING_STALE_AFTER = timedelta(hours=1)
REPORT_PENDING_RESEND_AFTER = timedelta(minutes=5)


def reports_reclaim_stale(*, now=None) -> dict[str, list[int]]:
    """Beat: fail reports whose worker died mid-generation (the retry button then works),
    and re-send pending reports whose task was lost. Idempotent and safe beside a live
    worker: a running report is failed only through a compare-and-set on its start time."""
    now = now or timezone.now()
    failed, resent = [], []
    stale = ComplianceReport.objects.filter(status=ReportStatus.RUNNING,
                                            started_at__lt=now - REPORT_RUNNING_STALE_AFTER)
    for report in stale:
        reason = (f"Generation stopped: the worker working on it since "
                  f"{report.started_at:%Y-%m-%d %H:%M} UTC went away. Retry the report.")
        with transaction.atomic():
            if not ComplianceReport.objects.filter(
                    pk=report.pk, status=ReportStatus.RUNNING,
                    started_at=report.started_at).update(
                        status=ReportStatus.FAILED, finished_at=now, error=reason):
                continue
            tenant = (_ReportTenant(report.tenant_id, report.tenant_slug)
                      if report.tenant_id else None)
            record_event(action="report.failed", actor="system:reports", tenant=tenant,
                         target=report, details={"error": reason})
        failed.append(report.pk)
    for report in ComplianceReport.objects.filter(
            status=ReportStatus.PENDING, created_at__lt=now - REPORT_PENDING_RESEND_AFTER):
        from audit.tasks import generate_report

        generate_report.delay(report.pk)  # the claim makes a duplicate delivery harmless
        resent.append(report.pk)
    return {"failed": failed, "resent": resent}


def reports_schedule_due(*, now=None) -> list[ComplianceReport]:
    """Beat: yesterday's daily report, last week's on Mondays, last month's on the 1st —
    for the platform. Idempotent: each scheduled report exists once."""
    created = []
    for period in periods.previous_periods(now or timezone.now()):
        if ComplianceReport.objects.filter(origin=ReportOrigin.SCHEDULED,
                                           period_label=period.label, tenant_slug="").exists():
            continue
        try:
            created.append(report_request(actor="system:beat", period=period,
                                          origin=ReportOrigin.SCHEDULED))
        except (IntegrityError, ValidationError):
            continue  # a concurrent beat run created it
    return created
