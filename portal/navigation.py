"""The sidebar, as data: each section's entries, who sees each (the permissions it needs, all
of them, as `tenants.permissions` decides) and when it is the current page.

`base.html` renders whatever `navigation_sections` returns; adding a page to the sidebar is
one line in the tables below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from django.http import HttpRequest
from django.urls import reverse

from billing.notifications.selectors import unread_notification_count
from tenants import permissions
from tenants.models import Tenant, User
from tenants.permissions import PlatformPerm, TenantPerm


class Match(StrEnum):
    PREFIX = "prefix"  # current on the entry's URL and every page below it
    EXACT = "exact"  # current on the entry's URL only (a section's start page)


@dataclass(frozen=True)
class NavEntry:
    label: str
    url_name: str
    icon: str
    requires: tuple[PlatformPerm, ...] | tuple[TenantPerm, ...]
    match: Match = Match.PREFIX
    # A number shown beside the label (unread notifications); counted for full pages only.
    badge: Callable[..., int] | None = None


PLATFORM_ENTRIES: tuple[NavEntry, ...] = (
    NavEntry("Tenants", "tenants:list", "building", (PlatformPerm.TENANTS_MANAGE,)),
    NavEntry("Model catalog", "models_catalog:catalog", "cube", (PlatformPerm.MODELS_VIEW,)),
    NavEntry("Deployments", "deployments:list", "rocket", (PlatformPerm.DEPLOYMENTS_MANAGE,)),
    NavEntry("Clusters", "deployments:clusters", "server", (PlatformPerm.DEPLOYMENTS_MANAGE,)),
    NavEntry("LLM presets", "deployments:llm_presets", "cube", (PlatformPerm.DEPLOYMENTS_MANAGE,)),
    NavEntry("Audit", "audit:list", "shield", (PlatformPerm.AUDIT_VIEW,)),
    NavEntry("Checkpoints", "compliance:checkpoints", "key", (PlatformPerm.AUDIT_VIEW,)),
    NavEntry("Reports", "compliance:reports", "file", (PlatformPerm.REPORTS_VIEW,)),
    NavEntry("Usage", "usage:platform", "chart", (PlatformPerm.USAGE_VIEW,)),
    NavEntry("Statements", "billing_msp:statements", "file", (PlatformPerm.STATEMENTS_CLOSE,)),
)

_MEMBER = TenantPerm.TENANT_VIEW
TENANT_ENTRIES: tuple[NavEntry, ...] = (
    NavEntry("Overview", "tenants:overview", "home", (_MEMBER,), match=Match.EXACT),
    NavEntry("Models", "models_catalog:tenant_catalog", "cube", (_MEMBER,)),
    NavEntry("Deployments", "deployments:tenant_list", "rocket",
             (_MEMBER, TenantPerm.DEPLOYMENTS_VIEW)),
    NavEntry("Playground", "gateway:playground", "chat", (_MEMBER, TenantPerm.PLAYGROUND_USE)),
    NavEntry("API keys", "gateway:keys", "key", (_MEMBER,)),
    NavEntry("Members", "tenants:members", "users", (_MEMBER,)),
    NavEntry("Usage", "usage:tenant", "chart", (_MEMBER,)),
    NavEntry("Budgets", "billing:budgets", "gauge", (_MEMBER,)),
    NavEntry("Notifications", "billing:notifications", "bell", (_MEMBER,),
             badge=lambda user, tenant: unread_notification_count(user=user, tenant=tenant)),
    NavEntry("Webhooks", "billing:webhooks", "link", (_MEMBER,)),
    NavEntry("Statements", "billing:statements", "file", (TenantPerm.STATEMENTS_VIEW,)),
    NavEntry("Audit", "tenant_audit:list", "shield", (TenantPerm.AUDIT_VIEW,)),
)


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    icon: str
    current: bool
    badge: int = 0


@dataclass(frozen=True)
class NavSection:
    heading: str
    links: list[NavLink]


def _link(entry: NavEntry, request: HttpRequest, user: User, tenant: Tenant | None) -> NavLink:
    url = reverse(entry.url_name, args=[tenant.slug] if tenant else [])
    path = request.path
    current = path == url if entry.match == Match.EXACT else path.startswith(url)
    badge = entry.badge(user, tenant) if entry.badge else 0
    return NavLink(entry.label, url, entry.icon, current, badge)


def navigation_sections(request: HttpRequest, *, tenant: Tenant | None) -> list[NavSection]:
    """The current tenant's section, then the platform's; sections with no entry are left
    out."""
    user = request.user
    sections = []
    if tenant is not None:
        links = [_link(entry, request, user, tenant) for entry in TENANT_ENTRIES
                 if all(permissions.has_tenant_perm(user, tenant, p) for p in entry.requires)]
        sections.append(NavSection(tenant.name, links))
    links = [_link(entry, request, user, None) for entry in PLATFORM_ENTRIES
             if all(permissions.has_platform_perm(user, p) for p in entry.requires)]
    sections.append(NavSection("Platform", links))
    return [section for section in sections if section.links]
