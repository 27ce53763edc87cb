"""Usage records, one per metered gateway request, and the rollups the dashboards read.

Rollups are kept up to date as usage records are stored: one row per granularity (hour, day),
bucket start and dimension combination (tenant, key, model, deployment, currency). "None"
dimensions are stored as 0 / "" so the unique key works as an upsert target on PostgreSQL and
SQLite alike. Latency is kept as a fixed histogram (one column per bucket) so rows merge by
addition and p50/p95 come from rollups, never raw records.
"""

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
    cached_input_tokens = models.PositiveIntegerField(
        default=0, help_text="Of the input tokens, those the model server read from its cache.")
    reasoning_tokens = models.PositiveIntegerField(
        default=0, help_text="Of the output tokens, those the model spent reasoning.")
    estimated = models.BooleanField(default=False,
                                    help_text="Token counts estimated: the upstream gave none.")
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True)
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True)
    cached_input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                                         null=True)
    currency = models.CharField(max_length=3, blank=True)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    sealed_by = models.BigIntegerField(
        null=True, db_index=True,
        help_text="Sequence number of the audit event whose hash covers this record.")

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="usage_tenant_time")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model_slug} {self.input_tokens}+{self.output_tokens}"


# Upper bounds (ms) of the latency buckets; the last bucket is open-ended.
LATENCY_BOUNDS_MS = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200)
LATENCY_COLUMNS = tuple(f"lat_{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))


class Granularity(models.TextChoices):
    HOUR = "hour", "Hourly"
    DAY = "day", "Daily"


class UsageRollup(models.Model):
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket = models.DateTimeField(help_text="Start of the hour or UTC day.")
    tenant_id = models.BigIntegerField()
    api_key_id = models.BigIntegerField(default=0)
    model_id = models.BigIntegerField(default=0)
    model_slug = models.CharField(max_length=100, blank=True)
    deployment_id = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=8, default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    lat_0 = models.BigIntegerField(default=0)
    lat_1 = models.BigIntegerField(default=0)
    lat_2 = models.BigIntegerField(default=0)
    lat_3 = models.BigIntegerField(default=0)
    lat_4 = models.BigIntegerField(default=0)
    lat_5 = models.BigIntegerField(default=0)
    lat_6 = models.BigIntegerField(default=0)
    lat_7 = models.BigIntegerField(default=0)
    lat_8 = models.BigIntegerField(default=0)
    lat_9 = models.BigIntegerField(default=0)
    lat_10 = models.BigIntegerField(default=0)
    lat_11 = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["granularity", "bucket", "tenant_id", "api_key_id", "model_id",
                    "deployment_id", "currency"], name="one_rollup_per_bucket_and_dimensions")]
        indexes = [
            models.Index(fields=["granularity", "tenant_id", "bucket"],
                         name="rollup_tenant_time"),
            models.Index(fields=["granularity", "bucket"], name="rollup_time"),
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket:%Y-%m-%d %H:%M} tenant {self.tenant_id}"
