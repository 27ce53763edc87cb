import pytest
from django.urls import reverse

from audit.models import AuditEvent
from tenants.models import Invitation, Membership, Tenant, TenantRole
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_create_tenant_form_shows_field_errors_and_keeps_input(client, msp_admin):
    client.force_login(msp_admin)
    response = client.post("/msp/tenants/new/", {
        "name": "Bad Co", "slug": "Bad Slug!", "contact_email": "not-an-email",
        "jurisdiction": "Germany", "max_gpus": -1, "max_api_keys": 5, "budget_currency": "EUR"})
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) == {"slug", "contact_email", "jurisdiction", "max_gpus"}
    assert b'value="Bad Co"' in response.content  # nothing typed is lost
    assert not Tenant.objects.exists()


def test_duplicate_slug_is_a_field_error(client, msp_admin, tenant):
    client.force_login(msp_admin)
    response = client.post("/msp/tenants/new/", {
        "name": "Other", "slug": tenant.slug, "contact_email": "a@b.test", "jurisdiction": "DE",
        "max_gpus": 0, "max_api_keys": 5, "budget_currency": "EUR"})
    assert "slug" in response.context["form"].errors


def test_edit_records_only_changed_fields(client, msp_admin, tenant):
    client.force_login(msp_admin)
    response = client.post(f"/msp/tenants/{tenant.slug}/edit/", {
        "name": tenant.name, "contact_email": tenant.contact_email, "jurisdiction": "EU",
        "max_gpus": 8, "max_api_keys": tenant.max_api_keys, "budget_currency": "EUR",
        "default_monthly_budget": "2500.00", "slug": "ignored-because-disabled"})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.slug, tenant.jurisdiction, tenant.max_gpus) == ("acme", "EU", 8)
    quota_event = AuditEvent.objects.get(action="tenant.quotas_changed")
    assert set(quota_event.details["changes"]) == {"max_gpus", "default_monthly_budget"}
    assert AuditEvent.objects.get(action="tenant.updated").details["changes"] == {
        "jurisdiction": {"from": "DE", "to": "EU"}}


def test_tenant_list_htmx_returns_the_table_partial(client, msp_admin, tenant, other_tenant):
    client.force_login(msp_admin)
    response = client.get("/msp/tenants/?q=glob", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="tenant-table"')
    assert "Globex Health" in body and "Acme Research" not in body
    full = client.get("/msp/tenants/").content.decode()
    assert "<html" in full and "Acme Research" in full and "Globex Health" in full


def test_invite_via_htmx_rerenders_members_with_the_invitation(
        client, tenant_admin, tenant, django_capture_on_commit_callbacks):
    client.force_login(tenant_admin)
    with django_capture_on_commit_callbacks():
        response = client.post(f"/t/{tenant.slug}/members/invite/",
                               {"email": "friend@acme.test", "role": "developer"},
                               HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="members"')
    assert "friend@acme.test" in body and "Invitation sent" in body
    assert Invitation.objects.filter(email="friend@acme.test", tenant=tenant).exists()


def test_invite_with_bad_email_shows_the_error_in_the_partial(client, tenant_admin, tenant):
    client.force_login(tenant_admin)
    response = client.post(f"/t/{tenant.slug}/members/invite/",
                           {"email": "nope", "role": "developer"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "Enter a valid email address" in response.content.decode()
    assert 'value="nope"' in response.content.decode()


def test_demoting_the_last_admin_explains_why(client, tenant_admin, tenant):
    client.force_login(tenant_admin)
    membership = Membership.objects.get(user=tenant_admin)
    response = client.post(f"/t/{tenant.slug}/members/{membership.pk}/role/",
                           {"role": "viewer"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "last tenant admin" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == TenantRole.TENANT_ADMIN


def test_home_sends_people_where_their_work_starts(client, msp_admin, compliance_officer,
                                                  developer, tenant, django_user_model):
    client.force_login(msp_admin)
    assert client.get("/").url == reverse("tenants:list")
    client.force_login(compliance_officer)
    assert client.get("/").url == reverse("audit:list")
    client.force_login(developer)
    assert client.get("/").url == f"/t/{tenant.slug}/"
    loner = django_user_model.objects.create_user("loner@example.test", "x")
    client.force_login(loner)
    assert "not part of any tenant" in client.get("/").content.decode()


def test_switching_tenant_changes_navigation_and_start_page(client, tenant, other_tenant):
    person = MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER).user
    MembershipFactory(tenant=other_tenant, user=person, role=TenantRole.VIEWER)
    client.force_login(person)
    page = client.get(f"/t/{other_tenant.slug}/").content.decode()
    assert f'href="/t/{other_tenant.slug}/members/"' in page
    assert f'href="/t/{tenant.slug}/"' in page  # the other tenant is offered in the switcher
    assert client.get("/").url == f"/t/{other_tenant.slug}/"  # remembered


def test_msp_admin_without_mfa_is_sent_to_set_it_up(client, db, django_user_model):
    from tenants.models import PlatformRole, PlatformRoleGrant

    admin = django_user_model.objects.create_user("new-msp@example.test", "x")
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    client.force_login(admin)
    response = client.get("/msp/tenants/")
    assert response.status_code == 302 and response.url == reverse("mfa_activate_totp")
    assert client.get("/api/tenants/").status_code == 403
