"""Every access decision of the portal, in one place, for pages and the API alike.

Two kinds of permission: platform permissions come from platform roles (the operator's
staff); tenant permissions come from the person's membership in that tenant. MSP admins
hold every tenant permission in every tenant. Callers distinguish "not yours" (→ 404,
exactly like a missing object) from "yours, but not allowed" (→ 403) through
`can_see_tenant` and `has_tenant_perm`.
"""

from __future__ import annotations

from enum import StrEnum

from tenants.models import Membership, PlatformRole, Tenant, TenantRole


class PlatformPerm(StrEnum):
    TENANTS_MANAGE = "tenants.manage"
    AUDIT_VIEW = "audit.view"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    REPORTS_VIEW = "reports.view"
    REPORTS_GENERATE = "reports.generate"
    MODELS_VIEW = "models.view"  # every model and version, in every status
    MODELS_MANAGE = "models.manage"  # upload, approve, entitlements, prices, lifecycle
    STATEMENTS_CLOSE = "statements.close"
    USAGE_VIEW = "usage.view"  # usage across every tenant
    DEPLOYMENTS_MANAGE = "deployments.manage"  # clusters, namespaces, deployments


class TenantPerm(StrEnum):
    TENANT_VIEW = "tenant.view"
    MEMBERS_VIEW = "members.view"
    MEMBERS_MANAGE = "members.manage"
    KEYS_VIEW = "keys.view"
    KEYS_CREATE = "keys.create"  # and manage one's own keys
    KEYS_MANAGE_ALL = "keys.manage_all"
    PLAYGROUND_USE = "playground.use"
    AUDIT_VIEW = "tenant_audit.view"
    BUDGETS_VIEW = "budgets.view"
    BUDGETS_MANAGE = "budgets.manage"  # budgets and webhook endpoints
    STATEMENTS_VIEW = "statements.view"
    USAGE_VIEW = "usage.view"  # one's own keys' usage
    USAGE_VIEW_ALL = "usage.view_all"  # the whole tenant's usage
    DEPLOYMENTS_VIEW = "deployments.view"  # where the tenant's models run, read-only


PLATFORM_GRANTS: dict[PlatformPerm, frozenset[str]] = {
    PlatformPerm.TENANTS_MANAGE: frozenset({PlatformRole.MSP_ADMIN}),
    PlatformPerm.AUDIT_VIEW: frozenset({PlatformRole.MSP_ADMIN, PlatformRole.COMPLIANCE_OFFICER}),
    PlatformPerm.AUDIT_CHECKPOINT: frozenset({PlatformRole.MSP_ADMIN,
                                              PlatformRole.COMPLIANCE_OFFICER}),
    # Compliance reports cover the whole platform or one tenant: the operator's staff only.
    PlatformPerm.REPORTS_VIEW: frozenset({PlatformRole.MSP_ADMIN, PlatformRole.COMPLIANCE_OFFICER}),
    PlatformPerm.REPORTS_GENERATE: frozenset({PlatformRole.MSP_ADMIN,
                                              PlatformRole.COMPLIANCE_OFFICER}),
    PlatformPerm.MODELS_VIEW: frozenset({PlatformRole.MSP_ADMIN,
                                         PlatformRole.COMPLIANCE_OFFICER}),
    PlatformPerm.MODELS_MANAGE: frozenset({PlatformRole.MSP_ADMIN}),
    PlatformPerm.STATEMENTS_CLOSE: frozenset({PlatformRole.MSP_ADMIN}),
    PlatformPerm.USAGE_VIEW: frozenset({PlatformRole.MSP_ADMIN}),
    PlatformPerm.DEPLOYMENTS_MANAGE: frozenset({PlatformRole.MSP_ADMIN}),
}

