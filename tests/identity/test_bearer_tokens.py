"""The REST API accepts the configured providers' access tokens for service accounts, checked
locally against the provider's cached keys; everything else is a 401 that says why."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from audit.models import AuditEvent
from tests.identity.conftest import API_AUDIENCE


def _get(client, path, token):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def _forge(token: str, **changes) -> str:
    """The same claims and key id, signed with a key that is not the provider's."""
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    header = jwt.get_unverified_header(token)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": header["kid"]})


@pytest.fixture
def api(client, sso, tenant, other_tenant):
    return client


def test_service_account_token_is_accepted_in_its_tenant_only(api, sso):
    token = sso["kc"].client_credentials_token("ci-acme")

    listing = _get(api, "/api/tenants/", token)
    assert listing.status_code == 200, listing.content
    assert [t["slug"] for t in listing.json()] == ["acme"]
    assert _get(api, "/api/tenants/acme/members/", token).status_code == 200
    assert _get(api, "/api/tenants/globex/", token).status_code == 404
    changed = api.patch("/api/tenants/acme/", {"name": "Hijacked"},
                        content_type="application/json",
                        headers={"Authorization": f"Bearer {token}"})
    assert changed.status_code == 403


@pytest.mark.parametrize("make_token,reason", [
    (lambda op: _forge(op.client_credentials_token("ci-acme")), "signature is not valid"),
    (lambda op: op.client_credentials_token("ci-acme", resource="urn:other:api"),
     f"audience must be '{API_AUDIENCE}'"),
    (lambda op: op.client_credentials_token("ci-unlisted"),
     "'ci-unlisted' is not a service account"),
    (lambda op: "not-a-jwt", "not a JWT"),
    (lambda op: jwt.encode({"iss": "https://elsewhere.example", "aud": API_AUDIENCE},
                           "k" * 32, algorithm="HS256"),
     "issuer 'https://elsewhere.example' are not accepted"),
])
def test_bad_tokens_are_refused_with_a_reason(api, sso, make_token, reason):
    response = _get(api, "/api/tenants/", make_token(sso["kc"]))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert reason in response.json()["detail"]


def test_token_of_a_provider_without_api_access_is_refused(api, sso, settings):
    token = sso["eid"].client_credentials_token("ci-eid")

    response = _get(api, "/api/tenants/", token)

    assert response.status_code == 401
    assert "are not accepted here" in response.json()["detail"]


def test_expired_token_is_refused(api, sso):
    sso["kc"].set_token_ttl("ci-acme", 1)
    token = sso["kc"].client_credentials_token("ci-acme")
    time.sleep(2.1)

    response = _get(api, "/api/tenants/", token)

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_signing_keys_are_fetched_once_not_per_request(api, sso):
    before = sso["kc"].stats()
    token = sso["kc"].client_credentials_token("ci-acme")

    for _ in range(5):
        assert _get(api, "/api/tenants/", token).status_code == 200
    for _ in range(5):  # garbage with an unknown key id must not make the portal refetch
        forged = _forge(token, jti=str(time.monotonic()))
        forged_unknown_kid = jwt.encode(
            jwt.decode(forged, options={"verify_signature": False}),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256", headers={"kid": "rotated-maybe"})
        assert _get(api, "/api/tenants/", forged_unknown_kid).status_code == 401

    after = sso["kc"].stats()
    assert after["jwks"] - before["jwks"] == 1
    assert after["discovery"] - before["discovery"] == 1
    assert after["userinfo"] == before["userinfo"]


def test_rejections_are_audited_once_per_token(api, sso):
    forged = _forge(sso["kc"].client_credentials_token("ci-acme"))

    for _ in range(3):
        assert _get(api, "/api/tenants/", forged).status_code == 401

    events = AuditEvent.objects.filter(action="api.token_rejected")
    assert events.count() == 1
    assert events.get().details["reason"] == "the token's signature is not valid"
    assert events.get().details["issuer"] == sso["kc"].issuer


def test_audited_rejections_are_capped_per_minute(api, sso, settings):
    settings.OIDC_REJECTIONS_AUDITED_PER_MINUTE = 2
    for n in range(5):
        assert _get(api, "/api/tenants/", f"garbage-{n}-{time.time()}").status_code == 401

    assert AuditEvent.objects.filter(action="api.token_rejected").count() <= 2
