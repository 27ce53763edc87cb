from celery import shared_task
from django.conf import settings

from gateway.drain import drain_usage_stream


@shared_task(ignore_result=True)
def drain_usage() -> int:
    if not settings.REDIS_URL:
        return 0  # no gateway without Redis, so nothing to drain
    return drain_usage_stream()
