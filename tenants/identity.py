"""Identity mapping: what an identity provider's claims give a person in the portal.

`access_plan()` reads claims into tenants and roles (and says which claim gave each, and
which roles the sign-in's level of assurance is too low for); `identity_sync()` is the
service that makes the person's memberships and platform roles match the plan. It touches
only what the same provider gave before (`source="oidc:<provider>"`): memberships and
grants made in the portal itself stay as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from portal.api import ApplicationError
from portal.oidc_settings import OidcProvider
from tenants import permissions, services
from tenants.models import (
    Membership,
    OidcLogin,
    PlatformRoleGrant,
    Tenant,
    TenantRole,
    TenantStatus,
    User,
    slug_validator,
)

logger = logging.getLogger(__name__)

TENANT_ROLE_RANK = {TenantRole.VIEWER: 0, TenantRole.DEVELOPER: 1, TenantRole.TENANT_ADMIN: 2}
# `amr` values (RFC 8176) that mean more than one factor was used.
MULTI_FACTOR_AMR = {"mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "iris", "retina"}


def providers() -> tuple[OidcProvider, ...]:
    return settings.OIDC_PROVIDERS


def provider_get(provider_id: str) -> OidcProvider | None:
    return next((p for p in providers() if p.id == provider_id), None)


def step_up_params(acr: str) -> str:
    """allauth's `auth_params` for a new sign-in that asks the provider for level `acr`."""
    return urlencode({"acr_values": acr, "prompt": "login"})


def claims_of(extra_data: dict) -> dict[str, Any]:
    """The claims allauth kept: the ID token's, completed by userinfo where it says more."""
    claims = dict(extra_data.get("id_token") or {})
    for key, value in (extra_data.get("userinfo") or {}).items():
        claims.setdefault(key, value)
    return claims


