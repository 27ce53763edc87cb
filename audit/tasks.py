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
