"""What every page's layout shows: the site's name, the navigation for the person's roles and
the tenant switcher. A partial (an htmx fragment) shows none of it, so it queries nothing."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from portal.htmx import wants_partial
from portal.navigation import navigation_sections
from tenants import permissions, selectors
from tenants.access import current_tenant


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    context = {"site_name": settings.SITE_NAME, "local_login": settings.LOCAL_LOGIN,
               "support_email": settings.SUPPORT_EMAIL}
    if user is None or not user.is_authenticated or wants_partial(request):
        return context
    tenants = selectors.tenants_for_switcher(user=user)
    current = current_tenant(request, tenants)
    return {
        **context,
        "nav_sections": navigation_sections(request, tenant=current),
        "switcher_tenants": tenants,
        "current_tenant": current,
        "current_tenant_role": permissions.tenant_role(user, current) if current else None,
        "platform_roles": sorted(permissions.platform_roles(user)),
    }
