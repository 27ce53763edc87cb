"""Budgets, their alerts and notifications, webhook endpoints and deliveries, statements.

Imported by `billing.models` so Django finds them; kept apart from the usage models.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from portal.crypto import EncryptedTextField
from portal.outbound import mask_url
from portal.text import validate_display_name
from tenants.models import TenantOwned

DEFAULT_THRESHOLDS = [50, 80, 100]
currency_validator = RegexValidator(r"^[A-Z]{3}$",
                                    "Use a three-letter ISO 4217 code, e.g. EUR.")


class BudgetPeriod(models.TextChoices):
    MONTHLY = "monthly", "Every calendar month"
    CUSTOM = "custom", "A custom period"


class BudgetUnit(models.TextChoices):
    CURRENCY = "currency", "Amount of money"
    TOKENS = "tokens", "Tokens"


class BudgetAction(models.TextChoices):
    NOTIFY = "notify", "Notify only"
    BLOCK = "block", "Block requests"


def _default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class Budget(TenantOwned):
    """A spending or token limit for a tenant, one of its API keys, optionally one model.

    Consumption lives in Redis counters (fed by the usage drain, reconciled from the usage
    records); the gateway refuses requests of a `block` budget that reached 100 %.
    """

    name = models.CharField(max_length=100, validators=[validate_display_name])
    api_key_id = models.BigIntegerField(
        null=True, blank=True, help_text="Only this API key's usage; empty: the whole tenant.")
    model = models.ForeignKey("models_catalog.Model", null=True, blank=True,
                              on_delete=models.PROTECT, related_name="+",
                              help_text="Only this model's usage; empty: every model.")
    period = models.CharField(max_length=16, choices=BudgetPeriod.choices,
                              default=BudgetPeriod.MONTHLY)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True,
                                  help_text="Last day of a custom period (inclusive).")
    unit = models.CharField(max_length=16, choices=BudgetUnit.choices,
                            default=BudgetUnit.CURRENCY)
    amount = models.DecimalField(max_digits=16, decimal_places=2,
                                 validators=[MinValueValidator(Decimal("0.01")),
                                             MaxValueValidator(Decimal("1000000000"))])
    currency = models.CharField(max_length=3, blank=True, validators=[currency_validator])
    thresholds = models.JSONField(default=_default_thresholds)
    action = models.CharField(max_length=16, choices=BudgetAction.choices,
                              default=BudgetAction.NOTIFY)
    notify_email = models.BooleanField(default=True,
                                       help_text="E-mail the tenant's admins at each threshold.")
    from_tenant_default = models.BooleanField(
        default=False, help_text="Kept in step with the tenant's default monthly budget.")
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class BudgetAlert(TenantOwned):
    """A threshold crossed in one period: at most one row per budget, period and threshold."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateField()
    threshold = models.PositiveSmallIntegerField()
    consumed = models.DecimalField(max_digits=24, decimal_places=8)
    limit = models.DecimalField(max_digits=16, decimal_places=2)
    blocked = models.BooleanField(default=False)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["budget", "period_start", "threshold"],
                                               name="budget_alert_once_per_period")]

    def __str__(self) -> str:
        return f"{self.budget} {self.threshold}% ({self.period_start})"


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


class Statement(TenantOwned):
    """A closed month: its lines are stored and never change. Open months are computed."""

    period_start = models.DateField()
    closed_at = models.DateTimeField()
    closed_by = models.CharField(max_length=254)

    class Meta:
        ordering = ["-period_start"]
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start"],
                                               name="one_statement_per_tenant_month")]

    def __str__(self) -> str:
        return f"{self.tenant} {self.period_start:%Y-%m}"


class LineKind(models.TextChoices):
    USAGE = "usage", "Usage"
    CORRECTION = "correction", "Correction"


class StatementLine(models.Model):
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=16, choices=LineKind.choices)
    source_period = models.DateField(help_text="The month the usage was served in.")
    model_slug = models.CharField(max_length=100)
    currency = models.CharField(max_length=3, blank=True)
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    requests = models.IntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    amount = models.DecimalField(max_digits=20, decimal_places=8)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.model_slug} {self.amount} {self.currency}"
