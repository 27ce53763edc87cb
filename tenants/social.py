"""allauth's hooks into a single sign-on: every OIDC login is mapped to tenants and roles
here (through `tenants.identity`), or refused with a page that says why."""

from __future__ import annotations

import logging

import requests
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib import messages
from django.http import HttpRequest
from django.shortcuts import render

import audit
from tenants import identity
from tenants.models import User

logger = logging.getLogger(__name__)

_PLAN_ATTR = "_portal_access_plan"
OIDC_SESSION_KEY = "portal_oidc"


def refusal(request: HttpRequest, template: str, context: dict, status: int = 403):
    return ImmediateHttpResponse(
        render(request, f"tenants/identity/{template}", context, status=status))


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin) -> bool:
        # The provider vouches for the person and the claims decide their access, which
        # pre_social_login has checked by now.
        return True

    def pre_social_login(self, request: HttpRequest, sociallogin) -> None:
        provider = identity.provider_get(sociallogin.account.provider)
        if provider is None:
            raise refusal(request, "refused.html", {"reason": "This sign-in method is no longer "
                                                              "configured."})
        claims = identity.claims_of(sociallogin.account.extra_data)
        plan = identity.access_plan(provider, claims)
        known = identity.resolve_tenants(plan)
        user = sociallogin.user if sociallogin.is_existing else None
        email = str(claims.get("email") or "").strip().lower()
        if email:
            identity.onboarding_tenants_create(plan=plan, known=known, contact_email=email)

        if user is None:
            if not email:
                identity.login_refused_record(plan=plan, reason="no e-mail claim")
                raise refusal(request, "refused.html", {
                    "provider": provider,
                    "reason": f"{provider.name} did not tell the portal your e-mail address. "
                              "Ask your identity administrator to release the 'email' claim.",
                })
            if User.objects.filter(email__iexact=email).exists():
                identity.login_refused_record(plan=plan, reason="e-mail taken", email=email)
                raise refusal(request, "refused.html", {
                    "provider": provider,
                    "reason": f"The portal already has an account for {email}, and it is not "
                              f"linked to your {provider.name} identity. Accounts are never "
                              "linked by e-mail address alone: ask the platform operator for help.",
                })
        else:
            identity.identity_sync(user=user, plan=plan, known=known)

        if not identity.has_usable_access(user, plan, known):
            self._refuse_without_access(request, plan, known, email)
        setattr(sociallogin, _PLAN_ATTR, (plan, known))

    def _refuse_without_access(self, request, plan, known, email) -> None:
        if plan.withheld:
            reason = "level of assurance too low"
            template = "step_up.html"
        elif plan.unknown_organizations:
            reason = "organization not onboarded"
            template = "not_onboarded.html"
        elif known:
            reason = "tenant suspended"
            template = "refused.html"
        else:
            reason = "no role in the claims"
            template = "refused.html"
        identity.login_refused_record(plan=plan, reason=reason, email=email)
        explanations = {
            "tenant suspended": "Your organization's tenant is suspended or awaiting review by "
                                "the platform operator.",
            "no role in the claims": f"{plan.provider.name} gives you no tenant or role in the "
                                     "portal. Ask your identity administrator to add you to "
                                     "your organization.",
        }
        raise refusal(request, template, {
            "provider": plan.provider, "plan": plan, "reason": explanations.get(reason, ""),
            "step_up_params": identity.step_up_params(plan.step_up_acr)})

    def populate_user(self, request: HttpRequest, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        user.email = (user.email or "").strip().lower()
        return user

    def save_user(self, request: HttpRequest, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form=form)
        plan, known = getattr(sociallogin, _PLAN_ATTR)
        audit.record(action="user.created", actor=f"system:{plan.provider.source}", target=user,
                     details={"email": user.email, "provider": plan.provider.id,
                              "subject": plan.subject})
        identity.identity_sync(user=user, plan=plan, known=known)
        return user

    def on_authentication_error(self, request, provider, error=None, exception=None,
                                extra_context=None) -> None:
        provider_id = getattr(getattr(provider, "app", None), "provider_id", "")
        logger.warning("Sign-in through %s failed: %s %r", provider_id, error, exception)
        audit.record(action="auth.login_failed", actor="anonymous",
                     details={"provider": provider_id, "error": str(error or ""),
                              "exception": type(exception).__name__ if exception else ""})
        configured = identity.provider_get(provider_id)
        raise refusal(request, "provider_error.html", {
            "provider_name": configured.name if configured else provider_id,
            "unreachable": isinstance(exception, requests.ConnectionError | requests.Timeout),
        }, status=502 if exception is not None else 400)


def remember_sign_in(request: HttpRequest, sociallogin) -> identity.AccessPlan | None:
    """Keep the facts of this provider sign-in in the session (for logout, the MFA rule and
    the identity page) and tell the person about roles their level of assurance withheld.

    Called once the login is complete, because allauth ends any earlier session first (a
    step-up while signed in) and an MFA stage may come between the callback and the login.
    """
    provider = identity.provider_get(sociallogin.account.provider)
    if provider is None:
        return None
    plan = identity.access_plan(provider, identity.claims_of(sociallogin.account.extra_data))
    identity.resolve_tenants(plan)
    request.session[OIDC_SESSION_KEY] = {
        "provider": provider.id, "acr": plan.acr, "local_mfa": provider.require_local_mfa,
        "withheld": plan.withheld, "step_up_acr": plan.step_up_acr,
    }
    if plan.withheld:
        roles = ", ".join(sorted({w["role"].replace("_", " ") for w in plan.withheld}))
        messages.warning(
            request,
            f"You signed in at level {plan.acr or 'unknown'}, which is too low for: {roles} "
            f"(needs {plan.step_up_acr}). Open Identity in your account menu to step up.")
    if plan.unknown_organizations:
        messages.warning(
            request,
            f"Not onboarded yet: {', '.join(plan.unknown_organizations)}. Ask the platform "
            "operator to add your organization.")
    return plan
