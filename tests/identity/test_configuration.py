"""Provider configuration is checked at start-up, and LOCAL_LOGIN hides or turns off the
password form while break-glass superusers keep a way in."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import oidc_settings
from portal.oidc_settings import parse_providers
from tenants.models import PlatformRole, TenantRole
from tests.factories import PASSWORD, UserFactory
from tests.portal.test_settings import _check

GOOD = {"id": "kc", "name": "Keycloak", "issuer": "https://id.example/realms/p",
        "client_id": "portal", "client_secret": "s"}


def test_role_names_match_the_models():
    assert set(oidc_settings.TENANT_ROLES) == set(TenantRole.values)
    assert set(oidc_settings.PLATFORM_ROLES) == set(PlatformRole.values)


@pytest.mark.parametrize("change,message", [
    ({"issuer": "id.example"}, "provider 'kc': 'issuer' 'id.example' must be an http(s) URL"),
    ({"client_secret": ""}, "provider 'kc': 'client_secret' (or 'client_secret_file')"),
    ({"acr_levels": ["low"], "min_acr": {"msp_admin": "high"}},
     "min_acr['msp_admin'] = 'high' is not one of 'acr_levels'"),
    ({"platform_roles": {"admins": "root"}}, "platform_roles['admins'] = 'root'"),
    ({"unknown_organization": "create_suspended"}, "needs 'new_tenant_jurisdiction'"),
    ({"service_accounts": {"ci": {"tenant": "acme", "role": "developer"}}},
     "need 'api_audience'"),
    ({"scopes": ["email"]}, "'scopes' must include 'openid'"),
    ({"colour": "blue"}, "unknown keys colour"),
    ({"client_secret_file": "/nonexistent"}, "set either 'client_secret' or"),
])
def test_bad_provider_is_named(change, message):
    with pytest.raises(ImproperlyConfigured) as error:
        parse_providers(json.dumps([{**GOOD, **change}]))
    assert message in str(error.value)
    assert str(error.value).startswith("OIDC_PROVIDERS: ")


def test_duplicate_issuer_is_refused():
    with pytest.raises(ImproperlyConfigured, match="configured twice"):
        parse_providers(json.dumps([GOOD, {**GOOD, "id": "kc2"}]))


def test_secret_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    provider, = parse_providers(json.dumps([{**GOOD, "client_secret": None,
                                             "client_secret_file": str(secret)}]))
    assert provider.client_secret == "from-file"
    assert provider.allauth_app()["settings"]["oauth_pkce_enabled"] is True


def test_start_up_fails_naming_the_variable_and_provider(tmp_path):
    result = _check(OIDC_PROVIDERS=json.dumps([{**GOOD, "issuer": "nope"}]))
    assert result.returncode != 0 and "OIDC_PROVIDERS: provider 'kc'" in result.stderr
    providers_file = tmp_path / "providers.json"
    providers_file.write_text("[{")
    result = _check(OIDC_PROVIDERS_FILE=str(providers_file))
    assert result.returncode != 0 and "OIDC_PROVIDERS_FILE is not valid JSON" in result.stderr
    result = _check(LOCAL_LOGIN="maybe")
    assert result.returncode != 0 and "LOCAL_LOGIN='maybe'" in result.stderr
    assert _check(OIDC_PROVIDERS=json.dumps([GOOD]), LOCAL_LOGIN="disabled").returncode == 0


def test_hidden_local_login_is_behind_break_glass(client, sso, settings):
    settings.LOCAL_LOGIN = "hidden"
    page = client.get("/accounts/login/").content.decode()
    assert '<details class="break-glass">' in page and 'name="password"' in page


def test_disabled_local_login_leaves_only_superusers(client, sso, settings):
    settings.LOCAL_LOGIN = "disabled"
    UserFactory(email="person@acme.test")
    UserFactory(email="breakglass@operator.test", is_superuser=True)

    page = client.get("/accounts/login/").content.decode()
    assert 'name="password"' not in page
    refused = client.post("/accounts/login/", {"login": "person@acme.test",
                                               "password": PASSWORD}, follow=True)
    assert "_auth_user_id" not in client.session
    assert "Sign-in with a password is turned off" in refused.content.decode()
    client.post("/accounts/login/", {"login": "breakglass@operator.test", "password": PASSWORD})
    assert client.session["_auth_user_id"]
