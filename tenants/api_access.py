"""Who may call which REST endpoint: one DRF permission class and two base views, built on
`tenants.permissions` (which stays the one place where roles become permissions).

A view says what each HTTP method needs, and nothing else:

    class BudgetListApi(TenantApi):
        tenant_perms = {"GET": TenantPerm.BUDGETS_VIEW, "POST": TenantPerm.BUDGETS_MANAGE}

        def get(self, request, slug):
            return self.paginate(selectors.budget_rows(tenant=self.tenant),
                                 BudgetOutputSerializer)

    class ClusterListApi(PortalApi):
        platform_perms = {"GET": PlatformPerm.DEPLOYMENTS_MANAGE, "POST": …}

The rules `PortalAccess` applies, in this order, before the handler runs:

1. Not signed in (no session, no valid bearer token): 401.
2. On a `TenantApi`, the tenant in the URL (`tenant_url_kwarg`) must be one the caller can
   see, else 404 — exactly like a tenant that does not exist. It is then `self.tenant`.
3. `tenant_perms[method]`: the caller's role in that tenant must grant it, else 403.
4. `platform_perms[method]`: the caller's platform roles must grant it, else 403.

A method named in neither map is refused (403): a new handler is closed until it says what it
needs. `None` as a value means "signed in (and, on a `TenantApi`, seeing the tenant) is
enough". OPTIONS (DRF's metadata, no data) and methods the view has no handler for (405) are
left alone. HEAD needs what GET needs.

Rules about one object, decided after it is loaded (so a missing or other tenant's object is
still a 404 first), go in `object_tenant_perms[method]` and are checked when the handler calls
`self.check_object_permissions(request, obj)`; or in an extra permission class with
`has_object_permission` (see `gateway.api.CanManageKey`).

Lists answer one page at a time: `self.paginate(items, SerializerClass)` with
`portal.api.PortalPagination` (`?limit=&offset=`; the body is the page's array, the
`X-Total-Count` and `Link` headers say where it sits). Declare the GET's response as
`Serializer(many=True)` in `extend_schema` and the schema documents the parameters and the
headers by itself.

A request body is read with `self.validated(SerializerClass)`: its `validated_data`, or a 400
with the serializer's errors.

A query parameter holding text PostgreSQL can't store (NUL, a lone surrogate) is a 400 on
every `PortalApi`, as it is in a body (`portal/parsers.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api import PortalPagination
from portal.text import holds_unstorable_text
from tenants import permissions, selectors
from tenants.models import Tenant
from tenants.permissions import PlatformPerm, TenantPerm

TENANT_DENIED = "Your role in this tenant does not allow this."
PLATFORM_DENIED = "Only the platform operator's staff may do this."
UNDECLARED = "This endpoint does not allow this method for anyone."


def _needs(perms: Mapping[str, object], method: str) -> tuple[bool, object]:
    """(declared, permission) for the method; HEAD needs what GET needs."""
    if method == "HEAD" and "HEAD" not in perms:
        method = "GET"
    return method in perms, perms.get(method)


class PortalAccess(BasePermission):
    """Applies a `PortalApi` view's `tenant_perms` and `platform_perms` (see the module)."""

    message = PLATFORM_DENIED

    def has_permission(self, request: Request, view) -> bool:
        method = request.method.upper()
        if method == "OPTIONS" or not hasattr(view, method.lower()):
            return True
        tenant_declared, tenant_perm = _needs(view.tenant_perms, method)
        platform_declared, platform_perm = _needs(view.platform_perms, method)
        if isinstance(view, TenantApi):
            view.tenant = selectors.tenant_get(user=request.user,
                                               slug=view.kwargs[view.tenant_url_kwarg])
        if not (tenant_declared or platform_declared):
            self.message = UNDECLARED
            return False
        if tenant_perm is not None and not permissions.has_tenant_perm(
                request.user, view.tenant, tenant_perm):
            self.message = view.tenant_denied_message
            return False
        if platform_perm is not None and not permissions.has_platform_perm(request.user,
                                                                           platform_perm):
            self.message = view.platform_denied_message
            return False
        return True

    def has_object_permission(self, request: Request, view, obj) -> bool:
        _declared, perm = _needs(view.object_tenant_perms, request.method.upper())
        if perm is not None and not permissions.has_tenant_perm(request.user, view.tenant, perm):
            self.message = view.tenant_denied_message
            return False
        return True


class PortalApi(APIView):
    """Base view of the REST API (see the module for the rules)."""

    permission_classes = [IsAuthenticated, PortalAccess]
    pagination_class = PortalPagination
    tenant_perms: Mapping[str, TenantPerm | None] = {}
    platform_perms: Mapping[str, PlatformPerm | None] = {}
    object_tenant_perms: Mapping[str, TenantPerm | None] = {}
    tenant_denied_message = TENANT_DENIED
    platform_denied_message = PLATFORM_DENIED

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        # A search or filter can't match text PostgreSQL can't store, and sending it in a
        # query ends in a 500: refuse it like the body parsers do (portal/parsers.py).
        unstorable = sorted(name for name, values in request.query_params.lists()
                            if holds_unstorable_text([name, *values]))
        if unstorable:
            raise ValidationError({name: ["Remove the NUL character (\\u0000) or unpaired "
                                          "surrogate: no query parameter accepts it."]
                                   for name in unstorable})

    def validated(self, serializer_class, **serializer_kwargs) -> dict:
        """The request body checked by `serializer_class` (400 with its errors when it does not
        pass): its `validated_data`."""
        serializer = serializer_class(data=self.request.data, **serializer_kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def paginate(self, items, serializer_class, **serializer_kwargs) -> Response:
        """One page of `items` (a queryset or a list), serialized, with the page headers."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, self.request, view=self)
        return paginator.get_paginated_response(
            serializer_class(page, many=True, **serializer_kwargs).data)


class TenantApi(PortalApi):
    """Base view of the endpoints under `/api/tenants/<slug>/`: `self.tenant` is the URL's
    tenant, one the caller can see (else 404), before the handler runs."""

    tenant_url_kwarg = "slug"
    tenant: Tenant
