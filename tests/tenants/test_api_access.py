"""The REST API's one permission layer (`tenants.api_access`) and its one pagination
(`portal.api.PortalPagination`)."""

from __future__ import annotations

import json
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


def test_lists_answer_one_page_with_links(client, tenant, tenant_admin):
    _keys(tenant, 5)
    client.force_login(tenant_admin)
    first = client.get(f"/api/tenants/{tenant.slug}/keys/", {"limit": 2}).json()
    assert first["count"] == 5 and len(first["results"]) == 2 and first["previous"] is None
    assert parse_qs(urlsplit(first["next"]).query) == {"limit": ["2"], "offset": ["2"]}
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 2 and second["previous"]
    assert {k["id"] for k in first["results"]}.isdisjoint(k["id"] for k in second["results"])
    last = client.get(f"/api/tenants/{tenant.slug}/keys/", {"limit": 2, "offset": 4}).json()
    assert len(last["results"]) == 1 and last["next"] is None
    # No parameters: the first 50; nonsense is ignored rather than refused.
    default = client.get(f"/api/tenants/{tenant.slug}/keys/", {"limit": "lots"}).json()
    assert default["count"] == 5 and len(default["results"]) == 5 and default["next"] is None


def test_page_size_is_capped(client, msp_admin):
    Tenant.objects.bulk_create(Tenant(slug=f"bulk-{i}", name=f"Bulk {i}",
                                      contact_email="ops@bulk.test") for i in range(520))
    client.force_login(msp_admin)
    page = client.get("/api/tenants/", {"limit": 100_000}).json()
    assert page["count"] >= 520 and len(page["results"]) == 500
    assert parse_qs(urlsplit(page["next"]).query)["limit"] == ["500"]
    assert len(client.get("/api/tenants/").json()["results"]) == 50


def test_schema_documents_the_pagination(client, msp_admin):
    client.force_login(msp_admin)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/tenants/{slug}/keys/"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 500 and "offset" in params
    ref = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    envelope = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"count", "next", "previous", "results"} <= set(envelope["properties"])
    # One object, or a write, is not paginated.
    detail = schema["paths"]["/api/tenants/{slug}/keys/{id}/"]["get"]
    assert "limit" not in {p["name"] for p in detail.get("parameters", [])}
    create = schema["paths"]["/api/tenants/{slug}/keys/"]["post"]
    assert "limit" not in {p["name"] for p in create.get("parameters", [])}


def test_a_query_with_text_postgresql_cant_store_is_refused(client, msp_admin):
    """Found by the fuzz test: a NUL in a search ended in a 500 (PostgreSQL can't take it)."""
    client.force_login(msp_admin)
    response = client.get("/api/models/", {"q": "chat\x00"})
    assert response.status_code == 400 and "NUL" in response.json()["errors"]["q"][0]
    assert client.get("/api/tenants/", {"q": "acme"}).status_code == 200
