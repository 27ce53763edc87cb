from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse

import audit
from tenants import identity, oidc_metadata, sign_in_throttle

INVITATION_SESSION_KEY = "portal_invitation_token"


class AccountAdapter(DefaultAccountAdapter):
    """Sign-up is open only to people holding a valid invitation (unless the operator opens it)."""

    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "too_many_login_attempts": "Too many failed sign-ins from your network address: try "
                                   "again in a few minutes.",
    }

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        if settings.LOCAL_LOGIN == "disabled":
            return False
        if settings.PORTAL_OPEN_SIGNUP:
            return True
        from tenants.services import invitation_for_token

        token = request.session.get(INVITATION_SESSION_KEY)
        invitation = invitation_for_token(token) if token else None
        return bool(invitation and invitation.is_open)

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            audit.record(action="user.signed_up", actor=user, target=user,
                         details={"email": user.email})
        return user

    def get_client_ip(self, request: HttpRequest) -> str:
        """allauth's per-address limits use the same address as the rest of the portal:
        `REMOTE_ADDR`, which only the trusted-proxy settings may replace."""
        return sign_in_throttle.client_address(request)

    def pre_authenticate(self, request: HttpRequest, **credentials) -> None:
        super().pre_authenticate(request, **credentials)  # the per-address limit
        try:
            self._sign_in_attempt = sign_in_throttle.begin(
                request, step="password", account=credentials.get("email") or "")
        except sign_in_throttle.SignInThrottled as exc:
            raise forms.ValidationError(exc.message("sign-ins")) from None

    def authenticate(self, request: HttpRequest, **credentials):
        user = super().authenticate(request, **credentials)
        if user is not None:
            self._sign_in_attempt.succeeded()
        return user

    def get_login_stages(self) -> list[str]:
        return ["tenants.stages.AuthenticateStage"
                if path == "allauth.mfa.stages.AuthenticateStage" else path
                for path in super().get_login_stages()]

    def pre_login(self, request, user, **kwargs):
        # With LOCAL_LOGIN=disabled only superusers (the break-glass accounts) may still use
        # a password; everyone else signs in through an identity provider.
        is_password_login = "sociallogin" not in (kwargs.get("signal_kwargs") or {})
        if settings.LOCAL_LOGIN == "disabled" and is_password_login and not user.is_superuser:
            audit.record(action="auth.login_refused", actor="anonymous", target=user,
                         details={"email": user.email, "reason": "local login disabled"})
            messages.error(request, "Sign-in with a password is turned off: use one of the "
                                    "sign-in buttons.")
            return redirect("account_login")
        return super().pre_login(request, user, **kwargs)

    def get_logout_redirect_url(self, request: HttpRequest) -> str:
        """After an OIDC sign-in, end the provider's session too (RP-initiated logout)."""
        from tenants.social import OIDC_SESSION_KEY

        facts = request.session.get(OIDC_SESSION_KEY) or {}
        provider = identity.provider_get(facts.get("provider", ""))
        if provider is not None:
            end_session = oidc_metadata.end_session_url(
                provider, request.build_absolute_uri(reverse("account_login")))
            if end_session:
                return end_session
        return super().get_logout_redirect_url(request)