def _claim_path(claims: dict, path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    if isinstance(value, dict):
        # Keycloak's `organization` claim may be a map keyed by alias.
        return [key for key in value if isinstance(key, str)]
    return []


@dataclass
class Granted:
    role: str
    claim: str


@dataclass
class AccessPlan:
    provider: OidcProvider
    subject: str
    acr: str
    amr: list[str]
    tenants: dict[str, Granted] = field(default_factory=dict)
    platform_roles: dict[str, Granted] = field(default_factory=dict)
    withheld: list[dict] = field(default_factory=list)
    unknown_organizations: list[str] = field(default_factory=list)

    @property
    def mfa(self) -> bool:
        return bool(MULTI_FACTOR_AMR & set(self.amr))

    @property
    def step_up_acr(self) -> str:
        """The level to ask for so that every withheld role is granted."""
        needed = [w["needs"] for w in self.withheld]
        return max(needed, key=self.provider.acr_rank) if needed else ""

    def as_record(self) -> dict:
        return {
            "tenants": {slug: vars(g) for slug, g in sorted(self.tenants.items())},
            "platform_roles": {role: vars(g) for role, g in sorted(self.platform_roles.items())},
            "withheld": self.withheld,
            "unknown_organizations": self.unknown_organizations,
        }


def access_plan(provider: OidcProvider, claims: dict) -> AccessPlan:
    """What these claims give, after the level-of-assurance check. Tenants are named by slug
    and not yet looked up (`identity_sync` does that)."""
    acr = str(claims.get("acr") or "")
    plan = AccessPlan(provider=provider, subject=str(claims.get("sub", "")), acr=acr,
                      amr=_strings(claims.get("amr")))
    role_names = _role_names(provider, claims)
    for name, path in role_names.items():
        if role := provider.platform_roles.get(name):
            plan.platform_roles.setdefault(role, Granted(role, f"{path}: {name}"))

    tenant_wide = Granted(provider.default_tenant_role, "default_tenant_role")
    for name, path in role_names.items():
        role = provider.tenant_roles.get(name)
        if role and TENANT_ROLE_RANK[role] > TENANT_ROLE_RANK[tenant_wide.role]:
            tenant_wide = Granted(role, f"{path}: {name}")

    if provider.organization_claim:
        for alias in _strings(claims.get(provider.organization_claim)):
            plan.tenants[alias] = Granted(
                tenant_wide.role, f"{provider.organization_claim}: {alias} ({tenant_wide.claim})")

    # A group path names tenant and role together, so it is more specific than the
    # organization claim and wins over it for the same tenant.
    plan.tenants.update(_group_grants(provider, claims))
    _withhold_below_min_acr(plan)
    return plan


def _role_names(provider: OidcProvider, claims: dict) -> dict[str, str]:
    """Each role name in the provider's `role_claims` (also without a leading slash) → the
    claim path that first names it."""
    role_names: dict[str, str] = {}
    for path in provider.role_claims:
        for name in _strings(_claim_path(claims, path)):
            role_names.setdefault(name, path)
            role_names.setdefault(name.lstrip("/"), path)
    return role_names


def _group_grants(provider: OidcProvider, claims: dict) -> dict[str, Granted]:
    """Tenant slug → the highest role the groups `<group_prefix><slug>/<role>` grant in it
    (a role by the provider's `tenant_roles` mapping or by its own name)."""
    from_groups: dict[str, Granted] = {}
    if not (provider.groups_claim and provider.group_prefix):
        return from_groups
    for group in _strings(claims.get(provider.groups_claim)):
        if not group.startswith(provider.group_prefix):
            continue
        parts = group[len(provider.group_prefix):].strip("/").split("/")
        if len(parts) != 2:
            continue
        slug, name = parts
        role = provider.tenant_roles.get(name) or (name if name in TENANT_ROLE_RANK else "")
        if not role:
            continue
        current = from_groups.get(slug)
        if current is None or TENANT_ROLE_RANK[role] > TENANT_ROLE_RANK[current.role]:
            from_groups[slug] = Granted(role, f"{provider.groups_claim}: {group}")
    return from_groups


def _withhold_below_min_acr(plan: AccessPlan) -> None:
    """Move every platform and tenant role whose `min_acr` the sign-in's acr does not reach
    from the plan's grants to `plan.withheld`, with the level it needs."""
    provider, acr = plan.provider, plan.acr
    for role, granted in list(plan.platform_roles.items()):
        if needs := _too_low(provider, acr, role):
            del plan.platform_roles[role]
            plan.withheld.append({"role": role, "needs": needs, "claim": granted.claim})
    for slug, granted in list(plan.tenants.items()):
        if needs := _too_low(provider, acr, granted.role):
            del plan.tenants[slug]
            plan.withheld.append({"role": granted.role, "tenant": slug, "needs": needs,
                                  "claim": granted.claim})


def _too_low(provider: OidcProvider, acr: str, role: str) -> str:
    minimum = provider.min_acr.get(role)
    if minimum and provider.acr_rank(acr) < provider.acr_rank(minimum):
        return minimum
    return ""


def resolve_tenants(plan: AccessPlan) -> dict[str, Tenant]:
    """slug → Tenant for the plan's tenants the portal knows; the others are remembered in
    `plan.unknown_organizations`."""
    known = {t.slug: t for t in Tenant.objects.filter(slug__in=list(plan.tenants))}
    plan.unknown_organizations = sorted(set(plan.tenants) - set(known))
    return known


def has_usable_access(user: User | None, plan: AccessPlan, known: dict[str, Tenant]) -> bool:
    """Whether the person may work in the portal after this sign-in: a role from the claims
    in an active tenant, a platform role, or anything the portal itself gave them."""
    if plan.platform_roles or any(t.is_active for t in known.values()):
        return True
    if user is None or user.pk is None:
        return False
    source = plan.provider.source
    return (Membership.objects.filter(user=user, tenant__status=TenantStatus.ACTIVE)
            .exclude(source=source).exists()
            or PlatformRoleGrant.objects.filter(user=user).exclude(source=source).exists())


@transaction.atomic
def onboarding_tenants_create(*, plan: AccessPlan, known: dict[str, Tenant],
                              contact_email: str) -> list[Tenant]:
    """Under `unknown_organization: create_suspended`, create each organization the portal
    does not know as a suspended tenant for the MSP to review (nobody works in it until an
    MSP admin reactivates it). Aliases that can't be tenant slugs stay unknown."""
    if plan.provider.unknown_organization != "create_suspended":
        return []
    actor = f"system:{plan.provider.source}"
    created = []
    for alias in list(plan.unknown_organizations):
        try:
            slug_validator(alias)
        except ValidationError:
            continue
        tenant = services.tenant_create(
            actor=actor, slug=alias, name=alias, contact_email=contact_email,
            jurisdiction=plan.provider.new_tenant_jurisdiction,
        )
        tenant = services.tenant_set_status(
            actor=actor, tenant=tenant, status=TenantStatus.SUSPENDED,
            reason=f"Created from a {plan.provider.name} sign-in; awaiting MSP review.",
        )
        known[alias] = tenant
        plan.unknown_organizations.remove(alias)
        created.append(tenant)
    return created


@transaction.atomic
def identity_sync(*, user: User, plan: AccessPlan, known: dict[str, Tenant]) -> list[str]:
    """Make the memberships and platform roles that `plan.provider` manages for `user` match
    the plan, record the sign-in's facts, and return what could not be changed (and why).

    Every change goes through the audited services of `tenants.services`, with the provider
    as actor. A change those services refuse (the last tenant admin) is kept and reported.
    """
    provider = plan.provider
    actor = f"system:{provider.source}"
    kept: list[str] = []
    held = {m.tenant_id: m for m in Membership.objects.filter(user=user).select_related("tenant")}
    wanted = {known[slug].pk: granted for slug, granted in plan.tenants.items() if slug in known}
    for tenant_id, granted in wanted.items():
        membership = held.get(tenant_id)
        tenant = next(t for t in known.values() if t.pk == tenant_id)
        if membership is None:
            services.membership_create(actor=actor, tenant=tenant, user=user,
                                       role=granted.role, source=provider.source)
        elif membership.source == provider.source and membership.role != granted.role:
            try:
                services.membership_change_role(actor=actor, membership=membership,
                                                role=granted.role)
            except ApplicationError as exc:
                kept.append(str(exc))
    for tenant_id, membership in held.items():
        if membership.source == provider.source and tenant_id not in wanted:
            try:
                services.membership_remove(actor=actor, membership=membership)
            except ApplicationError as exc:
                kept.append(str(exc))

    granted_roles = dict(PlatformRoleGrant.objects.filter(user=user)
                         .values_list("role", "source"))
    for role in plan.platform_roles:
        if role not in granted_roles:
            services.platform_role_grant(actor=actor, user=user, role=role,
                                         source=provider.source)
    for role, source in granted_roles.items():
        if source == provider.source and role not in plan.platform_roles:
            services.platform_role_revoke(actor=actor, user=user, role=role)

    OidcLogin.objects.update_or_create(
        user=user, provider_id=provider.id,
        defaults={"issuer": provider.issuer, "subject": plan.subject, "acr": plan.acr,
                  "amr": plan.amr, "mfa": plan.mfa, "access": plan.as_record(),
                  "logged_in_at": timezone.now()},
    )
    permissions.forget(user)
    return kept


def login_refused_record(*, plan: AccessPlan, reason: str, email: str = "") -> None:
    audit.record(action="auth.login_refused", actor="anonymous",
                 details={"provider": plan.provider.id, "acr": plan.acr, "reason": reason,
                          "subject": plan.subject, "email": email,
                          "withheld": plan.withheld,
                          "unknown_organizations": plan.unknown_organizations})
