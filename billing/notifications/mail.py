"""E-mail that a worker sends once: the caller has claimed the row (set its `email_sent_at`)
before sending; if sending fails the claim is released, so that Celery's retry sends it."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.mail import send_mail


def send_claimed_mail(*, title: str, body: str, link_label: str, path: str,
                      recipients: list[str], release: Callable[[], object]) -> None:
    link = f"{settings.PORTAL_BASE_URL}{path}"
    try:
        send_mail(f"[{settings.SITE_NAME}] {title}", f"{body}\n\n{link_label}: {link}\n",
                  settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:
        release()
        raise
