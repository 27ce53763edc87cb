"""Celery task of usage: the drain of the gateway's usage stream (every 2 s, portal.beat).

Its name is the one it had when the drain lived in the gateway app: beat, queued messages and
dashboards of task outcomes keep working across the move.
"""

from celery import shared_task
from django.conf import settings

from billing.usage.drain import drain_usage_stream


@shared_task(name="gateway.tasks.drain_usage", ignore_result=True)
def drain_usage() -> int:
    if not settings.REDIS_URL:
        return 0  # no gateway without Redis, so nothing to drain
    return drain_usage_stream()
