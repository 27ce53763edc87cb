from __future__ import annotations

from django.db import models

from tenants.models import TenantOwned


class UsageRecord(TenantOwned):
    """One metered gateway request. Never holds prompt or answer content.

    Written in batches from the gateway's usage stream; `request_id` makes redelivery
    harmless. The price in force when the request was served is copied in, so a later price
    change never rewrites history.
    """

    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_index=True)
    api_key_id = models.BigIntegerField(null=True, db_index=True)
    model_id = models.BigIntegerField(null=True)
    model_slug = models.CharField(max_length=100)
    deployment_id = models.BigIntegerField(null=True)
    endpoint = models.CharField(max_length=32)
    status_code = models.PositiveSmallIntegerField()
    streamed = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(default=False,
                                    help_text="Token counts estimated: the upstream gave none.")
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True)
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    currency = models.CharField(max_length=3, blank=True)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    sealed_by = models.BigIntegerField(
        null=True, db_index=True,
        help_text="Sequence number of the audit event whose hash covers this record.")

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="usage_tenant_time")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model_slug} {self.input_tokens}+{self.output_tokens}"


# Budgets, alerts, webhooks and statements live in their own module.
from billing.budget_models import (  # noqa: E402, F401
    Budget,
    BudgetAlert,
    Notification,
    Statement,
    StatementLine,
    WebhookDelivery,
    WebhookEndpoint,
)
