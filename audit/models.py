from __future__ import annotations

from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    """One link of the append-only hash chain.

    `hash` is SHA-256 over the canonical JSON of every other column plus `prev_hash`
    (see `audit.chain`). The database refuses UPDATE, DELETE and TRUNCATE on this table
    (migration 0002). The tenant is kept as plain id and slug: audit is a leaf app that
    never imports another app's models, and its rows outlive whatever they describe.
    """

    seq = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    tenant_slug = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        # Every filter of the explorer has an index that ends in `seq`, so a keyset page
        # `WHERE <filter> = %s AND seq < %s ORDER BY seq DESC LIMIT 51` is one backward index
        # range scan that stops after 51 entries, however deep the page. Time ranges become
        # seq bounds first (see `audit.selectors.seq_bounds`). The details search uses a
        # trigram GIN index on PostgreSQL (migration 0003), which needs an expression index.
        indexes = [
            models.Index(fields=["tenant_id", "-seq"], name="audit_tenant_seq"),
            models.Index(fields=["action", "-seq"], name="audit_action_seq"),
            models.Index(fields=["actor_label", "-seq"], name="audit_actor_seq"),
            models.Index(fields=["target_type", "target_id", "-seq"], name="audit_target_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"


class AuditCheckpoint(models.Model):
    """A signed statement "the chain's head at `last_seq` was `head_hash`".

    Signed with the platform key (outside the database), over `audit.chain.checkpoint_payload`.
    Verification compares the chain at `last_seq` against `head_hash`, so rewriting history —
    even with every hash recomputed — is caught.
    """

    last_seq = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["-last_seq"]

    def __str__(self) -> str:
        return f"checkpoint #{self.last_seq}"

    @property
    def timestamp_or_none(self) -> CheckpointTimestamp | None:
        """Its timestamp row; None when it was made while timestamps were off."""
        try:
            return self.timestamp
        except CheckpointTimestamp.DoesNotExist:
            return None


class CheckpointTimestamp(models.Model):
    """The RFC 3161 timestamp of one checkpoint, from the operator's time-stamping authority.

    Made together with the checkpoint while timestamps are on (TSA_URL), still without
    `response`: the checkpoint is "not yet timestamped" until the TSA has answered with a
    token that verifies (`audit.services.checkpoint_timestamp`, retried with backoff), so a
    TSA that is down never holds a checkpoint up. `response` is the TSA's answer as it
    arrived (DER TimeStampResp); `time` and `tsa` are read from it once verified, for
    display. A stored timestamp is final: the database refuses to change or remove it
    (migration 0006).
    """

    checkpoint = models.OneToOneField(AuditCheckpoint, on_delete=models.PROTECT,
                                      related_name="timestamp")
    response = models.BinaryField(null=True, blank=True)
    time = models.DateTimeField(null=True, blank=True)
    tsa = models.CharField(max_length=254, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(response__isnull=True),
                         name="audit_timestamp_due"),
        ]

    def __str__(self) -> str:
        return f"timestamp of checkpoint #{self.checkpoint_id}"

    @property
    def is_stamped(self) -> bool:
        return self.response is not None


class ReportStatus(models.TextChoices):
    """Where a report's generation stands: the task claims a pending one (running) and ends
    it ready or failed; beat fails one whose worker died; a retry makes a failed one pending."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    FAILED = "failed", "Failed"
    READY = "ready", "Ready"


class ReportOrigin(models.TextChoices):
    """Who asked for a report: beat's schedule (one per period and scope, by constraint),
    or a person, command or script on demand."""

    SCHEDULED = "scheduled", "Scheduled"
    ON_DEMAND = "on_demand", "On demand"


class ComplianceReport(models.Model):
    """A compliance report for one period, of the platform (no tenant) or of one tenant.

    Its files (PDF and signed evidence bundle) live under COMPLIANCE_REPORTS_DIR and are
    offered only once `status` is ready: they are written under temporary names and moved
    into place when complete. The tenant is kept as id and slug, like audit events.
    """

    kind = models.CharField(max_length=16)
    period_label = models.CharField(max_length=32)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(help_text="Exclusive.")
    tenant_id = models.BigIntegerField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=64, blank=True)
    origin = models.CharField(max_length=16, choices=ReportOrigin.choices)
    requested_by = models.CharField(max_length=254, blank=True)
    status = models.CharField(max_length=16, choices=ReportStatus.choices,
                              default=ReportStatus.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pdf_name = models.CharField(max_length=200, blank=True)
    pdf_size = models.BigIntegerField(null=True, blank=True)
    bundle_name = models.CharField(max_length=200, blank=True)
    bundle_size = models.BigIntegerField(null=True, blank=True)
    bundle_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Beat may fire twice (or be restarted); a scheduled report exists once.
            models.UniqueConstraint(
                fields=["period_label", "tenant_slug"],
                condition=models.Q(origin="scheduled"),
                name="scheduled_report_once_per_period_and_scope",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.period_label} · {self.scope_label}"

    @property
    def scope_label(self) -> str:
        return self.tenant_slug or "platform"

    @property
    def is_ready(self) -> bool:
        return self.status == ReportStatus.READY
