import logging

from celery import shared_task

from audit import services

logger = logging.getLogger(__name__)


@shared_task
def verify_chain() -> dict:
    result = services.chain_verification_record()
    return {"ok": result.ok, "count": result.count, "error": result.error}


@shared_task
def create_checkpoint() -> int | None:
    checkpoint = services.checkpoint_create()
    return checkpoint.last_seq if checkpoint else None


@shared_task
def timestamp_checkpoint(checkpoint_id: int) -> bool:
    stamp = services.checkpoint_timestamp(checkpoint_id=checkpoint_id)
    return bool(stamp and stamp.is_stamped)


@shared_task
def timestamp_pending_checkpoints() -> list[int]:
    return services.checkpoint_timestamps_retry()


@shared_task
def generate_report(report_id: int) -> str | None:
    report = services.report_generate(report_id=report_id)
    return report.status if report else None


@shared_task
def schedule_reports() -> list[int]:
    return [report.pk for report in services.reports_schedule_due()]


@shared_task
def purge_expired() -> int | None:
    purged = services.audit_purge()
    return purged.details["through_seq"] if purged else None


@shared_task
def reclaim_stale_reports() -> dict[str, list[int]]:
    return services.reports_reclaim_stale()
