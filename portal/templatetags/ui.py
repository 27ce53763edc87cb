"""Small presentation helpers shared by every template."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

# Stroke icons drawn for the portal (24×24 grid).
_ICONS = {
    "building": '<path d="M4 21V5l8-2v18M12 9h8v12M8 8h0M8 12h0M8 16h0M16 13h0M16 17h0"/>',
    "shield": '<path d="M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z"/><path d="M9 12l2 2 4-4"/>',
    "home": '<path d="M3 11l9-7 9 7M5 10v10h5v-6h4v6h5V10"/>',
    "users": '<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20c.8-3.5 3.4-5.5 6.5-5.5s5.7 2 6.5 5.5'
             'M16 4.5a3.5 3.5 0 010 7M18 14.8c1.8.7 3 2.4 3.5 5.2"/>',
    "chat": '<path d="M4 5h16v11H9l-5 4z"/><path d="M8 9h8M8 12h5"/>',
    "user": '<circle cx="12" cy="8" r="4"/><path d="M4 21c1-4 4-6 8-6s7 2 8 6"/>',
    "chart": '<path d="M4 20V4"/><path d="M4 20h16"/><path d="M8 16v-5"/><path d="M12 16V8"/>'
             '<path d="M16 16v-7"/>',
    "gauge": '<path d="M4 17a8 8 0 1 1 16 0"/><path d="M12 17l4-6"/>',
    "bell": '<path d="M6 16V11a6 6 0 0 1 12 0v5l2 2H4z"/><path d="M10 20a2 2 0 0 0 4 0"/>',
    "link": ('<path d="M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1"/>'
             '<path d="M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"/>'),
    "key": '<circle cx="8" cy="15" r="4"/><path d="M11 12l9-9M17 6l3 3M14 9l2 2"/>',
    "cube": '<path d="M12 3l8 4.5v9L12 21l-8-4.5v-9z"/><path d="M4 7.5l8 4.5 8-4.5M12 12v9"/>',
    "server": '<rect x="3" y="4" width="18" height="7" rx="1.5"/><rect x="3" y="13" width="18" '
              'height="7" rx="1.5"/><path d="M7 7.5h0M7 16.5h0"/>',
    "rocket": '<path d="M12 15l-3-3c1.5-5 5-8 10-9-1 5-4 8.5-9 10zM9 12l-4 1 2-4h4M12 15l-1 4 '
              '4-2v-4"/>',
    "file": '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4M9 12h6M9 16h6"/>',
}


@register.simple_tag
def icon(name: str) -> str:
    return format_html(
        '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" '
        'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">{}</svg>',
        mark_safe(_ICONS.get(name, "")),  # noqa: S308 — constant markup defined above
    )


_STATUS_BADGES = {
    "active": "badge-ok",
    "suspended": "badge-danger",
    "tenant_admin": "badge-brand",
    "revoked": "badge-danger",
    "expired": "badge-warn",
    # deployments
    "ready": "badge-ok",
    "failed": "badge-danger",
    "pending": "badge-brand",
    "applying": "badge-brand",
    "progressing": "badge-brand",
    "stopping": "badge-warn",
    "stopped": "badge-warn",
    "deleting": "badge-warn",
    "deleted": "",
}


@register.filter
def badge_class(value: str) -> str:
    return _STATUS_BADGES.get(str(value), "")


@register.filter
def role_label(value: str) -> str:
    """`tenant_admin` → `Tenant admin`, for tenant and platform roles alike."""
    from tenants.models import PlatformRole, TenantRole

    for choices in (TenantRole, PlatformRole):
        if value in choices.values:
            return choices(value).label
    return str(value)


@register.filter
def secret_problems(obj) -> list[str]:
    """What to tell people about `obj`'s stored secrets that can't be decrypted."""
    from portal.stored_secrets import problems

    return problems(obj)
