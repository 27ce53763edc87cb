"""Every way into a session goes through the portal's one sign-in (allauth), and a session
that needs a second factor has passed it — this session, not merely the account."""

import re

import pytest
from django.core import mail
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tenants.models import PlatformRole, PlatformRoleGrant, TenantRole, TenantStatus
from tests.factories import PASSWORD, TOTP_SECRET, MembershipFactory, UserFactory
from tests.support.sessions import force_login_password_only
from tests.totp import totp_code

pytestmark = pytest.mark.django_db


def _callbacks(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _callbacks(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.lookup_str


def test_no_url_signs_anybody_in_outside_the_portal_sign_in():
    """Django's admin login and DRF's browsable-API login each make a password-only
    session: neither is mounted. Signing in is allauth's (accounts/…) alone."""
    foreign = [(route, view) for route, view in _callbacks(get_resolver().url_patterns)
               if view.startswith(("django.contrib.admin", "django.contrib.auth.views",
                                   "rest_framework."))]
    assert foreign == []


def test_django_admin_login_is_not_a_way_in(client, tenant):
    admin = UserFactory(email="root@operator.test", is_superuser=True, is_staff=True)
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    response = client.post("/django-admin/login/?next=/django-admin/",
                           {"username": admin.email, "password": PASSWORD})
    assert response.status_code == 404
    assert "_auth_user_id" not in client.session
    assert client.post(f"/api/tenants/{tenant.slug}/suspend/").status_code in (401, 403)
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.ACTIVE


def test_msp_admin_session_without_the_second_factor_is_sent_to_it(client, msp_admin, tenant):
    """A session made outside the sign-in (as the admin login made them) reaches nothing:
    not the MSP pages, not the API, not the account pages where a password alone could swap
    the authenticator — until the code is entered in this session."""
    force_login_password_only(client, msp_admin)
    step = reverse("mfa_reauthenticate")

    page = client.get("/msp/tenants/")
    assert page.status_code == 302 and page.url == f"{step}?next=%2Fmsp%2Ftenants%2F"
    assert client.post(f"/msp/tenants/{tenant.slug}/suspend/").status_code == 302
    for path in ("/accounts/email/", "/accounts/2fa/", "/accounts/2fa/totp/deactivate/",
                 "/accounts/password/change/", "/"):
        assert client.get(path).url.startswith(step), path
    api = client.post(f"/api/tenants/{tenant.slug}/suspend/")
    assert api.status_code == 403
    assert "has not passed two-factor authentication" in api.json()["detail"]
    assert client.get("/api/tenants/").status_code == 403
    assert client.get("/api/schema/").status_code == 403
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.ACTIVE

    prompt = client.get(f"{step}?next=/msp/tenants/")
    assert prompt.status_code == 200
    assert "this session has not passed two-factor authentication" in prompt.content.decode()
    done = client.post(f"{step}?next=/msp/tenants/", {"code": totp_code(TOTP_SECRET)})
    assert done.status_code == 302 and done.url == "/msp/tenants/"
    assert client.get("/msp/tenants/").status_code == 200
    assert client.get("/api/tenants/").status_code == 200


def test_every_account_with_a_second_factor_needs_it_in_the_session(client, tenant):
    developer = MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER,
                                  user=UserFactory(email="dev-2fa@acme.test", totp=True)).user
    force_login_password_only(client, developer)
    assert client.get(f"/t/{tenant.slug}/keys/").url.startswith(reverse("mfa_reauthenticate"))
    assert client.get(f"/api/tenants/{tenant.slug}/keys/").status_code == 403


def test_a_person_without_a_second_factor_is_not_asked_for_one(client, developer, tenant):
    force_login_password_only(client, developer)
    assert client.get(f"/t/{tenant.slug}/keys/").status_code == 200
    assert client.get(f"/api/tenants/{tenant.slug}/keys/").status_code == 200


def test_staff_and_superusers_must_set_a_second_factor_up(client, tenant):
    root = UserFactory(email="breakglass@operator.test", is_superuser=True)
    force_login_password_only(client, root)
    assert client.get("/").url == reverse("mfa_activate_totp")
    assert client.get("/api/tenants/").status_code == 403


def test_password_sign_in_asks_for_the_code_and_then_lets_the_session_in(client, msp_admin):
    response = client.post("/accounts/login/", {"login": msp_admin.email, "password": PASSWORD})
    assert response.status_code == 302 and response.url == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session
    assert client.get("/msp/tenants/").url.startswith(reverse("account_login"))
    client.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)})
    assert client.get("/msp/tenants/").status_code == 200
    assert client.get("/api/tenants/").status_code == 200


