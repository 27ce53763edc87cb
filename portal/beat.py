"""Every periodic task of the portal, in one place (settings.CELERY_BEAT_SCHEDULE).

Task names stay when code moves (messages queued during an upgrade must still find their
task): billing's tasks keep the names they had before billing became packages —
`gateway.tasks.drain_usage` is in `billing/usage/tasks.py`, `billing.budget_tasks.*` in
`billing/budgets/tasks.py` and `billing/notifications/tasks.py`.
"""

from datetime import timedelta

from celery.schedules import crontab


def _every(task: str, schedule, expires: float | None = None) -> dict:
    """One entry; `expires` (seconds) drops a run that waited longer than its own interval,
    so a stalled worker does not find a backlog of the same task when it comes back."""
    entry = {"task": task, "schedule": schedule}
    if expires is not None:
        entry["options"] = {"expires": expires}
    return entry


def build_schedule(*, checkpoint_interval_minutes: int) -> dict:
    minutes = timedelta(minutes=1)
    return {
        "gateway-drain-usage": _every("gateway.tasks.drain_usage", 2.0, 10),
        "models-recover-stale-work": _every("models_catalog.tasks.recover_stale_work",
                                            5 * minutes, 240),
        "billing-budgets-reconcile": _every("billing.budget_tasks.budgets_reconcile", 60.0, 50),
        "billing-webhook-deliveries-due": _every("billing.budget_tasks.webhook_deliveries_due",
                                                 60.0, 50),
        "audit-verify-chain-hourly": _every("audit.tasks.verify_chain", crontab(minute=7)),
        "compliance-reports-daily": _every("audit.tasks.schedule_reports",
                                           crontab(hour=0, minute=20)),
        "compliance-reports-reclaim": _every("audit.tasks.reclaim_stale_reports", 5 * minutes),
        "audit-retention-purge": _every("audit.tasks.purge_expired", crontab(hour=3, minute=40)),
        "deployments-reconcile": _every("deployments.tasks.reconcile_deployments", 2 * minutes,
                                        110),
        "deployments-fail-stale": _every("deployments.tasks.fail_stale_deployments", minutes, 55),
        "audit-timestamp-pending-checkpoints": _every(
            "audit.tasks.timestamp_pending_checkpoints", 60.0, 50),
        "audit-checkpoint": _every("audit.tasks.create_checkpoint",
                                   checkpoint_interval_minutes * minutes),
    }
