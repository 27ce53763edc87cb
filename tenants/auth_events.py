"""Sign-in and sign-out go into the audit trail. allauth and Django announce them through
signals, which is the only hook they offer; the receivers record, and a provider sign-in's
facts are also kept in the session (see `tenants.social.remember_sign_in` for why here)."""

from allauth.account.signals import user_logged_in, user_logged_out
from allauth.mfa.signals import authenticator_added, authenticator_removed
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

import audit


@receiver(user_logged_in)
def _logged_in(sender, request, user, sociallogin=None, **kwargs):
    from tenants.social import OIDC_SESSION_KEY, remember_sign_in

    plan = remember_sign_in(request, sociallogin) if sociallogin is not None else None
    if plan is None:
        request.session.pop(OIDC_SESSION_KEY, None)
        audit.record(action="auth.login_succeeded", actor=user, target=user,
                     details={"method": "password"})
        return
    audit.record(action="auth.login_succeeded", actor=user, target=user,
                 details={"method": "oidc", "provider": plan.provider.id, "acr": plan.acr,
                          "amr": plan.amr})
    if plan.withheld:
        audit.record(action="auth.loa_insufficient", actor=user, target=user,
                     details={"provider": plan.provider.id, "acr": plan.acr,
                              "withheld": plan.withheld, "step_up_to": plan.step_up_acr})


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit.record(action="auth.logged_out", actor=user, target=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    audit.record(action="auth.login_failed", actor="anonymous", details={"email": email})


@receiver(authenticator_added)
def _mfa_added(sender, request, user, authenticator, **kwargs):
    from tenants.assurance import record_enrolment

    audit.record(action="auth.mfa_added", actor=user, target=user,
                 details={"type": authenticator.type})
    record_enrolment(request, authenticator)


@receiver(authenticator_removed)
def _mfa_removed(sender, request, user, authenticator, **kwargs):
    audit.record(action="auth.mfa_removed", actor=user, target=user,
                 details={"type": authenticator.type})
