import json

import pytest

from portal.oidc_settings import parse_providers
from tenants import oidc_metadata
from tests.openid_provider import OpenIdProvider, free_port

EIDAS = "http://eidas.europa.eu/LoA/"
API_AUDIENCE = "urn:portal:api"


@pytest.fixture(scope="session")
def openid_providers(tmp_path_factory):
    """Two real OpenID Providers on loopback: a Keycloak-like one ("kc") and an eID ("eid")."""
    workdir = tmp_path_factory.mktemp("openid-providers")
    kc = OpenIdProvider(workdir, "kc", provider_ids=["kc"], api_audience=API_AUDIENCE,
                        acr_values=["low", "substantial", "high"],
                        service_clients=["ci-acme", "ci-unlisted"])
    eid = OpenIdProvider(workdir, "eid", provider_ids=["eid"], api_audience=API_AUDIENCE,
                         acr_values=[f"{EIDAS}substantial", f"{EIDAS}high"],
                         service_clients=["ci-eid"])
    yield {"kc": kc, "eid": eid}
    kc.stop()
    eid.stop()


def provider_config(openid_providers) -> list[dict]:
    kc, eid = openid_providers["kc"], openid_providers["eid"]
    return [
        {
            "id": "kc", "name": "Operator Keycloak", "issuer": kc.issuer,
            "client_id": "portal-kc", "client_secret": "secret-kc",
            "scopes": ["openid", "email", "profile", "organization", "groups", "roles"],
            "acr_values": "substantial", "acr_levels": ["low", "substantial", "high"],
            "min_acr": {"msp_admin": "high", "tenant_admin": "substantial"},
            "role_claims": ["realm_access.roles", "resource_access.portal-kc.roles"],
            "platform_roles": {"portal-msp-admin": "msp_admin",
                               "portal-compliance": "compliance_officer"},
            "tenant_roles": {"tenant-admin": "tenant_admin", "developer": "developer"},
            "api_audience": API_AUDIENCE,
            "service_accounts": {"ci-acme": {"tenant": "acme", "role": "developer"}},
        },
        {
            "id": "eid", "name": "National eID", "issuer": eid.issuer,
            "client_id": "portal-eid", "client_secret": "secret-eid",
            "scopes": ["openid", "email", "profile", "groups"],
            "acr_values": f"{EIDAS}substantial",
            "acr_levels": [f"{EIDAS}low", f"{EIDAS}substantial", f"{EIDAS}high"],
            "min_acr": {"msp_admin": f"{EIDAS}high"},
            "organization_claim": "",
            "unknown_organization": "create_suspended", "new_tenant_jurisdiction": "DE",
        },
        {
            "id": "down", "name": "Unreachable IdP", "issuer": f"http://127.0.0.1:{free_port()}",
            "client_id": "portal-down", "client_secret": "secret-down",
        },
    ]


@pytest.fixture
def sso(settings, openid_providers, db):
    """The portal configured with the two providers (and one that is down)."""
    providers = parse_providers(json.dumps(provider_config(openid_providers)))
    settings.OIDC_PROVIDERS = providers
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {"APPS": [p.allauth_app() for p in providers]}}
    oidc_metadata.forget_all()
    for provider in openid_providers.values():
        provider.set_accounts({})
        provider.config["token_ttl"] = {}
        provider.set_token_ttl("ci-acme", 300)
    yield openid_providers
    oidc_metadata.forget_all()


def person(email: str, *, acr: str = "substantial", amr=("pwd",), **claims) -> dict:
    return {"acr": acr, "amr": list(amr),
            "claims": {"email": email, "email_verified": True, **claims}}
