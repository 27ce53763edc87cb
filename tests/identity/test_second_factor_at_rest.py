"""Second-factor seeds at rest: allauth's authenticator-app secrets and recovery-code seeds
are sealed under FIELD_ENCRYPTION_KEYS, rotated by `secrets_rotate`, sealed by a migration
when they were stored in plain text; a seed no key decrypts makes only that authenticator
unusable — with a message, an audit event and an MSP admin's reset, never a 500."""

import importlib
import json
from io import StringIO

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from cryptography.fernet import Fernet
from django.apps import apps as django_apps
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from portal import stored_secrets
from tests.factories import PASSWORD, TOTP_SECRET, MembershipFactory, UserFactory
from tests.support.secret_keys import keys, new_key
from tests.support.sessions import force_login_password_only
from tests.totp import totp_code

pytestmark = pytest.mark.django_db

RECOVERY_SEED = "5f" * 40  # the shape allauth generates: 80 hex digits


def _stored(user, kind: str) -> dict:
    return Authenticator.objects.get(user=user, type=kind).data


def _opened(value: str, key: str) -> str:
    assert value.startswith(stored_secrets.SEALED_PREFIX)
    return Fernet(key.encode()).decrypt(
        value.removeprefix(stored_secrets.SEALED_PREFIX).encode()).decode()


def _password_step(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response.url == reverse("mfa_authenticate")


def _signed_in(client, user) -> bool:
    return client.session.get("_auth_user_id") == str(user.pk)


# --- sealed at rest, and still working ----------------------------------------------------

def test_seeds_are_stored_sealed_not_in_plain_text():
    user = UserFactory(email="sealed@acme.test", totp=True)
    codes = RecoveryCodes.activate(user)

    totp, recovery = _stored(user, "totp"), _stored(user, "recovery_codes")
    stored = json.dumps([totp, recovery])
    assert TOTP_SECRET not in stored and TOTP_SECRET.lower() not in stored
    assert not any(code in stored for code in codes.generate_codes())
    first_key = settings.FIELD_ENCRYPTION_KEYS[0]
    assert _opened(totp["secret"], first_key) == TOTP_SECRET
    seed = _opened(recovery["seed"], first_key)
    assert seed not in stored and len(seed) == 80


def test_an_authenticator_app_code_still_signs_in(client):
    user = UserFactory(email="app@acme.test", totp=True)
    _password_step(client, user)
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)})
    assert response.status_code == 302 and _signed_in(client, user)


def test_a_recovery_code_still_signs_in_once(client):
    user = UserFactory(email="codes@acme.test", totp=True)
    code = RecoveryCodes.activate(user).get_unused_codes()[0]
    _password_step(client, user)
    response = client.post(reverse("mfa_authenticate"), {"code": code})
    assert response.status_code == 302 and _signed_in(client, user)

    recovery = _stored(user, "recovery_codes")
    assert recovery["used_mask"] == 1 and recovery["seed"].startswith("fernet:")
    again = Client()
    _password_step(again, user)
    refused = again.post(reverse("mfa_authenticate"), {"code": code})
    assert refused.status_code == 200 and not _signed_in(again, user)


# --- rotation and migration ---------------------------------------------------------------

def test_secrets_rotate_reseals_second_factor_seeds_under_the_new_first_key(client):
    old, new = new_key(), new_key()
    with keys(old):
        user = UserFactory(email="rotated@acme.test", totp=True)
        code = RecoveryCodes.activate(user).get_unused_codes()[0]
    before = [_stored(user, "totp"), _stored(user, "recovery_codes")]

    with keys(new, old):
        first, second = StringIO(), StringIO()
        call_command("secrets_rotate", stdout=first)
        call_command("secrets_rotate", stdout=second)
    assert "mfa.authenticator.totp: 1 re-encrypted" in first.getvalue()
    assert "mfa.authenticator.recovery_codes: 1 re-encrypted" in first.getvalue()
    assert "mfa.authenticator.totp: 0 re-encrypted, 1 already under the first key" \
        in second.getvalue()
    totp, recovery = _stored(user, "totp"), _stored(user, "recovery_codes")
    assert [totp, recovery] != before
    assert _opened(totp["secret"], new) == TOTP_SECRET
    assert _opened(recovery["seed"], new) == _opened(before[1]["seed"], old)
    assert recovery["used_mask"] == before[1]["used_mask"]

    with keys(new):  # the old key is gone: the rotated seeds still work
        _password_step(client, user)
        client.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)})
        assert _signed_in(client, user)
        assert RecoveryCodes(Authenticator.objects.get(
            user=user, type="recovery_codes")).validate_code(code)
    trail = json.dumps([e.details for e in AuditEvent.objects.all()])
    assert TOTP_SECRET not in trail and totp["secret"] not in trail


