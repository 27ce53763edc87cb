"""Every periodic task of the portal, in one place (read by settings.CELERY_BEAT_SCHEDULE)."""

from celery.schedules import crontab

SCHEDULE = {
    "gateway-drain-usage": {
        "task": "gateway.tasks.drain_usage",
        "schedule": 2.0,
        "options": {"expires": 10},
    },
    "audit-verify-chain-hourly": {
        "task": "audit.tasks.verify_chain",
        "schedule": crontab(minute=7),
    },
}
