from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from tenants import permissions
from tenants.social import OIDC_SESSION_KEY

# Pages an MSP admin without MFA may still reach: account management (where MFA is set up,
# and sign-out), static assets and the health probes.
_MFA_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/healthz", "/readyz")


def _needs_local_mfa(request: HttpRequest) -> bool:
    """MSP admins signed in with a password, and everyone signed in through a provider that
    is configured with `require_local_mfa`. Other provider sign-ins rely on the provider's
    own authentication, whose strength the level-of-assurance rules check."""
    facts = request.session.get(OIDC_SESSION_KEY)
    if facts:
        return bool(facts.get("local_mfa"))
    return permissions.is_msp_admin(request.user)


class MfaRequiredMiddleware:
    """MSP admins hold the keys to every tenant: they must set up MFA before anything else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            user.is_authenticated
            and not request.path.startswith(_MFA_EXEMPT_PREFIXES)
            and _needs_local_mfa(request)
            and not Authenticator.objects.filter(
                user=user, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
            ).exists()
        ):
            if request.path.startswith("/api/"):
                return HttpResponse(
                    '{"detail": "MSP admins must set up two-factor authentication first: '
                    'open /accounts/2fa/ in a browser."}',
                    status=403, content_type="application/json",
                )
            messages.warning(
                request,
                "MSP admins must use two-factor authentication: confirm your password, then "
                "scan the QR code with an authenticator app to continue."
                if not request.session.get(OIDC_SESSION_KEY) else
                "Your sign-in method also needs this portal's two-factor authentication: "
                "scan the QR code with an authenticator app to continue.",
            )
            return redirect("mfa_activate_totp")
        return self.get_response(request)
