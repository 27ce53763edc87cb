from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from portal import request_context
from tenants import permissions
from tenants.models import (
    Invitation,
    Membership,
    OidcLogin,
    PlatformRoleGrant,
    Tenant,
    TenantStatus,
    User,
)


def tenant_list(*, user: User, search: str = "", status: str = "") -> QuerySet[Tenant]:
    """MSP admins see every tenant; everyone else the tenants they belong to."""
    qs = Tenant.objects.annotate(member_count=Count("memberships", distinct=True))
    if not permissions.is_msp_admin(user):
        qs = qs.filter(pk__in=permissions.memberships(user).keys())
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(slug__icontains=search)
                       | Q(contact_email__icontains=search))
    if status in TenantStatus.values:
        qs = qs.filter(status=status)
    return qs.order_by("name")


def tenant_get(*, user: User, slug: str) -> Tenant:
    """The tenant, if the user may see it; otherwise 404, exactly as if it did not exist."""
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None or not permissions.can_see_tenant(user, tenant):
        raise Http404("No such tenant.")
    request_context.update(tenant=tenant.slug)  # the request acts in it: logs say so
    return tenant


def tenant_by_slug(slug: str) -> Tenant | None:
    """Any tenant, by slug, for the operator's staff and commands (no visibility check: pages
    that people reach use `tenant_get`)."""
    return Tenant.objects.filter(slug=slug).first()


def user_by_email(email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.for_tenant(tenant).select_related("user").order_by("user__email")


def membership_get(*, tenant: Tenant, pk: int) -> Membership:
    return membership_list(tenant=tenant).get_or_404(pk, missing="No such member.")


def invitation_list_open(*, tenant: Tenant) -> QuerySet[Invitation]:
    return (Invitation.objects.for_tenant(tenant)
            .filter(accepted_at__isnull=True, revoked_at__isnull=True,
                    expires_at__gt=timezone.now())
            .select_related("invited_by").order_by("-created_at"))


def tenant_overview_counts(*, tenant: Tenant) -> dict[str, int]:
    """Members and open invitations, for the tenant's overview page."""
    return {"member_count": Membership.objects.for_tenant(tenant).count(),
            "open_invitations": invitation_list_open(tenant=tenant).count()}


def invitation_get(*, tenant: Tenant, pk: int) -> Invitation:
    return Invitation.objects.for_tenant(tenant).get_or_404(pk, missing="No such invitation.")


def tenants_for_switcher(*, user: User) -> list[Tenant]:
    """The tenants a person works in (MSP admins reach others through the tenant list)."""
    return sorted((m.tenant for m in permissions.memberships(user).values()),
                  key=lambda t: t.name.lower())


def tenant_id_for_slug(slug: str) -> int | None:
    return Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first()


def tenant_options() -> list[tuple[str, str]]:
    """(slug, name) of every tenant, for platform staff's filters."""
    return list(Tenant.objects.order_by("name").values_list("slug", "name"))


def tenant_list_for_gateway() -> QuerySet[Tenant]:
    """Every tenant with what the gateway checks on each request (active, rate limits): one
    query, loaded whole at a gateway worker's start and on each configuration reload."""
    return Tenant.objects.only("pk", "slug", "status", "rate_limit_rpm", "rate_limit_tpm")


def identity_overview(*, user: User) -> dict:
    """The person's memberships and platform roles, each with the claim of the latest sign-in
    that gave it (for those a provider manages), and their latest sign-in per provider."""
    logins = list(OidcLogin.objects.filter(user=user).order_by("-logged_in_at"))
    claims = {f"oidc:{login.provider_id}": login.access or {} for login in logins}
    memberships = list(Membership.objects.filter(user=user).select_related("tenant")
                       .order_by("tenant__name"))
    for membership in memberships:
        given = claims.get(membership.source, {}).get("tenants", {}).get(membership.tenant.slug)
        membership.claim = given["claim"] if given else ""
    grants = list(PlatformRoleGrant.objects.filter(user=user).order_by("role"))
    for grant in grants:
        given = claims.get(grant.source, {}).get("platform_roles", {}).get(grant.role)
        grant.claim = given["claim"] if given else ""
    return {"memberships": memberships, "platform_roles": grants, "logins": logins}
