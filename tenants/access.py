"""View decorators that apply `tenants.permissions` once, at the door of every page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from tenants import permissions, selectors
from tenants.models import Tenant
from tenants.permissions import PlatformPerm, TenantPerm

CURRENT_TENANT_SESSION_KEY = "portal_current_tenant"


def current_tenant(request, tenants: list) -> Tenant | None:
    """The tenant the person works in now: the page's, else the last one they opened (of
    `tenants`, theirs), else their first."""
    tenant = getattr(request, "tenant", None)
    if tenant is not None:
        return tenant
    remembered = request.session.get(CURRENT_TENANT_SESSION_KEY)
    return next((t for t in tenants if t.slug == remembered), tenants[0] if tenants else None)


def platform_view(perm: PlatformPerm) -> Callable:
    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not permissions.has_platform_perm(request.user, perm):
                raise PermissionDenied("This page is for the platform operator's staff.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def tenant_view(perm: TenantPerm) -> Callable:
    """Resolve `<slug:tenant_slug>` into `request.tenant` (404 for outsiders), then check `perm`
    (403 for members whose role lacks it)."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request, tenant_slug: str, *args, **kwargs):
            tenant = selectors.tenant_get(user=request.user, slug=tenant_slug)
            if not permissions.has_tenant_perm(request.user, tenant, perm):
                raise PermissionDenied("Your role in this tenant does not allow this.")
            request.tenant = tenant
            request.tenant_role = permissions.tenant_role(request.user, tenant)
            if request.session.get(CURRENT_TENANT_SESSION_KEY) != tenant.slug:
                request.session[CURRENT_TENANT_SESSION_KEY] = tenant.slug
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
