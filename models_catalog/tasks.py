"""Thin Celery tasks of the supply-chain gate: ids in, one service call, done.

Each service claims its work with a compare-and-set, so a redelivered or duplicated task is a
no-op; `recover_stale_work` (beat) takes over work whose worker died.
"""

from celery import shared_task

from models_catalog import services


@shared_task(acks_late=True)
def push_upload(version_id: int) -> str | None:
    version = services.version_push_upload(version_id=version_id)
    return version.status if version else None


@shared_task(acks_late=True)
def scan_version(version_id: int) -> str | None:
    version = services.version_scan(version_id=version_id)
    return version.status if version else None


@shared_task
def recover_stale_work() -> dict:
    return services.versions_recover_stale()
