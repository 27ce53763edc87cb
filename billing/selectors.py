from __future__ import annotations

from datetime import datetime

from audit.models import AuditEvent
from billing.models import UsageRecord
from billing.seals import SEAL_ACTION, SealProblem, verify_seals


def usage_seals_verify(*, start: datetime | None = None, end: datetime | None = None
                       ) -> tuple[int, list[SealProblem]]:
    seals = AuditEvent.objects.filter(action=SEAL_ACTION).order_by("seq")
    if start:
        seals = seals.filter(created_at__gte=start)
    if end:
        seals = seals.filter(created_at__lt=end)
    return verify_seals(seals=seals.iterator(chunk_size=500),
                        records_for=lambda seq: UsageRecord.objects.filter(sealed_by=seq))
