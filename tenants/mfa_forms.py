"""allauth's second-factor forms, throttled per (account, client) like the password step
(see `tenants.sign_in_throttle`), so wrong codes slow down only whoever types them; an
authenticator whose seed can't be decrypted is left out with a message (`tenants.mfa`)."""

from allauth.core import context
from allauth.mfa.adapter import get_adapter
from allauth.mfa.base.forms import AuthenticateForm, ReauthenticateForm
from allauth.mfa.base.internal.flows import check_rate_limit
from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import messages

from portal import stored_secrets
from tenants import mfa, sign_in_throttle


class _ThrottledCode:
    def clean_code(self) -> str:
        try:
            attempt = sign_in_throttle.begin(context.request, step="second-factor",
                                             account=str(self.user.pk))
        except sign_in_throttle.SignInThrottled as exc:
            raise forms.ValidationError(exc.message("codes")) from None
        code = self._check_code()
        attempt.succeeded()
        return code

    def _check_code(self) -> str:
        """allauth's `BaseAuthenticateForm.clean_code`, except that authenticators whose seed
        can't be decrypted are skipped: the person's other ones still work, and the answer
        says why a code of the unreadable one is not accepted."""
        clear_rate_limit = check_rate_limit(self.user)
        code = self.cleaned_data["code"]
        unreadable = stored_secrets.mfa_unreadable(self.user)
        main = None
        for authenticator in Authenticator.objects.filter(user=self.user).exclude(
                type=Authenticator.Type.WEBAUTHN):
            if main is None or authenticator.type == Authenticator.Type.TOTP:
                main = authenticator  # failure signals go to the main authenticator only
            if authenticator in unreadable:
                continue
            if authenticator.wrap().validate_code(code):
                authenticator.user = self.user
                self.authenticator = authenticator
                clear_rate_limit()
                for each in unreadable:
                    messages.warning(context.request, mfa.message_for(each))
                return code
        if main is not None:
            self._emit_authentication_failed(main)
        if unreadable:
            raise forms.ValidationError([mfa.message_for(each) for each in unreadable])
        raise get_adapter().validation_error("incorrect_code")


class ThrottledAuthenticateForm(_ThrottledCode, AuthenticateForm):
    pass


class ThrottledReauthenticateForm(_ThrottledCode, ReauthenticateForm):
    pass