TENANT_GRANTS: dict[TenantPerm, frozenset[str]] = {
    TenantPerm.TENANT_VIEW: frozenset(TenantRole.values),
    TenantPerm.MEMBERS_VIEW: frozenset(TenantRole.values),
    TenantPerm.MEMBERS_MANAGE: frozenset({TenantRole.TENANT_ADMIN}),
    TenantPerm.KEYS_VIEW: frozenset(TenantRole.values),
    TenantPerm.KEYS_CREATE: frozenset({TenantRole.TENANT_ADMIN, TenantRole.DEVELOPER}),
    TenantPerm.KEYS_MANAGE_ALL: frozenset({TenantRole.TENANT_ADMIN}),
    TenantPerm.PLAYGROUND_USE: frozenset({TenantRole.TENANT_ADMIN, TenantRole.DEVELOPER}),
    # A tenant admin reads its own tenant's slice of the audit trail.
    TenantPerm.AUDIT_VIEW: frozenset({TenantRole.TENANT_ADMIN}),
    TenantPerm.BUDGETS_VIEW: frozenset(TenantRole.values),
    TenantPerm.BUDGETS_MANAGE: frozenset({TenantRole.TENANT_ADMIN}),
    # Money: the tenant's admins (and the MSP) read the statements.
    TenantPerm.STATEMENTS_VIEW: frozenset({TenantRole.TENANT_ADMIN}),
    TenantPerm.USAGE_VIEW: frozenset(TenantRole.values),
    # Developers see their own keys; admins and viewers (read-only oversight) the tenant.
    TenantPerm.USAGE_VIEW_ALL: frozenset({TenantRole.TENANT_ADMIN, TenantRole.VIEWER}),
    TenantPerm.DEPLOYMENTS_VIEW: frozenset(TenantRole.values),
}

def platform_roles(user) -> frozenset[str]:
    """The user's platform roles, loaded once per request object."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "is_service_account", False):
        return frozenset()
    cached = getattr(user, "_platform_roles_cache", None)
    if cached is None:
        cached = frozenset(user.platform_roles.values_list("role", flat=True))
        user._platform_roles_cache = cached
    return cached


def memberships(user) -> dict[int, Membership]:
    """tenant id → membership, loaded once per request object."""
    if not getattr(user, "is_authenticated", False):
        return {}
    if getattr(user, "is_service_account", False):
        # A service account's one membership comes from configuration, not the database.
        return {user.membership.tenant_id: user.membership}
    cached = getattr(user, "_memberships_cache", None)
    if cached is None:
        cached = {
            m.tenant_id: m for m in Membership.objects.filter(user=user).select_related("tenant")
        }
        user._memberships_cache = cached
    return cached


def forget(user) -> None:
    """Drop the per-request caches after the user's roles changed."""
    for attr in ("_platform_roles_cache", "_memberships_cache"):
        if hasattr(user, attr):
            delattr(user, attr)


def is_msp_admin(user) -> bool:
    return PlatformRole.MSP_ADMIN in platform_roles(user)


def has_platform_perm(user, perm: PlatformPerm) -> bool:
    return bool(platform_roles(user) & PLATFORM_GRANTS[perm])


def tenant_role(user, tenant: Tenant) -> str | None:
    membership = memberships(user).get(tenant.pk)
    return membership.role if membership else None


def can_see_tenant(user, tenant: Tenant) -> bool:
    return is_msp_admin(user) or tenant_role(user, tenant) is not None


def has_tenant_perm(user, tenant: Tenant, perm: TenantPerm) -> bool:
    if is_msp_admin(user):
        return True
    role = tenant_role(user, tenant)
    return role is not None and role in TENANT_GRANTS[perm]



def can_see_webhook_urls(user, tenant: Tenant) -> bool:
    """A webhook URL often carries the receiver's own secret (Slack, Teams): only the
    tenant's admins see it whole; other members and the MSP's staff see it masked."""
    return tenant_role(user, tenant) == TenantRole.TENANT_ADMIN


def can_manage_key(user, key) -> bool:
    """Tenant admins manage every key of their tenant; developers (people or service accounts)
    their own."""
    if has_tenant_perm(user, key.tenant, TenantPerm.KEYS_MANAGE_ALL):
        return True
    if not has_tenant_perm(user, key.tenant, TenantPerm.KEYS_CREATE):
        return False
    if getattr(user, "is_service_account", False):
        return key.service_account == user.pk
    return key.owner_id is not None and key.owner_id == user.pk
