"""The navigation every page shows, decided by the person's roles."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from billing.notifications.selectors import unread_notification_count
from tenants import permissions, selectors
from tenants.permissions import PlatformPerm, TenantPerm


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    icon: str
    count: int = 0


def _current_tenant(request: HttpRequest, tenants: list):
    tenant = getattr(request, "tenant", None)
    if tenant is not None:
        return tenant
    remembered = request.session.get("portal_current_tenant")
    return next((t for t in tenants if t.slug == remembered), tenants[0] if tenants else None)


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    context = {"site_name": settings.SITE_NAME, "local_login": settings.LOCAL_LOGIN,
               "support_email": settings.SUPPORT_EMAIL}
    if user is None or not user.is_authenticated:
        return context
    platform: list[NavItem] = []
    if permissions.has_platform_perm(user, PlatformPerm.TENANTS_MANAGE):
        platform.append(NavItem("Tenants", reverse("tenants:list"), "building"))
    if permissions.has_platform_perm(user, PlatformPerm.MODELS_VIEW):
        platform.append(NavItem("Model catalog", reverse("models_catalog:catalog"), "cube"))
    if permissions.has_platform_perm(user, PlatformPerm.DEPLOYMENTS_MANAGE):
        platform.append(NavItem("Deployments", reverse("deployments:list"), "rocket"))
        platform.append(NavItem("Clusters", reverse("deployments:clusters"), "server"))
        platform.append(NavItem("LLM presets", reverse("deployments:llm_presets"), "cube"))
    if permissions.has_platform_perm(user, PlatformPerm.AUDIT_VIEW):
        platform.append(NavItem("Audit", reverse("audit:list"), "shield"))
        platform.append(NavItem("Checkpoints", reverse("compliance:checkpoints"), "key"))
    if permissions.has_platform_perm(user, PlatformPerm.REPORTS_VIEW):
        platform.append(NavItem("Reports", reverse("compliance:reports"), "file"))
    if permissions.has_platform_perm(user, PlatformPerm.USAGE_VIEW):
        platform.append(NavItem("Usage", reverse("usage:platform"), "chart"))
    if permissions.has_platform_perm(user, PlatformPerm.STATEMENTS_CLOSE):
        platform.append(NavItem("Statements", reverse("billing_msp:statements"), "file"))

    tenants = selectors.tenants_for_switcher(user=user)
    current = _current_tenant(request, tenants)
    tenant_nav: list[NavItem] = []
    if current is not None and permissions.has_tenant_perm(user, current, TenantPerm.TENANT_VIEW):
        tenant_nav.append(NavItem("Overview", reverse("tenants:overview", args=[current.slug]),
                                  "home"))
        tenant_nav.append(NavItem("Models", reverse("models_catalog:tenant_catalog",
                                                    args=[current.slug]), "cube"))
        if permissions.has_tenant_perm(user, current, TenantPerm.DEPLOYMENTS_VIEW):
            tenant_nav.append(NavItem("Deployments", reverse("deployments:tenant_list",
                                                             args=[current.slug]), "rocket"))
        if permissions.has_tenant_perm(user, current, TenantPerm.PLAYGROUND_USE):
            tenant_nav.append(NavItem("Playground",
                                      reverse("gateway:playground", args=[current.slug]), "chat"))
        tenant_nav.append(NavItem("API keys", reverse("gateway:keys", args=[current.slug]),
                                  "key"))
        tenant_nav.append(NavItem("Members", reverse("tenants:members", args=[current.slug]),
                                  "users"))
        tenant_nav.append(NavItem("Usage", reverse("usage:tenant", args=[current.slug]),
                                  "chart"))
        tenant_nav.append(NavItem("Budgets", reverse("billing:budgets", args=[current.slug]),
                                  "gauge"))
        tenant_nav.append(NavItem("Notifications",
                                  reverse("billing:notifications", args=[current.slug]), "bell",
                                  unread_notification_count(user=user, tenant=current)))
        tenant_nav.append(NavItem("Webhooks", reverse("billing:webhooks", args=[current.slug]),
                                  "link"))
    if current is not None and permissions.has_tenant_perm(user, current,
                                                           TenantPerm.STATEMENTS_VIEW):
        tenant_nav.append(NavItem("Statements",
                                  reverse("billing:statements", args=[current.slug]), "file"))
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
