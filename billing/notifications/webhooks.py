"""Webhook deliveries: each attempt signed and sent to the address the outbound policy vetted,
retried with exponential backoff, and its outcome kept in the delivery log.

A receiver verifies `X-Portal-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<X-Portal-Timestamp>.<raw body>` under the endpoint's secret, and refuses timestamps older
than a few minutes (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from billing.notifications.models import DeliveryStatus, WebhookDelivery
from portal import outbound, stored_secrets

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Portal-Signature"
TIMESTAMP_HEADER = "X-Portal-Timestamp"
_MAX_BACKOFF = 3600
_LEASE = timedelta(minutes=2)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def backoff_seconds(attempts: int) -> int:
    """Delay after the `attempts`-th failure: base, 2×base, 4×base … at most an hour."""
    return min(_MAX_BACKOFF, settings.BUDGET_WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1))


def delivery_attempt(*, delivery_id: int) -> int | None:
    """Try one due delivery. Returns seconds until the next attempt, or None when there is
    nothing more to do (delivered, given up, not due, or another worker holds it)."""
    now = timezone.now()
    # Claim with a compare-and-set lease, so two workers never send the same attempt and the
    # HTTP call happens outside any transaction.
    claimed = WebhookDelivery.objects.filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True),
        pk=delivery_id, status=DeliveryStatus.PENDING).update(next_attempt_at=now + _LEASE)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    status_code, error = _send(delivery)
    retry_in = _record_attempt(delivery, status_code, error)
    if error:
        logger.warning("Webhook delivery %s to %s failed (attempt %d): %s", delivery.pk,
                       delivery.endpoint.masked_url, delivery.attempts, error)
    return retry_in


def _send(delivery: WebhookDelivery) -> tuple[int | None, str]:
    """POST the signed payload once: (HTTP status or None, error message or "")."""
    endpoint = delivery.endpoint
    body = _json(delivery.payload)
    timestamp = int(time.time())
    status_code, error = None, ""
    try:
        secret = stored_secrets.reveal(endpoint, "secret_encrypted")
        # Through the policy again: DNS may have changed since the endpoint was saved, and
        # the connection goes to the address that was vetted now.
        with outbound.session(outbound.webhook_policy()) as http:
            response = http.post(endpoint.url, data=body,
                                 timeout=settings.BUDGET_WEBHOOK_TIMEOUT,
                                 allow_redirects=False, headers={
                                     "Content-Type": "application/json",
                                     "User-Agent": "sovereign-model-portal-webhooks",
                                     "X-Portal-Event": delivery.event,
                                     "X-Portal-Delivery": str(delivery.pk),
                                     TIMESTAMP_HEADER: str(timestamp),
                                     SIGNATURE_HEADER: sign(secret, timestamp, body)})
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except outbound.OutboundRefused as exc:
        error = exc.message
    except stored_secrets.SecretUnreadable as exc:
        error = exc.message[:500]
    except requests.RequestException as exc:
        error = _without_secrets(f"{exc.__class__.__name__}: {exc}", endpoint.url)[:500]
    return status_code, error


def _record_attempt(delivery: WebhookDelivery, status_code: int | None, error: str
                    ) -> int | None:
    """Store the attempt's outcome: delivered, given up, or retried in the returned seconds."""
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    retry_in = None
    if not error:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = timezone.now()
        delivery.next_attempt_at = None
    elif delivery.attempts >= settings.BUDGET_WEBHOOK_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    else:
        retry_in = backoff_seconds(delivery.attempts)
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
    delivery.save(update_fields=["attempts", "last_status_code", "last_error", "status",
                                 "delivered_at", "next_attempt_at"])
    return retry_in


def _without_secrets(text: str, url: str) -> str:
    """An error message without the URL's path, query or credentials (the delivery log is
    shown to every member of the tenant; the URL may carry the receiver's secret)."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.path, parts.username, parts.password):
        if secret and secret != "/":
            text = text.replace(secret, "…")
    return text


def _json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
