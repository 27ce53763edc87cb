"""Budget webhooks: endpoints with an encrypted signing secret, signed deliveries retried with
exponential backoff, and a delivery log.

A receiver verifies `X-Portal-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<X-Portal-Timestamp>.<raw body>` under the endpoint's secret, and refuses timestamps older
than a few minutes (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import audit
from billing.budgets.models import BudgetAlert, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from portal import crypto, outbound, stored_secrets
from tenants.models import Tenant

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Portal-Signature"
TIMESTAMP_HEADER = "X-Portal-Timestamp"
_MAX_BACKOFF = 3600
_LEASE = timedelta(minutes=2)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def webhook_endpoint_create(*, actor, tenant: Tenant, name: str, url: str
                            ) -> tuple[WebhookEndpoint, str]:
    """Returns the endpoint and its signing secret, which is shown this once.

    The URL must be http(s) and resolve to public addresses or networks the operator allowed
    (portal.outbound: the portal must not become a way into the internal network); it is
    checked before the transaction (it resolves the host). It may embed the receiver's own
    secret (Slack, Teams), so the audit trail keeps it masked."""
    try:
        outbound.check_url(url, outbound.webhook_policy())
    except outbound.OutboundRefused as exc:
        raise ValidationError({"url": [exc.message]}) from None
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        endpoint = WebhookEndpoint(tenant=tenant, name=name, url=url,
                                   secret_encrypted=crypto.encrypt(secret),
                                   created_by=getattr(actor, "audit_label", str(actor)))
        endpoint.full_clean()
        endpoint.save()
        audit.record(action="billing.webhook_create", actor=actor, tenant=tenant,
                     target=endpoint, details={"name": name, "url": endpoint.masked_url})
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_delete(*, actor, endpoint: WebhookEndpoint) -> None:
    audit.record(action="billing.webhook_delete", actor=actor, tenant=endpoint.tenant,
                 target=endpoint, details={"name": endpoint.name, "url": endpoint.masked_url})
    endpoint.delete()


@transaction.atomic
def webhook_endpoint_ping(*, actor, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a `ping` delivery to one endpoint, to check the receiver and its signature
    verification; it shows in the delivery log like any other."""
    from billing.notifications.tasks import webhook_deliver

    delivery = WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id, endpoint=endpoint, event="ping",
        payload={"event": "ping", "tenant": endpoint.tenant.slug, "endpoint_id": endpoint.pk,
                 "sent_by": getattr(actor, "audit_label", str(actor)),
                 "created_at": timezone.now().isoformat()},
        next_attempt_at=timezone.now())
    transaction.on_commit(lambda: webhook_deliver.delay(delivery.pk))
    return delivery


def deliveries_create(*, alert: BudgetAlert | None, event: str, payload: dict,
                      tenant_id: int | None = None) -> list[WebhookDelivery]:
    """Queue one delivery per active endpoint of the tenant; the worker sends them after
    commit."""
    from billing.notifications.tasks import webhook_deliver

    tenant_id = tenant_id or alert.tenant_id
    deliveries = [WebhookDelivery.objects.create(
        tenant_id=tenant_id, endpoint=endpoint, alert=alert, event=event, payload=payload,
        next_attempt_at=timezone.now())
        for endpoint in WebhookEndpoint.objects.filter(tenant_id=tenant_id, active=True)]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: webhook_deliver.delay(pk))
    return deliveries


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
    if error:
        logger.warning("Webhook delivery %s to %s failed (attempt %d): %s", delivery.pk,
                       endpoint.masked_url, delivery.attempts, error)
    return retry_in


def deliveries_due() -> list[int]:
    """Deliveries whose retry is due (the beat sweep re-enqueues them: a lost broker message
    never loses a delivery)."""
    return list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING,
                                               next_attempt_at__lte=timezone.now())
                .values_list("pk", flat=True)[:500])


def _without_secrets(text: str, url: str) -> str:
    """An error message without the URL's path, query or credentials (the delivery log is
    shown to every member of the tenant; the URL may carry the receiver's secret)."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.path, parts.username, parts.password):
        if secret and secret != "/":
            text = text.replace(secret, "…")
    return text


def _json(payload: dict) -> bytes:
    import json

    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
