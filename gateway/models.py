from __future__ import annotations

from django.db import models
from django.utils import timezone

from models_catalog.models import Model
from portal.text import validate_display_name
from tenants.models import TenantOwned, User

# The name of each person's playground key (`services.playground_token`).
PLAYGROUND_KEY_NAME = "Playground"


class ApiKey(TenantOwned):
    """A tenant's credential for /v1/*. Only SHA-256 hashes of the secret are stored.

    The token reads `smp_<prefix>_<secret>`: the prefix is public (shown in lists, used to find
    the key), the secret is 256 random bits. Rotation keeps the prefix and moves the old hash to
    `previous_secret_hash`, which keeps working until `previous_valid_until`.
    """

    name = models.CharField(max_length=100, validators=[validate_display_name])
    # A key is owned by the person who created it, or by the service account (an OIDC client
    # of a provider's `service_accounts`, as `<provider id>:<client id>`) whose token created
    # it through the API; neither for keys made by an operator's command.
    owner = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="api_keys")
    service_account = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    previous_secret_hash = models.CharField(max_length=64, blank=True)
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    allowed_models = models.ManyToManyField(Model, blank=True, related_name="+",
                                            help_text="Empty: every model the tenant may use.")
    rpm_limit = models.PositiveIntegerField("requests per minute", null=True, blank=True)
    tpm_limit = models.PositiveIntegerField("tokens per minute", null=True, blank=True)
    allowed_networks = models.JSONField(default=list, blank=True,
                                        help_text="Client networks (CIDR); empty: any.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    audit_actor_type = "api_key"

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(owner__isnull=True) | models.Q(service_account=""),
                name="apikey_one_owner",
                violation_error_message="A key is owned by a person or a service account, "
                                        "not both."),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix})"

    @property
    def display_prefix(self) -> str:
        """How pages, CSVs and the audit show the key: its public prefix, never a character of
        the secret that follows it."""
        return f"smp_{self.prefix}_…"

    @property
    def owner_label(self) -> str:
        """Who owns the key, for pages and reports."""
        if self.owner_id:
            return self.owner.email
        if self.service_account:
            provider, _, client = self.service_account.partition(":")
            return f"service account {client} ({provider})"
        return "automation"

    @property
    def audit_label(self) -> str:
        return f"api key {self.display_prefix} ({self.name})"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"
