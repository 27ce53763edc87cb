"""A CI pipeline authenticated by a service account's client-credentials token (from the test
OpenID Provider) creates, lists, rotates and revokes its tenant's API keys through /api/; the
key works on /v1 through the real gateway; pages say which service account owns it."""

import re

import pytest
import requests
from drf_spectacular.generators import SchemaGenerator

from audit.models import AuditEvent
from gateway.models import ApiKey
from tenants.models import TenantRole
from tests.factories import MembershipFactory, UserFactory

PRINCIPAL = "kc:ci-acme"  # provider id : client id, as configured in tests/identity/conftest


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def ci(client, sso, tenant):
    """The test client speaking for the `ci-acme` service account (a developer of acme)."""
    token = sso["kc"].client_credentials_token("ci-acme")

    def call(method: str, path: str, data=None):
        return getattr(client, method)(path, data, content_type="application/json",
                                       headers=_bearer(token))
    return call


def test_a_service_account_creates_lists_rotates_and_revokes_its_keys(ci, client, tenant):
    created = ci("post", "/api/tenants/acme/keys/", {"name": "ci-pipeline"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"].startswith("smp_")
    assert body["service_account"] == PRINCIPAL and body["owner"] is None
    key = ApiKey.objects.get(pk=body["id"])
    assert key.service_account == PRINCIPAL and key.owner is None

    listed = ci("get", "/api/tenants/acme/keys/")
    assert listed.status_code == 200
    listed_keys = listed.json()
    assert [(k["id"], k["service_account"]) for k in listed_keys] == [(key.pk, PRINCIPAL)]

    rotated = ci("post", f"/api/tenants/acme/keys/{key.pk}/rotate/", {"grace_seconds": 0})
    assert rotated.status_code == 200, rotated.content
    assert rotated.json()["key"] != body["key"]

    revoked = ci("post", f"/api/tenants/acme/keys/{key.pk}/revoke/")
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["status"] == "revoked"

    events = AuditEvent.objects.filter(target_id=str(key.pk), action__startswith="apikey.")
    assert [e.action for e in events.order_by("seq")] == [
        "apikey.created", "apikey.rotated", "apikey.revoked"]
    assert {e.actor_label for e in events} == {f"service-account:{PRINCIPAL}"}
    assert events.get(action="apikey.created").details["service_account"] == PRINCIPAL


def test_a_service_accounts_key_is_its_own_a_developer_cannot_touch_it(ci, client, tenant,
                                                                      tenant_admin):
    key_id = ci("post", "/api/tenants/acme/keys/", {"name": "ci-pipeline"}).json()["id"]
    people_key = ApiKey.objects.create(tenant=tenant, name="someone-else", prefix="abcdefgh12",
                                       secret_hash="0" * 64, owner=tenant_admin)
    developer = MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER,
                                  user=UserFactory(email="dev2@acme.test")).user

    # The service account (a developer) may not change a person's key …
    assert ci("post", f"/api/tenants/acme/keys/{people_key.pk}/revoke/").status_code == 403
    # … nor may another developer change the service account's key; its tenant admin may.
    client.force_login(developer)
    assert client.post(f"/api/tenants/acme/keys/{key_id}/revoke/").status_code == 403
    client.force_login(tenant_admin)
    page = client.get("/t/acme/keys/").content.decode()
    assert "service account ci-acme (kc)" in page
    assert client.post(f"/api/tenants/acme/keys/{key_id}/revoke/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_key_made_by_a_service_account_works_on_v1_through_the_gateway(ci, served):
    created = ci("post", "/api/tenants/acme/keys/", {"name": "ci-pipeline",
                                                     "allowed_models": ["chat-small"]})
    assert created.status_code == 201, created.content

    models = requests.get(served.base + "/models", headers=_bearer(created.json()["key"]),
                          timeout=10)

    assert models.status_code == 200, models.text
    assert [m["id"] for m in models.json()["data"]] == ["chat-small"]


# Every path parameter gets a value of its tenant (or a missing id); every GET gets a valid
# usage range, which the endpoints that don't take one ignore.
RANGE = "?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&group_by=key"


def _filled(path: str, key_id: int) -> str:
    values = {"slug": "acme", "tenant_slug": "acme", "id": str(key_id)}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], "1"), path) + RANGE


def test_no_api_read_answers_a_service_account_with_a_server_error(ci):
    """Every GET of the schema, as a service account: a User-only code path is a 500."""
    key_id = ci("post", "/api/tenants/acme/keys/", {"name": "ci-pipeline"}).json()["id"]
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]

    answers = {path: ci("get", _filled(path, key_id)).status_code
               for path, operations in paths.items() if "get" in operations}

    assert answers and not {p: s for p, s in answers.items() if s >= 500}
    assert answers["/api/tenants/{slug}/keys/"] == answers["/api/tenants/{slug}/usage/"] == 200
