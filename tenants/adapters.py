from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest

import audit

INVITATION_SESSION_KEY = "portal_invitation_token"


class AccountAdapter(DefaultAccountAdapter):
    """Sign-up is open only to people holding a valid invitation (unless the operator opens it)."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
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