@pytest.mark.django_db(transaction=True)  # allauth announces the new authenticator on commit
def test_setting_the_second_factor_up_counts_for_this_session(client):
    admin = UserFactory(email="first-msp@operator.test")
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    client.post("/accounts/login/", {"login": admin.email, "password": PASSWORD})
    assert client.get("/msp/tenants/").url == reverse("mfa_activate_totp")
    client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    secret = client.get(reverse("mfa_activate_totp")).context["form"].secret
    client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert client.get("/msp/tenants/").status_code == 200


def test_confirming_an_email_address_does_not_skip_the_second_factor(client, db):
    admin = UserFactory(email="unverified-msp@operator.test", totp=True)
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    admin.emailaddress_set.update(verified=False)
    mail.outbox.clear()
    client.post("/accounts/login/", {"login": admin.email, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    link = re.search(r"/accounts/confirm-email/[^/\s]+/", mail.outbox[-1].body).group(0)
    confirmed = client.post(link)
    assert confirmed.status_code == 302 and confirmed.url == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session
    client.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)})
    assert client.get("/msp/tenants/").status_code == 200


def test_a_password_reset_never_signs_anybody_in(client, msp_admin):
    mail.outbox.clear()
    client.post("/accounts/password/reset/", {"email": msp_admin.email})
    link = re.search(r"/accounts/password/reset/key/[^/\s]+/", mail.outbox[-1].body).group(0)
    form_page = client.get(link, follow=True)
    client.post(form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
                {"password1": "A-brand-new-passphrase-7", "password2": "A-brand-new-passphrase-7"})
    msp_admin.refresh_from_db()
    assert msp_admin.check_password("A-brand-new-passphrase-7")
    assert "_auth_user_id" not in client.session
    assert client.get("/msp/tenants/").url.startswith(reverse("account_login"))


def test_an_invitation_link_does_not_sign_anybody_in(client, tenant, tenant_admin):
    from tenants import services

    _invitation, token = services.invitation_create(
        actor=tenant_admin, tenant=tenant, email="invitee@example.test", role=TenantRole.VIEWER)
    assert client.get(f"/invitations/{token}/").status_code == 200
    assert client.post(f"/invitations/{token}/").status_code == 200
    assert "_auth_user_id" not in client.session


def test_local_login_disabled_also_closes_sign_up(client, settings, db):
    settings.LOCAL_LOGIN = "disabled"
    settings.PORTAL_OPEN_SIGNUP = True
    client.post("/accounts/signup/", {"email": "newcomer@example.test",
                                      "password1": "A-long-passphrase-9",
                                      "password2": "A-long-passphrase-9"})
    assert "_auth_user_id" not in client.session
    from tenants.models import User

    assert not User.objects.filter(email="newcomer@example.test").exists()


def test_api_clients_read_the_schema_with_a_bearer_token(client, sso, tenant):
    token = sso["kc"].client_credentials_token("ci-acme")
    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/schema/", headers={"Authorization": "Bearer not-a-jwt"}
                      ).status_code == 401
    response = client.get("/api/schema/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and b"/api/tenants/" in response.content
