import logging

from celery import shared_task

from audit.services import chain_verification_record

logger = logging.getLogger(__name__)


@shared_task
def verify_chain() -> dict:
    result = chain_verification_record()
    return {"ok": result.ok, "count": result.count, "error": result.error}
