"""Deprecations that reach people: when a model or version is deprecated with a sunset date,
every tenant whose keys used it in the last 90 days (its usage records say so) is told — in
the portal (its admins and the owners of those keys), by e-mail (the same people, sent by the
worker) and through its webhooks (`model.deprecated`).

Run by a Celery task after the catalog commits the deprecation (`models_catalog.services.
lifecycle.on_deprecation`; registered in BillingConfig.ready). Idempotent: a tenant is told
once per deprecated model or version and sunset date (`DeprecationNotice`'s unique
constraints), so the task may run again — a retry, a second worker — without telling anyone
twice; each notice is one audit event.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from billing.budgets.selectors import api_key_model
from billing.notifications import services as notifications
from billing.notifications.mail import send_claimed_mail
from billing.notifications.models import DeprecationNotice
from billing.usage.models import UsageRecord
from deployments.selectors import deployment_ids_serving_version
from models_catalog.models import Model, ModelLifecycle, ModelVersion, VersionStatus
from tenants.models import Membership, Tenant, TenantRole

logger = logging.getLogger(__name__)

DEPRECATION_EVENT = "model.deprecated"
LOOKBACK = timedelta(days=90)


def _subject(model_id: int, version_id: int | None
             ) -> tuple[Model, ModelVersion | None, datetime | None, Model | None]:
    """The deprecated model or version, its sunset and successor; sunset None when it is no
    longer deprecated with a sunset date (reinstated meanwhile: nobody is told)."""
    if version_id is None:
        model = Model.objects.select_related("successor").get(pk=model_id)
        deprecated = model.lifecycle == ModelLifecycle.DEPRECATED
        return model, None, model.sunset_at if deprecated else None, model.successor
    version = ModelVersion.objects.select_related("model", "successor").get(pk=version_id)
    deprecated = version.status == VersionStatus.DEPRECATED
    return (version.model, version, version.sunset_at if deprecated else None,
            version.successor or version.model.successor)


def _users_by_tenant(model: Model, version: ModelVersion | None, since: datetime
                     ) -> dict[int, list[int]]:
    """tenant id → the ids of its keys that used the model (or version) since `since`."""
    records = UsageRecord.objects.filter(created_at__gte=since, model_id=model.pk)
    if version is not None:
        records = records.filter(deployment_id__in=deployment_ids_serving_version(
            version_id=version.pk))
    used: dict[int, list[int]] = {}
    for tenant_id, key_id in (records.values_list("tenant_id", "api_key_id").distinct()
                              .order_by("tenant_id", "api_key_id")):
        keys = used.setdefault(tenant_id, [])
        if key_id is not None:
            keys.append(key_id)
    return used


def _recipients(tenant_id: int, key_ids: list[int]) -> list:
    """The tenant's admins and the owners of the keys that used it (active people only)."""
    people = {m.user.pk: m.user for m in Membership.objects.filter(
        tenant_id=tenant_id, role=TenantRole.TENANT_ADMIN, user__is_active=True)
        .select_related("user")}
    for key in (api_key_model().objects.filter(tenant_id=tenant_id, pk__in=key_ids,
                                      owner__is_active=True).select_related("owner")):
        people.setdefault(key.owner.pk, key.owner)
    return sorted(people.values(), key=lambda user: user.email)


def notice_text(notice: DeprecationNotice) -> tuple[str, str]:
    subject = notice.model.slug + (f":{notice.version.version}" if notice.version_id else "")
    title = f"{subject} is deprecated: it stops serving on {notice.sunset_at:%d %b %Y}"
    keys = list(api_key_model().objects.filter(pk__in=notice.api_key_ids).order_by("name")
                .values_list("name", flat=True))
    body = (f"{subject} stops serving on {notice.sunset_at:%d %b %Y at %H:%M} UTC; requests for "
            "it are then refused. ")
    body += (f"Move to {notice.successor_slug}." if notice.successor_slug
             else "Move to another model of the catalog.")
    if keys:
        body += f" Keys of yours that used it in the last 90 days: {', '.join(keys)}."
    return title, body


