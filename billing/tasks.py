"""Every Celery task of billing. Celery's autodiscovery imports `billing.tasks`; the tasks
themselves live in the package of their concern."""

from billing.budgets.tasks import budget_alert_email, budgets_reconcile
from billing.notifications.tasks import (
    deprecation_notice_email,
    deprecation_notify,
    webhook_deliver,
    webhook_deliveries_due,
)
from billing.usage.tasks import drain_usage

__all__ = ["budget_alert_email", "budgets_reconcile", "deprecation_notice_email",
           "deprecation_notify", "drain_usage", "webhook_deliver", "webhook_deliveries_due"]
