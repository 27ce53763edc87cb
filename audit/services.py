from __future__ import annotations

import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, canonical_time, checkpoint_payload, link_hash
from audit.integrity import IntegrityReport
from audit.models import ActorType, AuditCheckpoint, AuditEvent
from portal import request_context, signing

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key that serializes appends ("AUDIT" in ASCII, as a bigint).
_APPEND_LOCK_KEY = 0x4155444954


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
    return json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder))


def _lock_chain() -> None:
    """Serialize with every other append (and purge) until the transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_APPEND_LOCK_KEY])


@transaction.atomic
def record_event(
    *,
    action: str,
    actor: Any = None,
    tenant: Any = None,
    target: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event, in the caller's transaction.

    `tenant` is any object with `pk` and `slug`; `target` a model instance or a
    `(type, id)` pair. Appends are serialized with a transaction-scoped advisory lock
    (SQLite: the IMMEDIATE write lock), so concurrent writers never fork the chain.
    """
    _lock_chain()
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)

    actor_type, actor_id, actor_label = _actor_fields(actor)
    target_type, target_id = _target_fields(target)
    context = request_context.current()
    event = AuditEvent(
        seq=seq,
        created_at=timezone.now(),
        actor_type=actor_type,
        actor_id=actor_id,
        actor_label=actor_label[:254],
        tenant_id=getattr(tenant, "pk", None),
        tenant_slug=getattr(tenant, "slug", "") or "",
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=_normalized(details),
        client_ip=context.client_ip,
        request_id=context.request_id,
        prev_hash=prev_hash,
    )
    event.hash = link_hash(vars(event))
    event.save(force_insert=True)
    return event


def checkpoint_create(*, actor: Any = None) -> AuditCheckpoint | None:
    """Sign the current head. None when the head is already checkpointed (nothing new).

    Beat calls this at a fixed interval; people (and report generation) on demand. Only a
    person's request is itself recorded: recording beat's checkpoints would add an event
    each time and so never let the head rest.
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
    except IntegrityError:
        return None  # a concurrent caller checkpointed the same head
    if actor is not None and not isinstance(actor, str):
        record_event(action="audit.checkpoint_created", actor=actor, target=checkpoint,
                     details={"last_seq": checkpoint.last_seq,
                              "head_hash": checkpoint.head_hash})
    return checkpoint


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
