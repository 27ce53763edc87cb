"""Bulk key revokes: a tenant's keys, a person's, or those allowed to a model (in one tenant,
or across tenants for the MSP) — listed first, revoked as one audit event, on the pages and
through the API."""

import json
from types import SimpleNamespace

import pytest

from audit.models import AuditEvent
from gateway import services
from gateway.models import ApiKey
from models_catalog import services as catalog_services
from tenants.models import TenantRole
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    return catalog_services.model_create(actor="system:test", slug="chat-small",
                                         name="Chat Small", task="chat")


@pytest.fixture
def keys(tenant, other_tenant, developer, tenant_admin, model):
    def make(owner, tenant, name, **extra):
        return services.apikey_create(actor="system:test", tenant=tenant, owner=owner,
                                      name=name, **extra)[0]

    theirs_owner = MembershipFactory(tenant=other_tenant, role=TenantRole.DEVELOPER,
                                     user=UserFactory(email="dev@globex.test")).user
    return {
        "dev_any": make(developer, tenant, "dev any"),
        "dev_chat": make(developer, tenant, "dev chat", allowed_models=[model]),
        "admin_chat": make(tenant_admin, tenant, "admin chat", allowed_models=[model]),
        "theirs_chat": make(theirs_owner, other_tenant, "theirs chat", allowed_models=[model]),
        "theirs_any": make(theirs_owner, other_tenant, "theirs any"),
    }


def post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def revoked(keys):
    return {name for name, key in keys.items() if ApiKey.objects.get(pk=key.pk).revoked_at}


def test_a_dry_run_lists_then_one_audit_event_revokes_a_persons_keys(
        client, tenant, tenant_admin, developer, keys):
    client.force_login(tenant_admin)
    url = f"/api/tenants/{tenant.slug}/keys/bulk-revoke/"
    events = AuditEvent.objects.count()
    listed = post(client, url, {"owner": developer.pk})
    assert listed.status_code == 200
    body = listed.json()
    assert body["dry_run"] is True and body["count"] == 2 and body["audit_event"] is None
    assert {k["name"] for k in body["keys"]} == {"dev any", "dev chat"}
    assert revoked(keys) == set() and AuditEvent.objects.count() == events

    ids = [k["id"] for k in body["keys"]]
    done = post(client, url, {"owner": developer.pk, "dry_run": False, "key_ids": ids}).json()
    assert done["dry_run"] is False and done["count"] == 2
    assert revoked(keys) == {"dev_any", "dev_chat"}
    assert AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.get(seq=done["audit_event"])
    assert event.action == "apikey.bulk_revoked"
    assert sorted(event.details["key_ids"]) == sorted(ids)
    assert event.details["count"] == 2 and event.details["scope"]["owner"] == "dev@acme.test"
    assert event.tenant_id == tenant.pk
    # Nothing left to revoke: no second event.
    again = post(client, url, {"owner": developer.pk, "dry_run": False}).json()
    assert again["count"] == 0 and again["audit_event"] is None


def test_keys_allowed_to_a_model_and_a_whole_tenant(client, tenant, tenant_admin, keys):
    client.force_login(tenant_admin)
    url = f"/api/tenants/{tenant.slug}/keys/bulk-revoke/"
    listed = post(client, url, {"model": "chat-small"}).json()
    assert {k["name"] for k in listed["keys"]} == {"dev chat", "admin chat"}
    post(client, url, {"model": "chat-small", "dry_run": False})
    assert revoked(keys) == {"dev_chat", "admin_chat"}
    whole = post(client, url, {"dry_run": False}).json()
    assert [k["name"] for k in whole["keys"]] == ["dev any"]
    assert revoked(keys) == {"dev_chat", "admin_chat", "dev_any"}  # globex untouched


def test_the_dry_run_list_bounds_the_revoke(client, tenant, tenant_admin, developer, keys):
    client.force_login(tenant_admin)
    url = f"/api/tenants/{tenant.slug}/keys/bulk-revoke/"
    listed = post(client, url, {}).json()
    # A key created after the dry run is not revoked unseen.
    late = services.apikey_create(actor="system:test", tenant=tenant, name="late")[0]
    post(client, url, {"dry_run": False, "key_ids": [k["id"] for k in listed["keys"]]})
    assert ApiKey.objects.get(pk=late.pk).revoked_at is None


