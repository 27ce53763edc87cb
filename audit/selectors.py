from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from audit.chain import VerifyResult, iter_rows, verify_rows
from audit.models import AuditEvent


@dataclass(frozen=True)
class EventFilter:
    tenant_id: int | None = None
    action: str = ""
    actor: str = ""
    before_seq: int | None = None


def event_list(*, filters: EventFilter, limit: int = 50) -> list[AuditEvent]:
    """Newest first, keyset-paginated on `seq` so deep pages cost the same as the first."""
    qs: QuerySet[AuditEvent] = AuditEvent.objects.all()
    if filters.tenant_id is not None:
        qs = qs.filter(tenant_id=filters.tenant_id)
    if filters.action:
        qs = qs.filter(action__startswith=filters.action)
    if filters.actor:
        qs = qs.filter(actor_label__icontains=filters.actor)
    if filters.before_seq is not None:
        qs = qs.filter(seq__lt=filters.before_seq)
    return list(qs.order_by("-seq")[:limit])


def event_get(*, seq: int) -> AuditEvent:
    return AuditEvent.objects.get(seq=seq)


def chain_head() -> AuditEvent | None:
    return AuditEvent.objects.order_by("-seq").first()


def chain_verify() -> VerifyResult:
    return verify_rows(iter_rows(AuditEvent.objects.all()))
