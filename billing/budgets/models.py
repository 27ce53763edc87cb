"""Budgets and the alerts of the thresholds they cross."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from portal.text import validate_display_name
from tenants.models import TenantOwned

DEFAULT_THRESHOLDS = [50, 80, 100]
currency_validator = RegexValidator(r"^[A-Z]{3}$",
                                    "Use a three-letter ISO 4217 code, e.g. EUR.")


class BudgetPeriod(models.TextChoices):
    """The span a budget's consumption is counted over: each calendar month (UTC), or
    the days from `period_start` to `period_end` inclusive."""

    MONTHLY = "monthly", "Every calendar month"
    CUSTOM = "custom", "A custom period"


class BudgetUnit(models.TextChoices):
    """What a budget counts: the cost of usage in the budget's currency, or input and
    output tokens whatever they cost."""

    CURRENCY = "currency", "Amount of money"
    TOKENS = "tokens", "Tokens"


class BudgetAction(models.TextChoices):
    """What happens when consumption reaches 100 %: alerts only, or the gateway also
    refuses the requests the budget covers for as long as it stays used up."""

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
