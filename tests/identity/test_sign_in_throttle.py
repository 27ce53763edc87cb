"""Failed sign-ins slow down whoever fails, per (account, client address), and never lock
the account's owner out from somewhere else."""

import time

import pytest
from django.test import Client
from django.urls import reverse

from tenants import sign_in_throttle
from tests.factories import PASSWORD, TOTP_SECRET, UserFactory, make_msp_admin
from tests.totp import totp_code

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


def _sign_in(client: Client, email: str, password: str, address: str):
    return client.post("/accounts/login/", {"login": email, "password": password},
                       REMOTE_ADDR=address)


def test_failures_from_one_address_never_lock_the_owner_out_elsewhere(db):
    """Before: five wrong passwords from anywhere locked the account for everybody."""
    owner = UserFactory(email="owner@acme.test")
    for n in range(12):
        _sign_in(Client(), owner.email, "wrong-guess", f"203.0.113.{n + 1}")
    owner_client = Client()
    response = _sign_in(owner_client, owner.email, PASSWORD, OWNER)
    assert response.status_code == 302
    assert owner_client.session["_auth_user_id"] == str(owner.pk)


def test_the_failing_address_waits_longer_after_each_failure(db, monkeypatch):
    owner = UserFactory(email="target@acme.test")
    attacker = Client()
    for _ in range(sign_in_throttle.FREE_FAILURES):
        page = _sign_in(attacker, owner.email, "wrong-guess", ATTACKER)
        assert "not correct" in page.content.decode()
    # Even the right password is refused now, from this address, with a clear message.
    refused = _sign_in(attacker, owner.email, PASSWORD, ATTACKER)
    assert refused.status_code == 200 and "_auth_user_id" not in attacker.session
    assert ("Too many failed sign-ins for this account from your network address: try again "
            "in 30 seconds") in refused.content.decode()

    # Meanwhile the owner signs in from their own address.
    owner_client = Client()
    assert _sign_in(owner_client, owner.email, PASSWORD, OWNER).status_code == 302
    assert owner_client.session["_auth_user_id"] == str(owner.pk)

    # The wait doubles with every further failure.
    now = time.time()
    monkeypatch.setattr(sign_in_throttle.time, "time", lambda: now + 31)
    _sign_in(attacker, owner.email, "wrong-again", ATTACKER)
    monkeypatch.setattr(sign_in_throttle.time, "time", lambda: now + 62)
    assert "try again in 29 seconds" in _sign_in(
        attacker, owner.email, PASSWORD, ATTACKER).content.decode()


def test_a_correct_password_forgives_the_pair_s_failures(db):
    owner = UserFactory(email="typo@acme.test")
    client = Client()
    for _ in range(sign_in_throttle.FREE_FAILURES - 1):
        _sign_in(client, owner.email, "typo", OWNER)
    assert _sign_in(client, owner.email, PASSWORD, OWNER).status_code == 302
    client.post(reverse("account_logout"), REMOTE_ADDR=OWNER)
    for _ in range(sign_in_throttle.FREE_FAILURES - 1):
        _sign_in(client, owner.email, "typo", OWNER)
    assert _sign_in(client, owner.email, PASSWORD, OWNER).status_code == 302


def test_wait_grows_to_an_hour_at_most():
    waits = [sign_in_throttle.wait_after(n) for n in range(12)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:6] == [30, 60, 120]
    assert waits[-1] == 3600 and waits == sorted(waits)


def test_an_address_failing_across_many_accounts_is_refused_as_a_whole(db):
    owner = UserFactory(email="bystander@acme.test")
    sprayer = "203.0.113.200"
    for n in range(20):
        _sign_in(Client(), f"nobody{n}@acme.test", "spray", sprayer)
    refused = _sign_in(Client(), owner.email, PASSWORD, sprayer)
    assert "_auth_user_id" not in refused.wsgi_request.session
    assert ("Too many failed sign-ins from your network address: try again in a few minutes"
            in refused.content.decode())
    assert _sign_in(Client(), owner.email, PASSWORD, OWNER).status_code == 302


def test_wrong_codes_slow_down_the_one_typing_them_not_the_owner(db):
    """Someone who has the password (phished) can't lock the owner's second factor."""
    admin = make_msp_admin(email="msp-codes@operator.test")
    attacker = Client()
    _sign_in(attacker, admin.email, PASSWORD, ATTACKER)
    wrong = "000000" if totp_code(TOTP_SECRET) != "000000" else "111111"
    for _ in range(sign_in_throttle.FREE_FAILURES):
        attacker.post(reverse("mfa_authenticate"), {"code": wrong}, REMOTE_ADDR=ATTACKER)
    refused = attacker.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)},
                            REMOTE_ADDR=ATTACKER)
    assert "_auth_user_id" not in attacker.session
    assert "Too many failed codes for this account from your network address" in (
        refused.content.decode())

    owner = Client()
    _sign_in(owner, admin.email, PASSWORD, OWNER)
    owner.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)}, REMOTE_ADDR=OWNER)
    assert owner.session["_auth_user_id"] == str(admin.pk)


def test_ipv6_clients_count_per_64_network():
    from django.test import RequestFactory

    one = RequestFactory().get("/", REMOTE_ADDR="2001:db8:1:2::1")
    other = RequestFactory().get("/", REMOTE_ADDR="2001:db8:1:2:ffff::9")
    assert sign_in_throttle.client_address(one) == sign_in_throttle.client_address(other)
    assert sign_in_throttle.client_address(one) == "2001:db8:1:2::/64"