def test_the_migration_seals_plain_text_seeds_once_and_the_reverse_unseals():
    migration = importlib.import_module("tenants.migrations.0005_seal_second_factor_seeds")
    user = UserFactory(email="legacy@acme.test")
    # As allauth stored them before the portal had an MFA adapter.
    Authenticator.objects.create(user=user, type="totp", data={"secret": TOTP_SECRET})
    Authenticator.objects.create(user=user, type="recovery_codes",
                                 data={"seed": RECOVERY_SEED, "used_mask": 2})

    migration.seal(django_apps, None)
    sealed = [_stored(user, "totp"), _stored(user, "recovery_codes")]
    assert TOTP_SECRET not in json.dumps(sealed) and RECOVERY_SEED not in json.dumps(sealed)
    first_key = settings.FIELD_ENCRYPTION_KEYS[0]
    assert _opened(sealed[0]["secret"], first_key) == TOTP_SECRET
    assert _opened(sealed[1]["seed"], first_key) == RECOVERY_SEED
    assert sealed[1]["used_mask"] == 2

    migration.seal(django_apps, None)  # again: nothing is sealed twice
    assert [_stored(user, "totp"), _stored(user, "recovery_codes")] == sealed
    assert TOTP(Authenticator.objects.get(user=user, type="totp")).validate_code(
        totp_code(TOTP_SECRET))

    migration.unseal(django_apps, None)
    assert _stored(user, "totp") == {"secret": TOTP_SECRET}
    assert _stored(user, "recovery_codes") == {"seed": RECOVERY_SEED, "used_mask": 2}


def test_a_plain_text_seed_is_never_used():
    """Whoever can write to the database can't plant a seed they know."""
    user = UserFactory(email="planted@acme.test")
    Authenticator.objects.create(user=user, type="totp", data={"secret": TOTP_SECRET})
    assert stored_secrets.mfa_unreadable(user) == [Authenticator.objects.get(user=user)]


# --- a seed no key decrypts ---------------------------------------------------------------

@pytest.fixture
def lost_app(db):
    """A person whose authenticator app was set up under a key that is gone since; their
    recovery codes (set up later) are readable."""
    with keys(new_key()):
        user = UserFactory(email="lost@acme.test", totp=True)
    codes = RecoveryCodes.activate(user).get_unused_codes()
    return user, codes


def _unreadable_events(user):
    return AuditEvent.objects.filter(action="secret.unreadable", target_type="mfa.authenticator",
                                     target_id=str(Authenticator.objects.get(
                                         user=user, type="totp").pk))


def test_an_unreadable_authenticator_app_is_refused_with_a_way_out(client, lost_app):
    user, codes = lost_app
    _password_step(client, user)
    for _attempt in range(2):
        response = client.post(reverse("mfa_authenticate"), {"code": totp_code(TOTP_SECRET)})
        assert response.status_code == 200 and not _signed_in(client, user)
        page = response.content.decode()
        assert "Your authenticator app can&#x27;t be used" in page
        assert "recovery code or a security key" in page
        assert "ask an MSP admin to reset your second factor" in page
    event = _unreadable_events(user).get()  # once, however often it is tried
    assert event.details["field"] == "data.secret"
    assert event.details["object"] == "TOTP Authenticator of lost@acme.test"

    response = client.post(reverse("mfa_authenticate"), {"code": codes[0]}, follow=True)
    assert _signed_in(client, user)
    assert "Your authenticator app can&#x27;t be used" in response.content.decode()


