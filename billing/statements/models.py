"""Closed monthly statements and their lines (open months are computed, never stored)."""

from __future__ import annotations

from django.db import models

from tenants.models import TenantOwned


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
    """A statement line's origin: usage served in the statement's month, or a correction
    to an earlier closed month, for its usage recorded after that month was closed."""

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
    cached_input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                                         null=True)
    requests = models.IntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    amount = models.DecimalField(max_digits=20, decimal_places=8)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.model_slug} {self.amount} {self.currency}"
