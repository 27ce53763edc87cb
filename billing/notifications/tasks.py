"""Celery tasks of webhooks: one delivery attempt, and the sweep that re-sends due ones.

Task names keep the names they had before billing was split into packages (see
`billing.budgets.tasks`).
"""

from celery import shared_task

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