def test_the_second_factor_step_in_a_session_says_the_same(client, lost_app):
    user, codes = lost_app
    force_login_password_only(client, user)
    step = reverse("mfa_reauthenticate")
    response = client.post(step, {"code": totp_code(TOTP_SECRET)})
    assert response.status_code == 200
    assert "Your authenticator app can&#x27;t be used" in response.content.decode()
    assert client.post(step, {"code": codes[1]}).status_code == 302


def test_account_pages_that_need_an_unreadable_seed_explain_instead_of_failing(client):
    user = UserFactory(email="lost-codes@acme.test", totp=True)
    with keys(new_key()):
        RecoveryCodes.activate(user)
    client.force_login(user)
    client.post(reverse("mfa_reauthenticate"), {"code": totp_code(TOTP_SECRET)})
    for name in ("mfa_index", "mfa_view_recovery_codes", "mfa_download_recovery_codes",
                 "mfa_generate_recovery_codes"):
        response = client.get(reverse(name))
        assert response.status_code == 409, name
        assert "Your recovery codes can&#x27;t be used" in response.content.decode()
    assert AuditEvent.objects.filter(action="secret.unreadable",
                                     target_type="mfa.authenticator").count() == 1


def test_secrets_rotate_lists_unreadable_second_factors_and_carries_on(lost_app):
    user, _codes = lost_app
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 stored secret"):
        call_command("secrets_rotate", stdout=out, stderr=err)
    assert "mfa.authenticator.totp: 0 re-encrypted, 0 already under the first key, " \
        "1 unreadable" in out.getvalue()
    assert "TOTP Authenticator of lost@acme.test" in err.getvalue()
    assert "an MSP admin resets their second factor" in err.getvalue()
    assert _unreadable_events(user).count() == 1


# --- the way out: an MSP admin resets the second factor -------------------------------------

def test_an_msp_admin_resets_a_members_second_factor(client, msp_admin, tenant, lost_app):
    user, _codes = lost_app
    membership = MembershipFactory(tenant=tenant, user=user)
    client.force_login(msp_admin)
    page = client.get(f"/msp/tenants/{tenant.slug}/").content.decode()
    url = f"/msp/tenants/{tenant.slug}/members/{membership.pk}/second-factor/reset/"
    assert url in page and "Reset second factor" in page

    response = client.post(url, follow=True)
    assert "Removed the second factors of lost@acme.test" in response.content.decode()
    assert not Authenticator.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action="auth.second_factor_reset")
    assert event.actor_label == msp_admin.email
    assert event.details == {"user": user.email, "removed": ["recovery_codes", "totp"]}
    # Now the password alone signs them in, to set up a new second factor.
    fresh = Client()
    fresh.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert _signed_in(fresh, user)


def test_nobody_else_may_reset_and_nobody_resets_their_own(client, msp_admin, tenant,
                                                           tenant_admin):
    target = MembershipFactory(tenant=tenant, user=UserFactory(totp=True))
    url = f"/msp/tenants/{tenant.slug}/members/{target.pk}/second-factor/reset/"
    client.force_login(tenant_admin)
    assert client.post(url).status_code == 403
    assert Authenticator.objects.filter(user=target.user).exists()

    own = MembershipFactory(tenant=tenant, user=msp_admin)
    client.force_login(msp_admin)
    response = client.post(f"/msp/tenants/{tenant.slug}/members/{own.pk}/second-factor/reset/",
                           follow=True)
    assert "can&#x27;t reset your own second factor" in response.content.decode()
    assert Authenticator.objects.filter(user=msp_admin).exists()


def test_the_reset_command_is_the_break_glass_way(lost_app):
    user, _codes = lost_app
    out = StringIO()
    call_command("second_factor_reset", "LOST@acme.test", stdout=out)
    assert "Removed the second factors of lost@acme.test (recovery_codes, totp)" in out.getvalue()
    assert not Authenticator.objects.filter(user=user).exists()
    assert AuditEvent.objects.get(action="auth.second_factor_reset").actor_label == \
        "system:second_factor_reset"
    with pytest.raises(CommandError, match="has no second factor to reset"):
        call_command("second_factor_reset", user.email, stdout=StringIO())
    with pytest.raises(CommandError, match="No account"):
        call_command("second_factor_reset", "nobody@acme.test", stdout=StringIO())
