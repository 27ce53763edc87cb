"""allauth's second-factor forms, throttled per (account, client) like the password step
(see `tenants.sign_in_throttle`), so wrong codes slow down only whoever types them."""

from allauth.core import context
from allauth.mfa.base.forms import AuthenticateForm, ReauthenticateForm
from django import forms

from tenants import sign_in_throttle


class _ThrottledCode:
    def clean_code(self) -> str:
        try:
            attempt = sign_in_throttle.begin(context.request, step="second-factor",
                                             account=str(self.user.pk))
        except sign_in_throttle.SignInThrottled as exc:
            raise forms.ValidationError(exc.message("codes")) from None
        code = super().clean_code()
        attempt.succeeded()
        return code


class ThrottledAuthenticateForm(_ThrottledCode, AuthenticateForm):
    pass


class ThrottledReauthenticateForm(_ThrottledCode, ReauthenticateForm):
    pass
