"""Every model of the billing app, for Django (which loads an app's models from here).

Each is defined in the package of its concern: usage records and rollups in `billing.usage`,
budgets and their alerts in `billing.budgets`, notifications, webhooks and
deprecation notices in `billing.notifications`, statements in `billing.statements`.
"""

from billing.budgets.models import Budget, BudgetAlert
from billing.notifications.models import (
    DeprecationNotice,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)
from billing.statements.models import Statement, StatementLine
from billing.usage.models import UsageRecord, UsageRollup

__all__ = ["Budget", "BudgetAlert", "DeprecationNotice", "Notification", "Statement",
           "StatementLine", "UsageRecord", "UsageRollup", "WebhookDelivery", "WebhookEndpoint"]
