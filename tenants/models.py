from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.http import Http404

from portal.text import validate_display_name


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("A user needs an e-mail address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password) if password else user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person. Identified by e-mail locally; OIDC identities link to it by (issuer, sub)."""

    username = None
    email = models.EmailField("e-mail address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []
    objects = UserManager()

    audit_actor_type = "user"

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        """The e-mail address: unique, and what the person signs in with (`display_name` is
        the friendlier name for pages)."""
        return self.email

    @property
    def audit_label(self) -> str:
        """How the audit trail names a person: the e-mail address, which stays the same across
        sign-in methods and reads plainly in an exported trail."""
        return self.email

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.email


class PlatformRole(models.TextChoices):
    """The operator's staff roles (see `tenants.permissions`): MSP admins run the platform;
    compliance officers see the audit trail, the catalog and compliance reports."""

    MSP_ADMIN = "msp_admin", "MSP admin"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"


class PlatformRoleGrant(models.Model):
    """A platform-wide role for the operator's staff. `source` says where it came from."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="platform_roles")
    role = models.CharField(max_length=32, choices=PlatformRole.choices)
    source = models.CharField(max_length=100, default="local")
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "role"], name="platform_role_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.get_role_display()}"


slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$",
    "Use 1–40 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)
jurisdiction_validator = RegexValidator(
    r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$",
    "Use an ISO 3166 code such as DE, FR or EU (optionally with a region, e.g. DE-BY).",
)


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Tenant(models.Model):
    """A customer organisation of the MSP. Never deleted: suspended instead, for the record."""

    slug = models.SlugField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, validators=[validate_display_name])
    status = models.CharField(
        max_length=16, choices=TenantStatus.choices, default=TenantStatus.ACTIVE
    )
    contact_email = models.EmailField("contact e-mail")
    jurisdiction = models.CharField(
        max_length=8, validators=[jurisdiction_validator],
        help_text="Where the tenant's data must stay, e.g. DE or EU.",
    )
    max_gpus = models.PositiveIntegerField("GPU quota", default=0)
    max_api_keys = models.PositiveIntegerField("API key quota", default=20)
    rate_limit_rpm = models.PositiveIntegerField(
        "requests per minute", null=True, blank=True,
        help_text="For all the tenant's API keys together; empty for no limit.")
    rate_limit_tpm = models.PositiveIntegerField(
        "tokens per minute", null=True, blank=True,
        help_text="For all the tenant's API keys together; empty for no limit.")
    default_monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Budget applied to the tenant each month unless it sets its own.",
    )
    budget_currency = models.CharField(
        max_length=3, default="EUR",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. EUR.")],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> TenantQuerySet:
        return self.filter(tenant=tenant)

    def get_or_404(self, pk: int, *, missing: str):
        """The row `pk` of this (tenant-filtered) queryset, or a 404 saying `missing`: another
        tenant's row is missing exactly like one that does not exist."""
        row = self.filter(pk=pk).first()
        if row is None:
            raise Http404(missing)
        return row


class TenantOwned(models.Model):
    """Base of every tenant-owned model: a non-null tenant and `objects.for_tenant()`."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="%(class)ss")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class TenantRole(models.TextChoices):
    TENANT_ADMIN = "tenant_admin", "Tenant admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"


class Membership(TenantOwned):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=TenantRole.choices)
    source = models.CharField(max_length=100, default="local")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_tenant"),
        ]
        ordering = ["user__email"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} as {self.get_role_display()}"


class Invitation(TenantOwned):
    """An e-mailed invitation to join a tenant. Only the SHA-256 of its token is stored."""

    email = models.EmailField()
    role = models.CharField(max_length=16, choices=TenantRole.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                "tenant", Lower("email"),
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_open_invitation_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.tenant}"

    @property
    def is_open(self) -> bool:
        from django.utils import timezone

        return (self.accepted_at is None and self.revoked_at is None
                and self.expires_at > timezone.now())


class OidcLogin(models.Model):
    """The facts of a person's latest sign-in through one identity provider, kept for access
    reviews ("which level of assurance did each admin last sign in with?") and the account
    page ("which claim gave me this role?")."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="oidc_logins")
    provider_id = models.CharField(max_length=40)
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    acr = models.CharField(max_length=200, blank=True)
    amr = models.JSONField(default=list, blank=True)
    mfa = models.BooleanField(
        default=False, help_text="The provider reported a multi-factor method (amr)."
    )
    access = models.JSONField(
        default=dict, blank=True,
        help_text="Tenants and roles granted at this sign-in, each with the claim that gave it, "
                  "and those withheld for a too-low level of assurance.",
    )
    logged_in_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "provider_id"],
                                    name="one_latest_oidc_login_per_provider"),
        ]
        ordering = ["-logged_in_at"]

    def __str__(self) -> str:
        return f"{self.user} via {self.provider_id} ({self.acr or 'no acr'})"
