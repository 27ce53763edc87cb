"""In-portal notifications, and the webhook endpoints and deliveries of budget alerts."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from billing.budgets.models import BudgetAlert
from portal.crypto import EncryptedTextField
from portal.outbound import mask_url
from portal.text import validate_display_name
from tenants.models import TenantOwned


class Notification(TenantOwned):
    """An in-portal message to one person (a tenant admin), with its read state."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notifications")
    alert = models.ForeignKey(BudgetAlert, null=True, on_delete=models.CASCADE,
                              related_name="notifications")
    title = models.CharField(max_length=200)
    body = models.TextField()
    level = models.CharField(max_length=16, default="warning")
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_unread")]


class WebhookEndpoint(TenantOwned):
    name = models.CharField(max_length=100, validators=[validate_display_name])
    url = models.URLField(max_length=500)
    secret_encrypted = EncryptedTextField(
        secret_name="signing secret",
        remedy="Delete the endpoint and add it again (its receiver gets a new secret)")
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_url(self) -> str:
        """Scheme, host and port only: the rest may be the receiver's secret (Slack, Teams
        URLs). The whole URL is for the tenant's admins (tenants.permissions)."""
        return mask_url(self.url)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Retrying"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Gave up"


class WebhookDelivery(TenantOwned):
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    alert = models.ForeignKey(BudgetAlert, null=True, on_delete=models.SET_NULL,
                              related_name="deliveries")
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]


class DeprecationNotice(TenantOwned):
    """That a tenant was told of a deprecation with a sunset date (in the portal, by e-mail,
    through its webhooks). One per tenant, deprecated model or version and sunset date: the
    task that tells them can run again without telling anyone twice; a new sunset date is a
    new notice."""

    model = models.ForeignKey("models_catalog.Model", on_delete=models.CASCADE,
                              related_name="+")
    version = models.ForeignKey("models_catalog.ModelVersion", null=True, blank=True,
                                on_delete=models.CASCADE, related_name="+")
    sunset_at = models.DateTimeField()
    successor_slug = models.CharField(max_length=100, blank=True)
    api_key_ids = models.JSONField(default=list,
                                   help_text="The tenant's keys that used it in the lookback.")
    email_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "model", "sunset_at"],
                                    condition=models.Q(version__isnull=True),
                                    name="one_model_deprecation_notice"),
            models.UniqueConstraint(fields=["tenant", "version", "sunset_at"],
                                    condition=models.Q(version__isnull=False),
                                    name="one_version_deprecation_notice"),
        ]
