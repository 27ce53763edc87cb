"""Every write to tenants, memberships, invitations and platform roles. Each is atomic and
audited in the same transaction."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit
from portal.api import ApplicationError, full_clean_or_refuse, refusal
from portal.gateway_config import bump_gateway_config
from tenants.models import (
    Invitation,
    Membership,
    PlatformRole,
    PlatformRoleGrant,
    Tenant,
    TenantRole,
    TenantStatus,
    User,
)

TENANT_EDITABLE_FIELDS = ("name", "contact_email", "jurisdiction")
TENANT_QUOTA_FIELDS = (
    "max_gpus", "max_api_keys", "rate_limit_rpm", "rate_limit_tpm", "default_monthly_budget",
    "budget_currency",
)


def _changes(instance, values: dict) -> dict[str, dict]:
    changes = {}
    for field, new in values.items():
        old = getattr(instance, field)
        if old != new:
            changes[field] = {"from": old, "to": new}
            setattr(instance, field, new)
    return changes


@transaction.atomic
def tenant_create(
    *,
    actor: User | str,
    slug: str,
    name: str,
    contact_email: str,
    jurisdiction: str,
    max_gpus: int = 0,
    max_api_keys: int = 20,
    rate_limit_rpm: int | None = None,
    rate_limit_tpm: int | None = None,
    default_monthly_budget: Decimal | None = None,
    budget_currency: str = "EUR",
) -> Tenant:
    tenant = Tenant(
        slug=slug, name=name, contact_email=contact_email, jurisdiction=jurisdiction,
        max_gpus=max_gpus, max_api_keys=max_api_keys, rate_limit_rpm=rate_limit_rpm,
        rate_limit_tpm=rate_limit_tpm, default_monthly_budget=default_monthly_budget,
        budget_currency=budget_currency,
    )
    full_clean_or_refuse(tenant)
    tenant.save()
    audit.record(
        action="tenant.created", actor=actor, tenant=tenant, target=tenant,
        details={field: getattr(tenant, field) for field in
                 ("slug", "name", "contact_email", "jurisdiction", *TENANT_QUOTA_FIELDS)},
    )
    return tenant


@transaction.atomic
def tenant_update(*, actor: User | str, tenant: Tenant, **values) -> Tenant:
    """Change the tenant's profile fields and/or quotas; each kind is its own audit event."""
    unknown = set(values) - set(TENANT_EDITABLE_FIELDS) - set(TENANT_QUOTA_FIELDS)
    if unknown:
        raise ApplicationError(f"These fields can't be changed here: {', '.join(sorted(unknown))}.")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    profile = _changes(tenant, {k: v for k, v in values.items() if k in TENANT_EDITABLE_FIELDS})
    quotas = _changes(tenant, {k: v for k, v in values.items() if k in TENANT_QUOTA_FIELDS})
    if not profile and not quotas:
        return tenant
    full_clean_or_refuse(tenant)
    tenant.save()
    if profile:
        audit.record(action="tenant.updated", actor=actor, tenant=tenant, target=tenant,
                     details={"changes": profile})
    if quotas:
        audit.record(action="tenant.quotas_changed", actor=actor, tenant=tenant, target=tenant,
                     details={"changes": quotas})
    if quotas:
        bump_gateway_config()
    return tenant


