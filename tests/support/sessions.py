"""How the suite signs people in without typing a password and a code every time.

`client.force_login(user)` stands for the portal's whole sign-in: for a person with an
authenticator it also records, as allauth's second-factor step does, that this session
passed it. Tests of sessions that skipped the second factor use `force_login_password_only`.
"""

from allauth.account.internal.flows.login import record_authentication
from django.test import RequestFactory
from django.test.client import ClientMixin

from tenants.assurance import SECOND_FACTOR_TYPES

_plain_force_login = ClientMixin.force_login


def force_login_password_only(client, user) -> None:
    """A session made outside the portal's sign-in (as Django's admin login or a bare
    `django.contrib.auth.login` would make one): no second factor."""
    _plain_force_login(client, user)


def _force_login_with_second_factor(self, user, backend=None) -> None:
    from allauth.mfa.models import Authenticator

    _plain_force_login(self, user, backend)
    authenticator = Authenticator.objects.filter(user=user, type__in=SECOND_FACTOR_TYPES).first()
    if authenticator is None:
        return
    request = RequestFactory().get("/")
    request.session, request.user = self.session, user
    record_authentication(request, user, "password", email=user.email)
    record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type)
    request.session.save()


def install() -> None:
    ClientMixin.force_login = _force_login_with_second_factor
