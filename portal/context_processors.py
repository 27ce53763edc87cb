"""The navigation every page shows, decided by the person's roles."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from tenants import permissions, selectors
from tenants.permissions import PlatformPerm, TenantPerm


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    icon: str


def _current_tenant(request: HttpRequest, tenants: list):
    tenant = getattr(request, "tenant", None)
    if tenant is not None:
        return tenant
    remembered = request.session.get("portal_current_tenant")
    return next((t for t in tenants if t.slug == remembered), tenants[0] if tenants else None)


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    context = {"site_name": settings.SITE_NAME, "local_login": settings.LOCAL_LOGIN}
    if user is None or not user.is_authenticated:
        return context
    platform: list[NavItem] = []
    if permissions.has_platform_perm(user, PlatformPerm.TENANTS_MANAGE):
        platform.append(NavItem("Tenants", reverse("tenants:list"), "building"))
    if permissions.has_platform_perm(user, PlatformPerm.DEPLOYMENTS_MANAGE):
        platform.append(NavItem("Deployments", reverse("deployments:list"), "rocket"))
        platform.append(NavItem("Clusters", reverse("deployments:clusters"), "server"))
    if permissions.has_platform_perm(user, PlatformPerm.AUDIT_VIEW):
        platform.append(NavItem("Audit", reverse("audit:list"), "shield"))
        platform.append(NavItem("Checkpoints", reverse("compliance:checkpoints"), "key"))
    if permissions.has_platform_perm(user, PlatformPerm.REPORTS_VIEW):
        platform.append(NavItem("Reports", reverse("compliance:reports"), "file"))

    tenants = selectors.tenants_for_switcher(user=user)
    current = _current_tenant(request, tenants)
    tenant_nav: list[NavItem] = []
    if current is not None and permissions.has_tenant_perm(user, current, TenantPerm.TENANT_VIEW):
        tenant_nav.append(NavItem("Overview", reverse("tenants:overview", args=[current.slug]),
                                  "home"))
        if permissions.has_tenant_perm(user, current, TenantPerm.PLAYGROUND_USE):
            tenant_nav.append(NavItem("Playground",
                                      reverse("gateway:playground", args=[current.slug]), "chat"))
        tenant_nav.append(NavItem("API keys", reverse("gateway:keys", args=[current.slug]),
                                  "key"))
        tenant_nav.append(NavItem("Members", reverse("tenants:members", args=[current.slug]),
                                  "users"))
    if current is not None and permissions.has_tenant_perm(user, current, TenantPerm.AUDIT_VIEW):
        tenant_nav.append(NavItem("Audit", reverse("tenant_audit:list", args=[current.slug]),
                                  "shield"))
    return {
        **context,
        "nav_platform": platform,
        "nav_tenant": tenant_nav,
        "switcher_tenants": tenants,
        "current_tenant": current,
        "current_tenant_role": permissions.tenant_role(user, current) if current else None,
        "platform_roles": sorted(permissions.platform_roles(user)),
    }
