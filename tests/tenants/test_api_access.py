"""The REST API's one permission layer (`tenants.api_access`) and its one pagination
(`portal.api.PortalPagination`)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from billing.budgets import services as budgets
from gateway import services as gateway_services
from tenants.api_access import PortalApi, TenantApi
from tenants.models import Tenant
from tenants.permissions import PlatformPerm, TenantPerm

pytestmark = pytest.mark.django_db


class _Probe(TenantApi):
    """A view as another app would write one: it names what each method needs."""

    tenant_perms = {"GET": TenantPerm.TENANT_VIEW, "POST": TenantPerm.BUDGETS_MANAGE}

    def get(self, request: Request, slug: str) -> Response:
        return Response({"tenant": self.tenant.slug})

    def post(self, request: Request, slug: str) -> Response:
        return Response({"written": True})

    def delete(self, request: Request, slug: str) -> Response:  # needs nothing declared
        return Response(status=204)


class _PlatformProbe(PortalApi):
    platform_perms = {"GET": PlatformPerm.TENANTS_MANAGE}

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


def _call(view, method: str, user, **kwargs):
    request = getattr(APIRequestFactory(), method)("/probe/")
    force_authenticate(request, user=user)
    return view.as_view()(request, **kwargs)


def test_tenant_view_resolves_the_tenant_and_applies_the_role(tenant, other_tenant, viewer,
                                                              tenant_admin):
    assert _call(_Probe, "get", viewer, slug=tenant.slug).data == {"tenant": tenant.slug}
    # Another tenant's slug is a 404, exactly like one that does not exist.
    assert _call(_Probe, "get", viewer, slug=other_tenant.slug).status_code == 404
    assert _call(_Probe, "get", viewer, slug="no-such-tenant").status_code == 404
    assert _call(_Probe, "post", viewer, slug=other_tenant.slug).status_code == 404
    # A viewer can't write; the tenant's admin can.
    refused = _call(_Probe, "post", viewer, slug=tenant.slug)
    assert refused.status_code == 403
    assert refused.data["detail"] == "Your role in this tenant does not allow this."
    assert _call(_Probe, "post", tenant_admin, slug=tenant.slug).status_code == 200
    # A method the view did not declare is closed to everyone, even the tenant's admin.
    assert _call(_Probe, "delete", tenant_admin, slug=tenant.slug).status_code == 403


def test_platform_view_needs_the_platform_permission(tenant_admin, msp_admin, compliance_officer):
    assert _call(_PlatformProbe, "get", tenant_admin).status_code == 403
    assert _call(_PlatformProbe, "get", compliance_officer).status_code == 403
    assert _call(_PlatformProbe, "get", msp_admin).status_code == 200
    assert _PlatformProbe.as_view()(APIRequestFactory().get("/probe/")).status_code == 401


def test_budget_endpoints_refuse_other_tenants_and_viewer_writes(client, tenant, other_tenant,
                                                                 viewer):
    theirs = budgets.budget_create(actor="system:test", tenant=other_tenant, name="Theirs",
                                   amount=Decimal(10), currency="EUR")
    ours = budgets.budget_create(actor="system:test", tenant=tenant, name="Ours",
                                 amount=Decimal(10), currency="EUR")
    client.force_login(viewer)
    body = json.dumps({"amount": "20"})
    # Their tenant, or their budget under our tenant's URL: 404 — before any role check.
    assert client.get(f"/api/tenants/{other_tenant.slug}/budgets/").status_code == 404
    assert client.patch(f"/api/tenants/{tenant.slug}/budgets/{theirs.pk}/", body,
                        content_type="application/json").status_code == 404
    # Ours: a viewer reads, but can't write.
    assert client.get(f"/api/tenants/{tenant.slug}/budgets/{ours.pk}/").status_code == 200
    assert client.patch(f"/api/tenants/{tenant.slug}/budgets/{ours.pk}/", body,
                        content_type="application/json").status_code == 403
    assert client.delete(f"/api/tenants/{tenant.slug}/budgets/{ours.pk}/").status_code == 403
    assert client.post(f"/api/tenants/{tenant.slug}/budgets/", json.dumps(
        {"name": "x", "amount": "1", "currency": "EUR"}),
        content_type="application/json").status_code == 403


def test_key_actions_refuse_other_tenants_and_viewers(client, tenant, other_tenant, viewer):
    theirs, _ = gateway_services.apikey_create(actor="system:test", tenant=other_tenant,
                                               name="theirs")
    ours, _ = gateway_services.apikey_create(actor="system:test", tenant=tenant, name="ours")
    client.force_login(viewer)
    assert client.post(f"/api/tenants/{tenant.slug}/keys/{theirs.pk}/revoke/").status_code == 404
    assert client.post(f"/api/tenants/{tenant.slug}/keys/{ours.pk}/revoke/").status_code == 403
    assert client.post(f"/api/tenants/{tenant.slug}/keys/",
                       {"name": "mine"}).status_code == 403


def _keys(tenant, n: int) -> None:
    for i in range(n):
        gateway_services.apikey_create(actor="system:test", tenant=tenant, name=f"key {i}")


def _links(response) -> dict[str, dict[str, list[str]]]:
    """The RFC 8288 `Link` header as {rel: query of its URL}."""
    links = {}
    for part in response.headers.get("Link", "").split(", "):
        if part:
            url, rel = re.fullmatch(r'<([^>]+)>; rel="(\w+)"', part).groups()
            links[rel] = parse_qs(urlsplit(url).query)
    return links


def test_lists_answer_one_page_with_links(client, tenant, tenant_admin):
    _keys(tenant, 5)
    client.force_login(tenant_admin)
    url = f"/api/tenants/{tenant.slug}/keys/"
    first = client.get(url, {"limit": 2})
    assert len(first.json()) == 2 and first.headers["X-Total-Count"] == "5"
    links = _links(first)
    assert links["next"] == {"limit": ["2"], "offset": ["2"]} and "prev" not in links
    assert links["first"] == {"limit": ["2"], "offset": ["0"]}
    assert links["last"] == {"limit": ["2"], "offset": ["4"]}
    next_url = re.search(r'<([^>]+)>; rel="next"', first.headers["Link"]).group(1)
    second = client.get(next_url)
    assert len(second.json()) == 2 and "prev" in _links(second)
    assert {k["id"] for k in first.json()}.isdisjoint(k["id"] for k in second.json())
    last = client.get(url, {"limit": 2, "offset": 4})
    assert len(last.json()) == 1 and "next" not in _links(last)
    # No parameters: the first 50; nonsense is ignored rather than refused.
    default = client.get(url, {"limit": "lots"})
    assert len(default.json()) == 5 and default.headers["X-Total-Count"] == "5"
    assert "next" not in _links(default)


def test_page_size_is_capped(client, msp_admin):
    Tenant.objects.bulk_create(Tenant(slug=f"bulk-{i}", name=f"Bulk {i}",
                                      contact_email="ops@bulk.test") for i in range(520))
    client.force_login(msp_admin)
    page = client.get("/api/tenants/", {"limit": 100_000})
    assert int(page.headers["X-Total-Count"]) >= 520 and len(page.json()) == 500
    assert _links(page)["next"]["limit"] == ["500"]
    assert len(client.get("/api/tenants/").json()) == 50


def test_schema_documents_the_pagination(client, msp_admin):
    client.force_login(msp_admin)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/tenants/{slug}/keys/"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 500 and "offset" in params
    ok = listing["responses"]["200"]
    assert {"X-Total-Count", "Link"} <= set(ok["headers"])
    body = ok["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert body["type"] == "array"
    # One object, or a write, is not paginated.
    detail = schema["paths"]["/api/tenants/{slug}/keys/{id}/"]["get"]
    assert "limit" not in {p["name"] for p in detail.get("parameters", [])}
    assert "headers" not in detail["responses"]["200"]
    create = schema["paths"]["/api/tenants/{slug}/keys/"]["post"]
    assert "limit" not in {p["name"] for p in create.get("parameters", [])}


def test_a_query_with_text_postgresql_cant_store_is_refused(client, msp_admin):
    """Found by the fuzz test: a NUL in a search ended in a 500 (PostgreSQL can't take it)."""
    client.force_login(msp_admin)
    response = client.get("/api/models/", {"q": "chat\x00"})
    assert response.status_code == 400 and "NUL" in response.json()["errors"]["q"][0]
    assert client.get("/api/tenants/", {"q": "acme"}).status_code == 200