def notice_payload(notice: DeprecationNotice) -> dict:
    return {"event": DEPRECATION_EVENT, "notice_id": notice.pk, "tenant": notice.tenant.slug,
            "model": notice.model.slug,
            "version": notice.version.version if notice.version_id else None,
            "sunset_at": notice.sunset_at.isoformat(),
            "successor": notice.successor_slug or None, "api_key_ids": notice.api_key_ids,
            "created_at": notice.created_at.isoformat()}


def deprecation_announced(*, model_id: int, version_id: int | None) -> None:
    """The catalog's `on_deprecation` listener (after commit): queue the task that tells."""
    from billing.notifications.tasks import deprecation_notify

    deprecation_notify.delay(model_id, version_id)


def deprecation_notices_send(*, model_id: int, version_id: int | None = None,
                             now: datetime | None = None) -> int:
    """Tell every tenant that used the deprecated model (or version) in the last 90 days and
    was not told of this sunset yet; returns how many were told now."""
    from billing.notifications.tasks import deprecation_notice_email

    model, version, sunset_at, successor = _subject(model_id, version_id)
    if sunset_at is None:
        return 0
    since = (now or timezone.now()) - LOOKBACK
    told = 0
    for tenant_id, key_ids in _users_by_tenant(model, version, since).items():
        try:
            with transaction.atomic():
                notice = DeprecationNotice.objects.create(
                    tenant_id=tenant_id, model=model, version=version, sunset_at=sunset_at,
                    successor_slug=successor.slug if successor else "", api_key_ids=key_ids)
                _announce(notice)
        except IntegrityError:
            continue  # told already (this sunset), by an earlier or a concurrent run
        transaction.on_commit(lambda pk=notice.pk: deprecation_notice_email.delay(pk))
        told += 1
    logger.info("Deprecation of %s%s: %d tenants told.", model.slug,
                f":{version.version}" if version else "", told)
    return told


def _announce(notice: DeprecationNotice) -> None:
    """In-portal notifications, webhook deliveries and the audit event (caller's
    transaction); the e-mail goes after commit."""
    title, body = notice_text(notice)
    notifications.notifications_create(
        tenant_id=notice.tenant_id, users=_recipients(notice.tenant_id, notice.api_key_ids),
        alert=None, title=title, body=body, level="warning")
    notifications.deliveries_create(alert=None, event=DEPRECATION_EVENT,
                                    payload=notice_payload(notice), tenant_id=notice.tenant_id)
    audit.record(action="billing.deprecation_notice", actor="system:deprecations",
                 tenant=Tenant.objects.get(pk=notice.tenant_id),
                 target=notice.version or notice.model,
                 details={"model": notice.model.slug,
                          "version": notice.version.version if notice.version_id else None,
                          "sunset_at": notice.sunset_at, "successor": notice.successor_slug,
                          "api_key_ids": notice.api_key_ids})


def deprecation_email_send(*, notice_id: int) -> bool:
    """Send the notice's e-mail once (claimed by a compare-and-set)."""

    claimed = DeprecationNotice.objects.filter(pk=notice_id, email_sent_at__isnull=True).update(
        email_sent_at=timezone.now())
    if not claimed:
        return False
    notice = DeprecationNotice.objects.select_related("tenant", "model", "version").get(
        pk=notice_id)
    recipients = [user.email for user in _recipients(notice.tenant_id, notice.api_key_ids)]
    if not recipients:
        return False
    title, body = notice_text(notice)
    send_claimed_mail(
        title=title, body=body, link_label="Notifications",
        path=f"/t/{notice.tenant.slug}/notifications/", recipients=recipients,
        release=lambda: DeprecationNotice.objects.filter(pk=notice_id).update(
            email_sent_at=None))
    return True
