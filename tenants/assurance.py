"""Whether this session passed the second factor it needs.

The rule is about the session, not the account: an account that has an authenticator app
can still hold a session that never used it (one made outside the portal's sign-in). allauth
keeps a record of every authentication step of the session (password, provider, second
factor); a session needs an `mfa` record when:

- it came from a provider sign-in configured with `require_local_mfa`; other provider
  sign-ins rely on the provider's own authentication, which the level-of-assurance rules check;
- otherwise (a password, or no portal sign-in at all) when the person is an MSP admin, a
  superuser or staff, or has set up a second factor: the portal's sign-in asks everybody who
  has one for it.
"""

from __future__ import annotations

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.http import HttpRequest

from tenants import permissions
from tenants.social import OIDC_SESSION_KEY

# What counts as a second factor (recovery codes only stand in for one at sign-in).
SECOND_FACTOR_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


def has_second_factor(user) -> bool:
    return Authenticator.objects.filter(user=user, type__in=SECOND_FACTOR_TYPES).exists()


def session_passed_second_factor(request: HttpRequest) -> bool:
    return any(record.get("method") == "mfa"
               for record in get_authentication_records(request, request.user))


def session_needs_second_factor(request: HttpRequest) -> bool:
    user = request.user
    facts = request.session.get(OIDC_SESSION_KEY)
    if facts:
        return bool(facts.get("local_mfa"))
    return (permissions.is_msp_admin(user) or user.is_superuser or user.is_staff
            or has_second_factor(user))


def record_enrolment(request: HttpRequest, authenticator: Authenticator) -> None:
    """Setting up an authenticator proves it with a code: the session has passed it."""
    from allauth.account.internal.flows.login import record_authentication

    if authenticator.type in SECOND_FACTOR_TYPES and request.user == authenticator.user:
        record_authentication(request, authenticator.user, "mfa", id=authenticator.pk,
                              type=authenticator.type, enrolled=True)
