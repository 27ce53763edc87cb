"""Celery tasks of budgets, alerts and webhooks (imported by BillingConfig.ready)."""

from celery import shared_task
from django.conf import settings

from billing import budgets, webhooks


@shared_task(ignore_result=True)
def budgets_reconcile() -> int:
    if not settings.REDIS_URL:
        return 0  # no gateway and no counters without Redis
    return budgets.budgets_reconcile()


@shared_task(ignore_result=True, autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def budget_alert_email(alert_id: int) -> bool:
    return budgets.alert_email_send(alert_id=alert_id)


@shared_task(ignore_result=True)
def webhook_deliver(delivery_id: int) -> None:
    retry_in = webhooks.delivery_attempt(delivery_id=delivery_id)
    if retry_in is not None:
        webhook_deliver.apply_async((delivery_id,), countdown=retry_in)


@shared_task(ignore_result=True)
def webhook_deliveries_due() -> int:
    due = webhooks.deliveries_due()
    for delivery_id in due:
        webhook_deliver.delay(delivery_id)
    return len(due)