@transaction.atomic
def tenant_set_status(
    *, actor: User | str, tenant: Tenant, status: str, reason: str = ""
) -> Tenant:
    if status not in TenantStatus.values:
        raise ApplicationError(f"Unknown tenant status {status!r}.")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.status == status:
        label = TenantStatus(status).label.lower()
        raise ApplicationError(f"{tenant.name} is already {label}.")
    tenant.status = status
    tenant.save(update_fields=["status", "updated_at"])
    action = "tenant.suspended" if status == TenantStatus.SUSPENDED else "tenant.reactivated"
    audit.record(action=action, actor=actor, tenant=tenant, target=tenant,
                 details={"reason": reason} if reason else {})
    bump_gateway_config()
    return tenant


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *, actor: User | str, tenant: Tenant, email: str, role: str
) -> tuple[Invitation, str]:
    """Invite `email` into `tenant`. Returns the invitation and its one-time token.

    A person already in the tenant is refused; a still-open invitation for the same address
    is replaced, so the newest link is the only one that works.
    """
    email = email.strip().lower()
    if role not in TenantRole.values:
        raise refusal({"role": f"Choose one of: {', '.join(TenantRole.values)}."})
    if Membership.objects.for_tenant(tenant).filter(user__email__iexact=email).exists():
        raise refusal({"email": f"{email} is already a member of {tenant.name}."})
    now = timezone.now()
    for previous in Invitation.objects.for_tenant(tenant).filter(
        email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
    ):
        previous.revoked_at = now
        previous.save(update_fields=["revoked_at"])
        audit.record(action="invitation.replaced", actor=actor, tenant=tenant, target=previous,
                     details={"email": email})
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        tenant=tenant, email=email, role=role, token_hash=_token_hash(token),
        invited_by=actor if isinstance(actor, User) else None,
        expires_at=now + timedelta(days=settings.INVITATION_VALID_DAYS),
    )
    full_clean_or_refuse(invitation)
    invitation.save()
    audit.record(action="invitation.created", actor=actor, tenant=tenant, target=invitation,
                 details={"email": email, "role": role})

    from tenants.tasks import send_invitation_email

    transaction.on_commit(lambda: send_invitation_email.delay(invitation.pk, token))
    return invitation, token


def invitation_for_token(token: str) -> Invitation | None:
    return (Invitation.objects.select_related("tenant", "invited_by")
            .filter(token_hash=_token_hash(token)).first())


