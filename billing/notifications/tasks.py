"""Celery tasks of notifications: a webhook delivery attempt, the sweep that re-sends due
ones, and telling the tenants that used a deprecated model (and its e-mails).

Task names keep the names they had before billing was split into packages (see
`billing.budgets.tasks`).
"""

from celery import shared_task
from django.db import OperationalError

from billing.notifications import selectors, webhooks


@shared_task(name="billing.budget_tasks.webhook_deliver", ignore_result=True)
def webhook_deliver(delivery_id: int) -> None:
    retry_in = webhooks.delivery_attempt(delivery_id=delivery_id)
    if retry_in is not None:
        webhook_deliver.apply_async((delivery_id,), countdown=retry_in)


@shared_task(name="billing.budget_tasks.webhook_deliveries_due", ignore_result=True)
def webhook_deliveries_due() -> int:
    due = selectors.deliveries_due()
    for delivery_id in due:
        webhook_deliver.delay(delivery_id)
    return len(due)


@shared_task(name="billing.deprecation_notify", ignore_result=True,
             autoretry_for=(OperationalError,), retry_backoff=30, max_retries=8)
def deprecation_notify(model_id: int, version_id: int | None = None) -> int:
    """Tell the tenants that used a deprecated model or version (idempotent: see
    `billing.notifications.deprecations`)."""
    from billing.notifications.deprecations import deprecation_notices_send

    return deprecation_notices_send(model_id=model_id, version_id=version_id)


@shared_task(name="billing.deprecation_notice_email", ignore_result=True,
             autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def deprecation_notice_email(notice_id: int) -> bool:
    from billing.notifications.deprecations import deprecation_email_send

    return deprecation_email_send(notice_id=notice_id)
