"""Every periodic task of the portal, in one place (settings.CELERY_BEAT_SCHEDULE).

Task names stay when code moves (messages queued during an upgrade must still find their
task): billing's tasks keep the names they had before billing became packages —
`gateway.tasks.drain_usage` is in `billing/usage/tasks.py`, `billing.budget_tasks.*` in
`billing/budgets/tasks.py` and `billing/notifications/tasks.py`.
"""

from datetime import timedelta

from celery.schedules import crontab


def build_schedule(*, checkpoint_interval_minutes: int) -> dict:
    return {
        "gateway-drain-usage": {
            "task": "gateway.tasks.drain_usage",
            "schedule": 2.0,
            "options": {"expires": 10},
        },
        "models-recover-stale-work": {
            "task": "models_catalog.tasks.recover_stale_work",
            "schedule": timedelta(minutes=5),
            "options": {"expires": 240},
        },
        "billing-budgets-reconcile": {
            "task": "billing.budget_tasks.budgets_reconcile",
            "schedule": 60.0,
            "options": {"expires": 50},
        },
        "billing-webhook-deliveries-due": {
            "task": "billing.budget_tasks.webhook_deliveries_due",
            "schedule": 60.0,
            "options": {"expires": 50},
        },
        "audit-verify-chain-hourly": {
            "task": "audit.tasks.verify_chain",
            "schedule": crontab(minute=7),
        },
        "compliance-reports-daily": {
            "task": "audit.tasks.schedule_reports",
            "schedule": crontab(hour=0, minute=20),
        },
        "compliance-reports-reclaim": {
            "task": "audit.tasks.reclaim_stale_reports",
            "schedule": timedelta(minutes=5),
        },
        "audit-retention-purge": {
            "task": "audit.tasks.purge_expired",
            "schedule": crontab(hour=3, minute=40),
        },
        "deployments-reconcile": {
            "task": "deployments.tasks.reconcile_deployments",
            "schedule": timedelta(minutes=2),
            "options": {"expires": 110},
        },
        "deployments-fail-stale": {
            "task": "deployments.tasks.fail_stale_deployments",
            "schedule": timedelta(minutes=1),
            "options": {"expires": 55},
        },
        "audit-timestamp-pending-checkpoints": {
            "task": "audit.tasks.timestamp_pending_checkpoints",
            "schedule": 60.0,
            "options": {"expires": 50},
        },
        "audit-checkpoint": {
            "task": "audit.tasks.create_checkpoint",
            "schedule": timedelta(minutes=checkpoint_interval_minutes),
        },
    }
