from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from allauth.account.adapter import get_adapter as get_account_adapter
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from portal import stored_secrets
from tenants import assurance, mfa, permissions
from tenants.social import OIDC_SESSION_KEY

# Always reachable: static assets and the health probes.
_ALWAYS_EXEMPT_PREFIXES = ("/static/", "/healthz", "/readyz")
# A person who must still set up a second factor may use the account pages (where it is set
# up, and sign-out).
_ENROLMENT_PREFIXES = ("/accounts/",)


def _second_factor_steps(user) -> list[str]:
    """Where this person proves their second factor again (code, or security key)."""
    return [method["url"] for method in get_account_adapter().get_reauthentication_methods(user)
            if method["id"].startswith("mfa_reauthenticate")]


class MfaRequiredMiddleware:
    """Every signed-in session that needs a second factor (see `tenants.assurance`) has
    passed it before it reaches anything else: pages, the REST API, downloads."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            not user.is_authenticated
            or request.path.startswith(_ALWAYS_EXEMPT_PREFIXES)
            or assurance.session_passed_second_factor(request)
            or not assurance.session_needs_second_factor(request)
        ):
            return self.get_response(request)
        if not assurance.has_second_factor(user):
            return self._enrol(request)
        return self._step_up(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        """An account page that needs a seed that can't be decrypted (the list of second
        factors shows how many recovery codes are left; the recovery-code pages show them)
        explains what happened and what to do, instead of failing (see `tenants.mfa`)."""
        if not isinstance(exception, mfa.SecondFactorUnreadable):
            return None
        unreadable = (stored_secrets.mfa_unreadable(request.user)
                      if request.user.is_authenticated else [])
        return render(request, "tenants/second_factor_unreadable.html", {
            "problems": [mfa.message_for(each) for each in unreadable] or [mfa.GENERAL_MESSAGE],
        }, status=409)

    def _enrol(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(_ENROLMENT_PREFIXES):
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": "This account must use two-factor authentication: "
                                           "open /accounts/2fa/ in a browser to set it up."},
                                status=403)
        if request.session.get(OIDC_SESSION_KEY):
            who = "Your sign-in method also needs this portal's two-factor authentication:"
        elif permissions.is_msp_admin(request.user):
            who = "MSP admins must use two-factor authentication: confirm your password, then"
        else:
            who = "This account must use two-factor authentication: confirm your password, then"
        messages.warning(request, f"{who} scan the QR code with an authenticator app to "
                                  "continue.")
        return redirect("mfa_activate_totp")

    def _step_up(self, request: HttpRequest) -> HttpResponse:
        """A session without its second factor may open the second-factor step and sign-out,
        nothing else: not the rest of /accounts/ either, where a password alone could replace
        the authenticator."""
        steps = _second_factor_steps(request.user)
        if request.path in steps or request.path == reverse("account_logout"):
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": "This session has not passed two-factor "
                                           "authentication: sign in again at /accounts/login/ "
                                           "and enter your authenticator code."}, status=403)
        messages.warning(request, "Enter the code from your authenticator app to continue: "
                                  "this session has not passed two-factor authentication.")
        target = request.get_full_path() if request.method == "GET" else "/"
        return redirect(f"{steps[0]}?{urlencode({'next': target})}")
