"""Celery tasks of budgets: the counters' reconcile and the alert e-mail.

Task names are what beat, the web process and the workers send one another, so they keep the
names they had before billing was split into packages: a message queued by an older process
during an upgrade still finds its task.
"""

from celery import shared_task
from django.conf import settings

from billing.budgets import alerts, services


@shared_task(name="billing.budget_tasks.budgets_reconcile", ignore_result=True)
def budgets_reconcile() -> int:
    if not settings.REDIS_URL:
        return 0  # no gateway and no counters without Redis
    return services.budgets_reconcile()


@shared_task(name="billing.budget_tasks.budget_alert_email", ignore_result=True,
             autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def budget_alert_email(alert_id: int) -> bool:
    return alerts.alert_email_send(alert_id=alert_id)