def test_tenant_isolation_and_roles(client, tenant, other_tenant, tenant_admin, viewer,
                                    developer, outsider, keys):
    url = f"/api/tenants/{tenant.slug}/keys/bulk-revoke/"
    client.force_login(outsider)  # another tenant's admin
    assert post(client, url, {"dry_run": False}).status_code == 404
    client.force_login(viewer)
    assert post(client, url, {}).status_code == 403
    client.force_login(developer)
    assert post(client, url, {"dry_run": False}).status_code == 403
    assert client.get(f"/t/{tenant.slug}/keys/bulk-revoke/").status_code == 403
    client.force_login(tenant_admin)
    # Another tenant's person is nobody here; so is another tenant's (unentitled) model.
    theirs = keys["theirs_chat"].owner
    assert post(client, url, {"owner": theirs.pk, "dry_run": False}).status_code == 404
    assert post(client, f"/api/tenants/{other_tenant.slug}/keys/bulk-revoke/",
                {"dry_run": False}).status_code == 404
    assert client.get(f"/t/{other_tenant.slug}/keys/bulk-revoke/").status_code == 404
    assert post(client, "/api/models/chat-small/keys/bulk-revoke/", {}).status_code == 403
    assert revoked(keys) == set()


def test_the_msp_revokes_a_models_keys_across_tenants(client, msp_admin, keys):
    client.force_login(msp_admin)
    url = "/api/models/chat-small/keys/bulk-revoke/"
    listed = post(client, url, {}).json()
    assert {(k["tenant"], k["name"]) for k in listed["keys"]} == {
        ("acme", "dev chat"), ("acme", "admin chat"), ("globex", "theirs chat")}
    done = post(client, url, {"dry_run": False}).json()
    assert revoked(keys) == {"dev_chat", "admin_chat", "theirs_chat"}
    event = AuditEvent.objects.get(seq=done["audit_event"])
    assert event.tenant_id is None and event.details["tenants"] == ["acme", "globex"]
    assert len(event.details["key_ids"]) == 3
    assert post(client, "/api/models/nope/keys/bulk-revoke/", {}).status_code == 404


def test_the_pages_list_first_then_revoke(client, tenant, tenant_admin, developer, keys):
    client.force_login(tenant_admin)
    url = f"/t/{tenant.slug}/keys/bulk-revoke/"
    assert f'href="{url}"' in client.get(f"/t/{tenant.slug}/keys/").content.decode()
    page = client.get(url)
    assert page.status_code == 200 and "Revoke keys in bulk" in page.content.decode()
    preview = client.post(url, {"owner": developer.pk, "model": "", "action": "preview"},
                          HTTP_HX_REQUEST="true").content.decode()
    assert "2 keys would be revoked" in preview and "dev chat" in preview
    assert revoked(keys) == set()
    ids = ",".join(str(keys[name].pk) for name in ("dev_any", "dev_chat"))
    assert f'name="key_ids" value="{ids}"' in preview
    done = client.post(url, {"owner": developer.pk, "key_ids": ids, "action": "revoke"},
                       HTTP_HX_REQUEST="true").content.decode()
    assert "2 keys revoked" in done
    assert revoked(keys) == {"dev_any", "dev_chat"}


def test_the_msp_page_across_tenants(client, msp_admin, tenant_admin, keys):
    client.force_login(msp_admin)
    page = client.get("/msp/keys/bulk-revoke/?model=chat-small").content.decode()
    assert '<option value="chat-small" selected>' in page
    preview = client.post("/msp/keys/bulk-revoke/", {"model": "chat-small",
                                                     "action": "preview"}).content.decode()
    assert "3 keys would be revoked" in preview and "Globex" in preview
    client.post("/msp/keys/bulk-revoke/", {"model": "chat-small", "action": "revoke",
                                           "key_ids": str(keys["theirs_chat"].pk)})
    assert revoked(keys) == {"theirs_chat"}
    client.force_login(tenant_admin)
    assert client.get("/msp/keys/bulk-revoke/").status_code == 403


def test_compliance_reports_count_bulk_revoked_keys(tenant, other_tenant, msp_admin, keys):
    from datetime import timedelta

    from django.utils import timezone

    from audit.reports.sections import ReportScope
    from gateway.report_sections import api_keys

    services.apikeys_bulk_revoke(actor=msp_admin, tenant=None, model=keys["dev_chat"]
                                 .allowed_models.get())
    services.apikeys_bulk_revoke(actor=msp_admin, tenant=tenant)
    now = timezone.now()
    period = SimpleNamespace(start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    def scope(tenant=None):
        return ReportScope(period=period, tenant_id=tenant.pk if tenant else None,
                           tenant_slug=tenant.slug if tenant else "", generated_at=now)

    platform = api_keys(scope())
    assert platform.figures["Revoked"] == 4 and platform.figures["Bulk revokes"] == 2
    acme = api_keys(scope(tenant))
    assert acme.figures["Revoked"] == 3 and acme.figures["Bulk revokes"] == 2
    globex = api_keys(scope(other_tenant))
    assert globex.figures["Revoked"] == 1 and globex.figures["Bulk revokes"] == 1