@transaction.atomic
def invitation_accept(*, user: User, token: str) -> Membership:
    invitation = (Invitation.objects.select_for_update()
                  .filter(token_hash=_token_hash(token)).select_related("tenant").first())
    if invitation is None or not invitation.is_open:
        raise ApplicationError(
            "This invitation is no longer valid: it was used, revoked or has expired. "
            "Ask your tenant admin for a new one."
        )
    if invitation.email.lower() != user.email.lower():
        raise ApplicationError(
            f"This invitation is for {invitation.email}, but you are signed in as {user.email}. "
            "Sign out and sign in with the invited address."
        )
    if not invitation.tenant.is_active:
        raise ApplicationError(f"{invitation.tenant.name} is suspended; the invitation can't be "
                               "accepted now.")
    membership, created = Membership.objects.get_or_create(
        tenant=invitation.tenant, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit.record(action="invitation.accepted", actor=user, tenant=invitation.tenant,
                 target=invitation, details={"email": invitation.email})
    if created:
        audit.record(action="membership.created", actor=user, tenant=invitation.tenant,
                     target=membership, details={"user": user.email, "role": membership.role,
                                                 "via": "invitation"})
    return membership


@transaction.atomic
def invitation_revoke(*, actor: User | str, invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at or invitation.revoked_at:
        raise ApplicationError("This invitation was already accepted or revoked.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record(action="invitation.revoked", actor=actor, tenant=invitation.tenant,
                 target=invitation, details={"email": invitation.email})
    return invitation


def _ensure_an_admin_remains(membership: Membership, *, new_role: str | None) -> None:
    if membership.role != TenantRole.TENANT_ADMIN or new_role == TenantRole.TENANT_ADMIN:
        return
    others = (Membership.objects.for_tenant(membership.tenant)
              .filter(role=TenantRole.TENANT_ADMIN).exclude(pk=membership.pk))
    if not others.exists():
        raise ApplicationError(
            f"{membership.user.email} is the last tenant admin of {membership.tenant.name}. "
            "Make someone else tenant admin first."
        )


@transaction.atomic
def membership_create(
    *, actor: User | str, tenant: Tenant, user: User, role: str, source: str = "local"
) -> Membership:
    membership = Membership(tenant=tenant, user=user, role=role, source=source)
    full_clean_or_refuse(membership)
    membership.save()
    audit.record(action="membership.created", actor=actor, tenant=tenant, target=membership,
                 details={"user": user.email, "role": role, "source": source})
    return membership


@transaction.atomic
def membership_change_role(*, actor: User | str, membership: Membership, role: str) -> Membership:
    if role not in TenantRole.values:
        raise refusal({"role": f"Choose one of: {', '.join(TenantRole.values)}."})
    membership = (Membership.objects.select_for_update().select_related("user", "tenant")
                  .get(pk=membership.pk))
    if membership.role == role:
        return membership
    _ensure_an_admin_remains(membership, new_role=role)
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit.record(action="membership.role_changed", actor=actor, tenant=membership.tenant,
                 target=membership,
                 details={"user": membership.user.email, "from": previous, "to": role})
    return membership


@transaction.atomic
def membership_remove(*, actor: User | str, membership: Membership) -> None:
    membership = (Membership.objects.select_for_update().select_related("user", "tenant")
                  .get(pk=membership.pk))
    _ensure_an_admin_remains(membership, new_role=None)
    details = {"user": membership.user.email, "role": membership.role}
    target = ("tenants.membership", membership.pk)
    tenant = membership.tenant
    membership.delete()
    audit.record(action="membership.removed", actor=actor, tenant=tenant, target=target,
                 details=details)


@transaction.atomic
def platform_role_grant(
    *, actor: User | str, user: User, role: str, source: str = "local"
) -> PlatformRoleGrant:
    if role not in PlatformRole.values:
        raise refusal({"role": f"Choose one of: {', '.join(PlatformRole.values)}."})
    grant, created = PlatformRoleGrant.objects.get_or_create(
        user=user, role=role, defaults={"source": source}
    )
    if created:
        audit.record(action="platform_role.granted", actor=actor, target=user,
                     details={"user": user.email, "role": role, "source": source})
    return grant


@transaction.atomic
def platform_role_revoke(*, actor: User | str, user: User, role: str) -> None:
    deleted, _ = PlatformRoleGrant.objects.filter(user=user, role=role).delete()
    if deleted:
        audit.record(action="platform_role.revoked", actor=actor, target=user,
                     details={"user": user.email, "role": role})


@transaction.atomic
def user_create(
    *, actor: User | str, email: str, password: str | None, full_name: str = "",
    email_verified: bool = False,
) -> User:
    """Create a local account (used by seeding and automation; sign-up goes through allauth)."""
    from allauth.account.models import EmailAddress

    email = email.strip().lower()
    first, _, last = full_name.partition(" ")
    user = User(email=email, first_name=first, last_name=last)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    full_clean_or_refuse(user)
    user.save()
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=email_verified)
    audit.record(action="user.created", actor=actor, target=user, details={"email": email})
    return user


@transaction.atomic
def second_factor_reset(*, actor: User | str, user: User) -> list[str]:
    """Remove every second factor of `user` (authenticator app, recovery codes, security
    keys), for a person who can no longer use theirs — lost, or its seed can't be decrypted.
    They set up a new one themselves; MSP admins and staff are made to at their next
    sign-in. Returns the kinds removed. Not for one's own account: that is changed, with the
    second factor, on the account's two-factor page."""
    from allauth.mfa.models import Authenticator

    if isinstance(actor, User) and actor.pk == user.pk:
        raise ApplicationError("You can't reset your own second factor here: change it under "
                               "Two-factor authentication in your account, or ask another MSP "
                               "admin.")
    authenticators = Authenticator.objects.filter(user=user)
    kinds = sorted(set(authenticators.values_list("type", flat=True)))
    if not kinds:
        raise ApplicationError(f"{user.email} has no second factor to reset.")
    authenticators.delete()
    audit.record(action="auth.second_factor_reset", actor=actor, target=user,
                 details={"user": user.email, "removed": kinds})
    return kinds
