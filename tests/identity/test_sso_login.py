"""Single sign-on against real OpenID Providers on loopback: the whole authorization-code +
PKCE flow through the portal, claims → tenants and roles, level of assurance, logout."""

from urllib.parse import parse_qs, urlparse

from allauth.socialaccount.models import SocialAccount

from audit.models import AuditEvent
from tenants.models import Membership, OidcLogin, PlatformRoleGrant, Tenant, TenantStatus, User
from tests.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory
from tests.identity.conftest import EIDAS, person
from tests.openid_provider import sso_login


def _roles(user) -> dict[str, tuple[str, str]]:
    return {m.tenant.slug: (m.role, m.source)
            for m in Membership.objects.filter(user=user).select_related("tenant")}


def _actions(**filters) -> list[str]:
    return list(AuditEvent.objects.filter(**filters).order_by("seq")
                .values_list("action", flat=True))


def test_login_page_shows_one_button_per_provider(client, sso):
    page = client.get("/accounts/login/").content.decode()
    for name in ("Operator Keycloak", "National eID", "Unreachable IdP"):
        assert f"Sign in with {name}" in page
    assert 'name="password"' in page


def test_first_login_creates_user_and_memberships_from_claims(client, sso, tenant, other_tenant):
    sso["kc"].set_accounts({"alice": person(
        "Alice@Acme.test", organization=["acme"], groups=["/tenants/globex/tenant-admin"],
        realm_access={"roles": ["developer", "offline_access"]})})

    result = sso_login(client, "kc", "alice")

    assert result.response.status_code == 302, result.response.content.decode()[:400]
    query = parse_qs(urlparse(result.authorize_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["acr_values"] == ["substantial"]
    user = User.objects.get(email="alice@acme.test")
    assert SocialAccount.objects.get(user=user).provider == "kc"
    assert _roles(user) == {"acme": ("developer", "oidc:kc"),
                            "globex": ("tenant_admin", "oidc:kc")}
    login = OidcLogin.objects.get(user=user)
    assert (login.provider_id, login.issuer, login.subject, login.acr) == (
        "kc", sso["kc"].issuer, "alice", "substantial")
    assert login.access["tenants"]["globex"]["claim"] == "groups: /tenants/globex/tenant-admin"
    assert "organization: acme" in login.access["tenants"]["acme"]["claim"]
    succeeded = AuditEvent.objects.get(action="auth.login_succeeded")
    assert succeeded.details == {"method": "oidc", "provider": "kc", "acr": "substantial",
                                 "amr": ["pwd"]}
    assert _actions(action="membership.created") == ["membership.created"] * 2

    page = client.get("/accounts/identity/").content.decode()
    assert "Operator Keycloak" in page and "groups: /tenants/globex/tenant-admin" in page


def test_changed_claim_updates_and_removed_claim_removes_only_provider_memberships(
        client, sso, tenant, other_tenant, outsider):
    local_tenant = TenantFactory(slug="initech", name="Initech")
    sso["kc"].set_accounts({"alice": person(
        "alice@acme.test", organization=["acme"], groups=["/tenants/globex/developer"])})
    sso_login(client, "kc", "alice")
    user = User.objects.get(email="alice@acme.test")
    MembershipFactory(user=user, tenant=local_tenant, role="viewer")  # given in the portal

    sso["kc"].set_accounts({"alice": person(
        "alice@acme.test", organization=[], groups=["/tenants/acme/tenant-admin"])})
    client.logout()
    result = sso_login(client, "kc", "alice")

    assert result.response.status_code == 302
    assert _roles(user) == {"acme": ("tenant_admin", "oidc:kc"),
                            "initech": ("viewer", "local")}
    changes = _actions(action__startswith="membership.")
    assert changes[-2:] == ["membership.role_changed", "membership.removed"]
    removed = AuditEvent.objects.get(action="membership.removed")
    assert removed.actor_label == "system:oidc:kc" and removed.tenant_slug == "globex"


def test_low_acr_withholds_msp_admin_and_step_up_grants_it(client, sso, tenant):
    sso["kc"].set_accounts({"bob": person(
        "bob@operator.test", organization={"acme": {"id": "1"}},
        realm_access={"roles": ["portal-msp-admin"]})})

    result = sso_login(client, "kc", "bob", acr="substantial")

    assert result.response.status_code == 302
    bob = User.objects.get(email="bob@operator.test")
    assert not PlatformRoleGrant.objects.filter(user=bob).exists()
    assert _roles(bob) == {"acme": ("viewer", "oidc:kc")}
    denial = AuditEvent.objects.get(action="auth.loa_insufficient")
    assert denial.details["withheld"][0]["role"] == "msp_admin"
    assert denial.details["step_up_to"] == "high"
    page = client.get("/accounts/identity/").content.decode()
    assert "needs high" in page and 'id="step-up"' in page
    step_up_action = page.split('action="')[-1].split('"')[0].replace("&amp;", "&")

    result = sso_login(client, "kc", "bob", acr="high", start_url=step_up_action)

    query = parse_qs(urlparse(result.authorize_url).query)
    assert query["acr_values"] == ["high"] and query["prompt"] == ["login"]
    assert result.response.status_code == 302
    assert PlatformRoleGrant.objects.get(user=bob).source == "oidc:kc"
    assert OidcLogin.objects.get(user=bob).acr == "high"
    # The IdP's high-assurance sign-in stands in for the portal's own MFA set-up.
    assert client.get("/").url == "/msp/tenants/"


def test_only_withheld_roles_refuse_the_login_with_a_step_up_page(client, sso):
    sso["kc"].set_accounts({"carol": person(
        "carol@operator.test", acr="low", realm_access={"roles": ["portal-msp-admin"]})})

    result = sso_login(client, "kc", "carol")

    assert result.response.status_code == 403
    body = result.response.content.decode()
    assert "A stronger sign-in is needed" in body and "needs level <strong>high" in body
    assert not User.objects.filter(email="carol@operator.test").exists()
    refused = AuditEvent.objects.get(action="auth.login_refused")
    assert refused.details["reason"] == "level of assurance too low"


def test_unknown_organization_gets_a_clear_page(client, sso):
    sso["kc"].set_accounts({"dave": person("dave@newco.test", organization=["newco"])})

    result = sso_login(client, "kc", "dave")

    assert result.response.status_code == 403
    assert "Your organization is not onboarded" in result.response.content.decode()
    assert not Tenant.objects.filter(slug="newco").exists()
    assert not User.objects.filter(email="dave@newco.test").exists()


def test_two_providers_side_by_side(client, sso, tenant):
    sso["kc"].set_accounts({"alice": person("alice@acme.test", organization=["acme"])})
    sso["eid"].set_accounts({"alice": person(
        "alice@citizen.test", acr=f"{EIDAS}high", groups=["/tenants/acme/developer",
                                                          "/tenants/newco/developer"])})

    sso_login(client, "kc", "alice")
    client.logout()
    result = sso_login(client, "eid", "alice")

    assert result.response.status_code == 302
    # The same `sub` at two issuers is two identities, never merged.
    accounts = SocialAccount.objects.filter(uid="alice").order_by("provider")
    assert [(a.provider, a.user.email) for a in accounts] == [
        ("eid", "alice@citizen.test"), ("kc", "alice@acme.test")]
    citizen = User.objects.get(email="alice@citizen.test")
    # This provider onboards unknown organizations as suspended tenants for MSP review; the
    # person is a member already and works there once an MSP admin reactivates it.
    newco = Tenant.objects.get(slug="newco")
    assert newco.status == TenantStatus.SUSPENDED
    assert _roles(citizen) == {"acme": ("developer", "oidc:eid"),
                               "newco": ("developer", "oidc:eid")}
    assert OidcLogin.objects.get(user=citizen).acr == f"{EIDAS}high"


def test_email_of_an_existing_account_is_never_linked(client, sso):
    local = UserFactory(email="erin@acme.test")
    sso["kc"].set_accounts({"erin": person("erin@acme.test", organization=["acme"])})

    result = sso_login(client, "kc", "erin")

    assert result.response.status_code == 403
    assert "never linked by e-mail address alone" in result.response.content.decode()
    assert not SocialAccount.objects.filter(user=local).exists()


def test_replayed_callback_and_forged_state_are_refused(client, sso, tenant):
    sso["kc"].set_accounts({"alice": person("alice@acme.test", organization=["acme"])})
    result = sso_login(client, "kc", "alice")
    assert result.response.status_code == 302
    client.logout()

    replay = client.get(result.callback_url)
    forged = client.get("/accounts/oidc/kc/login/callback/?code=abc&state=forged")

    for response in (replay, forged):
        assert response.status_code == 400
        assert "Sign-in with Operator Keycloak failed" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert _actions(action="auth.login_succeeded") == ["auth.login_succeeded"]
    assert _actions(action="auth.login_failed") == ["auth.login_failed"] * 2


def test_unreachable_provider_gets_a_clear_page_and_other_logins_still_work(
        client, sso, tenant):
    response = client.post("/accounts/oidc/down/login/")

    assert response.status_code == 502
    assert "can't reach <strong>Unreachable IdP</strong>" in response.content.decode()
    assert client.get("/accounts/login/").status_code == 200
    sso["kc"].set_accounts({"alice": person("alice@acme.test", organization=["acme"])})
    assert sso_login(client, "kc", "alice").response.status_code == 302
    client.logout()
    UserFactory(email="local@acme.test")
    local = client.post("/accounts/login/", {"login": "local@acme.test", "password": PASSWORD})
    assert local.status_code == 302 and client.session["_auth_user_id"]


def test_logout_ends_the_provider_session_too(client, sso, tenant):
    sso["kc"].set_accounts({"alice": person("alice@acme.test", organization=["acme"])})
    sso_login(client, "kc", "alice")

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    end_session = urlparse(response.url)
    assert f"{end_session.scheme}://{end_session.netloc}" == sso["kc"].issuer
    assert end_session.path == "/session/end"
    query = parse_qs(end_session.query)
    assert query == {"client_id": ["portal-kc"],
                     "post_logout_redirect_uri": ["http://testserver/accounts/login/"]}
    assert "_auth_user_id" not in client.session
    import requests

    assert requests.get(response.url, timeout=5).status_code == 200
