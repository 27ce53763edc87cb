"""Who may do what, on every page and endpoint of the foundation.

Each row: method, URL (with `{slug}` for the tenant, `{member}` / `{invitation}` for its
objects), and the expected status per person. `login` means a redirect to the sign-in page.
Anonymous API calls get 403 (DRF's answer for session authentication without a session).
"""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.budgets import services as budgets
from billing.models import WebhookEndpoint
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from portal import crypto
from tenants.models import Invitation, Membership, TenantRole
from tests.factories import MembershipFactory, UserFactory

PEOPLE = ["anonymous", "outsider", "viewer", "developer", "tenant_admin", "compliance_officer",
          "msp_admin"]

# (method, url, body, {person: expected}); people not listed expect the "default" entry.
READ_PAGE = {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 200}
ADMIN_PAGE_200 = {"anonymous": "login", "outsider": 404, "compliance_officer": 404,
                  "viewer": 403, "developer": 403, "default": 200}
ADMIN_PAGE_302 = {**ADMIN_PAGE_200, "default": 302}
READ_API = {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}
ADMIN_API = {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
             "developer": 403, "default": 200}
PAGES = [
    ("get", "/msp/tenants/", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("get", "/msp/tenants/new/", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("post", "/msp/tenants/new/",
     {"name": "New Co", "slug": "new-co", "contact_email": "a@new.test", "jurisdiction": "DE",
      "max_gpus": 0, "max_api_keys": 5, "budget_currency": "EUR"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("get", "/msp/tenants/{slug}/", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("get", "/msp/tenants/{slug}/edit/", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("post", "/msp/tenants/{slug}/suspend/", {"reason": "test"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("get", "/t/{slug}/", None,
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("get", "/t/{slug}/members/", None,
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("post", "/t/{slug}/members/invite/", {"email": "new@acme.test", "role": "developer"},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 302}),
    ("post", "/t/{slug}/members/{member}/role/", {"role": "viewer"},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 302}),
    ("post", "/t/{slug}/members/{member}/remove/", {},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 302}),
    ("post", "/t/{slug}/invitations/{invitation}/revoke/", {},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 302}),
    ("get", "/t/{slug}/keys/", None,
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("post", "/t/{slug}/keys/new/", {"name": "from the page"},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "default": 200}),
    ("post", "/t/{slug}/keys/{key}/revoke/", {},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 200}),
    ("post", "/t/{slug}/keys/{key}/rotate/", {"grace_hours": "1"},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 200}),
    ("get", "/t/{slug}/usage/", None, READ_PAGE),
    ("get", "/t/{slug}/usage/?range=30&csv=keys", None, READ_PAGE),
    ("get", "/msp/usage/", None, {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("get", "/msp/usage/?csv=tenants", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("get", "/t/{slug}/budgets/", None, READ_PAGE),
    ("post", "/t/{slug}/budgets/new/",
     {"name": "From the page", "unit": "tokens", "amount": "1000", "period": "monthly",
      "thresholds": "50, 100", "action": "notify"}, ADMIN_PAGE_302),
    ("get", "/t/{slug}/budgets/{budget}/edit/", None, ADMIN_PAGE_200),
    ("post", "/t/{slug}/budgets/{budget}/delete/", {}, ADMIN_PAGE_302),
    ("get", "/t/{slug}/notifications/", None, READ_PAGE),
    ("post", "/t/{slug}/notifications/read/", {},
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 302}),
    ("get", "/t/{slug}/webhooks/", None, READ_PAGE),
    ("post", "/t/{slug}/webhooks/{webhook}/test/", {}, ADMIN_PAGE_302),
    ("post", "/t/{slug}/webhooks/{webhook}/delete/", {}, ADMIN_PAGE_302),
    ("get", "/t/{slug}/statements/", None, ADMIN_PAGE_200),
    ("get", "/t/{slug}/statements/{month}/", None, ADMIN_PAGE_200),
    ("get", "/t/{slug}/statements/{month}.csv", None, ADMIN_PAGE_200),
    ("get", "/t/{slug}/statements/{month}.pdf", None, ADMIN_PAGE_200),
    ("get", "/msp/statements/", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("post", "/msp/statements/close/", {"month": "2020-01"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("get", "/audit/", None,
     {"anonymous": "login", "msp_admin": 200, "compliance_officer": 200, "default": 403}),
    # Model catalog: tenants browse entitled models; the operator's staff see everything.
    ("get", "/t/{slug}/models/", None,
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("get", "/t/{slug}/models/{model}/", None,
     {"anonymous": "login", "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("get", "/catalog/", None,
     {"anonymous": "login", "msp_admin": 200, "compliance_officer": 200, "default": 403}),
    ("get", "/catalog/{model}/", None,
     {"anonymous": "login", "msp_admin": 200, "compliance_officer": 200, "default": 403}),
    ("get", "/catalog/{model}/v/{version}/", None,
     {"anonymous": "login", "msp_admin": 200, "compliance_officer": 200, "default": 403}),
    ("get", "/catalog/upload/", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("post", "/catalog/{model}/lifecycle/", {"lifecycle": "deprecated"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("post", "/catalog/{model}/entitlements/", {"all_tenants": "on"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("post", "/catalog/{model}/prices/",
     {"input_per_million": "1", "output_per_million": "2", "currency": "EUR"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("post", "/catalog/{model}/v/{version}/reject/", {"reason": "not needed"},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    # Clusters and deployments: the MSP admin's alone.
    ("get", "/msp/clusters/", None, {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("get", "/msp/clusters/new/", None, {"anonymous": "login", "msp_admin": 200,
                                         "default": 403}),
    ("get", "/msp/clusters/{cluster}/", None, {"anonymous": "login", "msp_admin": 200,
                                               "default": 403}),
    ("get", "/msp/clusters/{cluster}/edit/", None, {"anonymous": "login", "msp_admin": 200,
                                                    "default": 403}),
    ("get", "/msp/deployments/", None, {"anonymous": "login", "msp_admin": 200,
                                        "default": 403}),
    ("get", "/msp/deployments/new/", None, {"anonymous": "login", "msp_admin": 200,
                                            "default": 403}),
    ("get", "/msp/deployments/{deployment}/", None, {"anonymous": "login", "msp_admin": 200,
                                                     "default": 403}),
    ("get", "/msp/deployments/{deployment}/manifest.yaml", None,
     {"anonymous": "login", "msp_admin": 200, "default": 403}),
    ("post", "/msp/deployments/{deployment}/stop/", {},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
    ("post", "/msp/deployments/{deployment}/scale/", {"min_replicas": 1, "max_replicas": 2},
     {"anonymous": "login", "msp_admin": 302, "default": 403}),
]

API = [
    ("get", "/api/tenants/", None, {"anonymous": 401, "default": 200}),
    ("post", "/api/tenants/",
     {"name": "New Co", "slug": "new-co", "contact_email": "a@new.test", "jurisdiction": "DE"},
     {"anonymous": 401, "msp_admin": 201, "default": 403}),
    ("get", "/api/tenants/{slug}/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("patch", "/api/tenants/{slug}/", {"max_gpus": 4},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "msp_admin": 200,
      "default": 403}),
    ("post", "/api/tenants/{slug}/suspend/", {},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "msp_admin": 200,
      "default": 403}),
    ("get", "/api/tenants/{slug}/members/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("patch", "/api/tenants/{slug}/members/{member}/", {"role": "viewer"},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 200}),
    ("delete", "/api/tenants/{slug}/members/{member}/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 204}),
    ("get", "/api/tenants/{slug}/invitations/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("post", "/api/tenants/{slug}/invitations/", {"email": "new@acme.test", "role": "viewer"},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 201}),
    ("get", "/api/tenants/{slug}/keys/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("post", "/api/tenants/{slug}/keys/", {"name": "from the api"},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "default": 201}),
    ("get", "/api/tenants/{slug}/keys/{key}/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("post", "/api/tenants/{slug}/keys/{key}/revoke/", {},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 200}),
    ("post", "/api/tenants/{slug}/keys/{key}/rotate/", {"grace_seconds": 60},
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 200}),
    ("get", "/api/tenants/{slug}/usage/?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z",
     None, READ_API),
    ("get", "/api/usage/?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z", None,
     {"anonymous": 401, "msp_admin": 200, "default": 403}),
    ("get", "/api/tenants/{slug}/budgets/", None, READ_API),
    ("post", "/api/tenants/{slug}/budgets/",
     {"name": "From the API", "unit": "tokens", "amount": "5000", "action": "block"},
     {**ADMIN_API, "default": 201}),
    ("get", "/api/tenants/{slug}/budgets/{budget}/", None, READ_API),
    ("patch", "/api/tenants/{slug}/budgets/{budget}/", {"amount": "50.00"}, ADMIN_API),
    ("delete", "/api/tenants/{slug}/budgets/{budget}/", None, {**ADMIN_API, "default": 204}),
    ("get", "/api/tenants/{slug}/budget-alerts/", None, READ_API),
    ("get", "/api/tenants/{slug}/statements/", None, ADMIN_API),
    ("get", "/api/tenants/{slug}/statements/{month}/", None, ADMIN_API),
    ("get", "/api/tenants/{slug}/statements/{month}.csv", None, ADMIN_API),
    ("delete", "/api/tenants/{slug}/invitations/{invitation}/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "viewer": 403,
      "developer": 403, "default": 204}),
    ("get", "/api/tenants/{slug}/models/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("get", "/api/tenants/{slug}/models/{model}/", None,
     {"anonymous": 401, "outsider": 404, "compliance_officer": 404, "default": 200}),
    ("get", "/api/models/", None,
     {"anonymous": 401, "msp_admin": 200, "compliance_officer": 200, "default": 403}),
    ("post", "/api/models/", {"slug": "new-model", "name": "New", "task": "chat"},
     {"anonymous": 401, "msp_admin": 201, "default": 403}),
    ("get", "/api/models/{model}/versions/", None,
     {"anonymous": 401, "msp_admin": 200, "compliance_officer": 200, "default": 403}),
    ("post", "/api/models/{model}/versions/{version}/reject/", {"reason": "not needed"},
     {"anonymous": 401, "msp_admin": 200, "default": 403}),
    ("put", "/api/models/{model}/entitlements/", {"all_tenants": True},
     {"anonymous": 401, "msp_admin": 200, "default": 403}),
    ("get", "/api/clusters/", None, {"anonymous": 401, "msp_admin": 200, "default": 403}),
    ("get", "/api/clusters/{cluster}/", None, {"anonymous": 401, "msp_admin": 200,
                                               "default": 403}),
    ("get", "/api/deployments/", None, {"anonymous": 401, "msp_admin": 200, "default": 403}),
    ("get", "/api/deployments/{deployment}/", None, {"anonymous": 401, "msp_admin": 200,
                                                     "default": 403}),
    ("get", "/api/deployments/{deployment}/manifest/", None,
     {"anonymous": 401, "msp_admin": 200, "default": 403}),
    ("post", "/api/deployments/{deployment}/stop/", {},
     {"anonymous": 401, "msp_admin": 202, "default": 403}),
    ("get", "/api/deployments/gpu-allocation/", None,
     {"anonymous": 401, "msp_admin": 200, "default": 403}),
]


@pytest.fixture(autouse=True)
def _deployment_settings(settings):
    settings.REGISTRY_URL = "https://registry.example.test"
    settings.ALLOWED_JURISDICTIONS = ["DE"]




@pytest.fixture
def world(request, tenant, tenant_admin, developer, viewer, outsider, msp_admin,
          compliance_officer, django_capture_on_commit_callbacks):
    """The tenant with one of every kind of person, a member to act on and an invitation."""
    target = MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER,
                               user=UserFactory(email="target@acme.test"))
    from tenants import services

    with django_capture_on_commit_callbacks(execute=False):
        invitation, _ = services.invitation_create(actor=msp_admin, tenant=tenant,
                                                   email="pending@acme.test", role="viewer")
        # Owned by the target member: a developer who isn't the owner may not change it.
        key, _token = gateway_services.apikey_create(actor=msp_admin, tenant=tenant,
                                                     name="target's key", owner=target.user)
        # A model only this tenant may use, with a version in the gate.
        model = catalog_services.model_create(actor=msp_admin, slug="acme-only",
                                              name="Acme only", task="chat",
                                              available_to_all_tenants=False)
        catalog_services.model_set_entitlements(actor=msp_admin, model=model,
                                                all_tenants=False, tenants=[tenant])
        version = catalog_services.version_create(actor=msp_admin, model=model, version="1.0")
        budget = budgets.budget_create(actor=msp_admin, tenant=tenant, name="Monthly",
                                       amount=Decimal("100"), currency="EUR")
    webhook = WebhookEndpoint.objects.create(tenant=tenant, name="Finance",
                                             url="https://hooks.example.org/budget",
                                             secret_encrypted=crypto.encrypt("whsec_test"))
    people = {name: (None if name == "anonymous" else request.getfixturevalue(name))
              for name in PEOPLE}
    cluster, deployment = _cluster_and_deployment(msp_admin)
    return {"tenant": tenant, "member": target, "invitation": invitation, "key": key,
            "budget": budget, "webhook": webhook, "model": model, "version": version,
            "people": people, "cluster": cluster, "deployment": deployment}


def _cluster_and_deployment(msp_admin):
    """A cluster (never contacted) and a ready deployment on it, as stored rows."""
    from deployments import services as deployment_services
    from deployments.models import DeploymentStatus
    from tests.factories import published_version

    cluster = deployment_services.cluster_create(
        actor=msp_admin, name="matrix", api_url="https://k8s.example.test", jurisdiction="DE",
        credentials="token", gpu_capacity={"NVIDIA-L4": 4})
    deployment = deployment_services.kserve_deployment_build(
        version=published_version(), cluster=cluster, tenant=None,
        runtime="kserve-vllmserver", cpu="4", memory="16Gi")
    deployment.status = DeploymentStatus.READY
    deployment.save()
    return cluster, deployment


def _expected(rule: dict, person: str):
    return rule.get(person, rule["default"])


def _url(template: str, world: dict) -> str:
    return template.format(slug=world["tenant"].slug, member=world["member"].pk,
                           invitation=world["invitation"].pk, key=world["key"].pk,
                           model=world["model"].slug, version=world["version"].version,
                           budget=world["budget"].pk, webhook=world["webhook"].pk,
                           month=f"{datetime.now(UTC):%Y-%m}",
                           cluster=world["cluster"].pk, deployment=world["deployment"].pk)


def _call(client, method, url, body, *, json_body: bool):
    if body is None:
        return getattr(client, method)(url)
    if json_body:
        return getattr(client, method)(url, data=json.dumps(body),
                                       content_type="application/json")
    return getattr(client, method)(url, data=body)


@pytest.mark.parametrize("person", PEOPLE)
@pytest.mark.parametrize("method,url,body,rule", PAGES,
                         ids=[f"{m.upper()} {u}" for m, u, _b, _r in PAGES])
def test_pages(client, world, django_capture_on_commit_callbacks, person, method, url, body,
               rule):
    user = world["people"][person]
    if user:
        client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False):
        response = _call(client, method, _url(url, world), body, json_body=False)
    expected = _expected(rule, person)
    if expected == "login":
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login"))
    else:
        assert response.status_code == expected, response.content[:500]


@pytest.mark.parametrize("person", PEOPLE)
@pytest.mark.parametrize("method,url,body,rule", API,
                         ids=[f"{m.upper()} {u}" for m, u, _b, _r in API])
def test_api(client, world, django_capture_on_commit_callbacks, person, method, url, body, rule):
    user = world["people"][person]
    if user:
        client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False):
        response = _call(client, method, _url(url, world), body, json_body=True)
    assert response.status_code == _expected(rule, person), response.content[:500]


def test_writes_that_succeed_change_state(client, world, django_capture_on_commit_callbacks):
    """The success cells of the matrix are real: the state changed."""
    client.force_login(world["people"]["tenant_admin"])
    member = world["member"]
    client.post(f"/t/{world['tenant'].slug}/members/{member.pk}/role/", {"role": "viewer"})
    member.refresh_from_db()
    assert member.role == TenantRole.VIEWER
    client.post(f"/t/{world['tenant'].slug}/members/{member.pk}/remove/")
    assert not Membership.objects.filter(pk=member.pk).exists()
    client.post(f"/t/{world['tenant'].slug}/invitations/{world['invitation'].pk}/revoke/")
    world["invitation"].refresh_from_db()
    assert world["invitation"].revoked_at is not None


def test_developer_manages_own_keys_and_sees_the_secret_once(client, world):
    developer = world["people"]["developer"]
    client.force_login(developer)
    page = client.post(f"/t/{world['tenant'].slug}/keys/new/", {"name": "mine"}).content.decode()
    assert "shown <strong>only once</strong>" in page and "smp_" in page
    mine = world["tenant"].apikeys.get(name="mine")
    assert mine.owner == developer
    assert client.post(f"/t/{world['tenant'].slug}/keys/{mine.pk}/revoke/").status_code == 200
    mine.refresh_from_db()
    assert mine.revoked_at is not None
    listing = client.get(f"/t/{world['tenant'].slug}/keys/").content.decode()
    assert mine.secret_hash not in listing and "smp_" + mine.prefix in listing


def test_tenant_list_api_shows_only_own_tenants(client, world, other_tenant):
    client.force_login(world["people"]["developer"])
    slugs = [t["slug"] for t in client.get("/api/tenants/").json()]
    assert slugs == [world["tenant"].slug]
    client.force_login(world["people"]["msp_admin"])
    slugs = {t["slug"] for t in client.get("/api/tenants/").json()}
    assert slugs == {world["tenant"].slug, other_tenant.slug}


def test_objects_of_another_tenant_are_404_even_for_their_admin(client, world, outsider,
                                                                 other_tenant):
    """An admin of globex addressing acme's member through globex's URL gets 404."""
    client.force_login(outsider)
    member = world["member"]
    response = client.post(f"/t/{other_tenant.slug}/members/{member.pk}/remove/")
    assert response.status_code == 404
    assert Membership.objects.filter(pk=member.pk).exists()
    response = client.delete(f"/api/tenants/{other_tenant.slug}/invitations/"
                             f"{world['invitation'].pk}/")
    assert response.status_code == 404
    assert Invitation.objects.get(pk=world["invitation"].pk).revoked_at is None
