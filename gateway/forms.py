from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms

from models_catalog.selectors import model_list_for_tenant
from portal.dates import validate_supported_date
from portal.text import validate_display_name


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[validate_display_name],
                           help_text="What uses it, e.g. “CI pipeline”.")
    expires_on = forms.DateField(
        required=False, label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}), validators=[validate_supported_date],
        help_text="The key stops working at the end of this day (UTC). Empty: no expiry.")
    allowed_models = forms.ModelMultipleChoiceField(
        queryset=None, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model your organisation may use.")
    rpm_limit = forms.IntegerField(min_value=1, required=False, label="Requests per minute",
                                   help_text="Empty: only your organisation's limit applies.")
    tpm_limit = forms.IntegerField(min_value=1, required=False, label="Tokens per minute")
    allowed_networks = forms.CharField(
        required=False, label="Allowed client networks",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "203.0.113.0/24"}),
        help_text="One CIDR per line; empty: any address.")

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].queryset = model_list_for_tenant(tenant=tenant)

    def clean_allowed_networks(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["allowed_networks"].splitlines()
                if line.strip()]

    def service_values(self) -> dict:
        data = self.cleaned_data
        expires_on = data["expires_on"]
        expires_at = (datetime.combine(expires_on + timedelta(days=1), time(), tzinfo=UTC)
                      if expires_on else None)
        return {"name": data["name"], "expires_at": expires_at,
                "allowed_models": list(data["allowed_models"]), "rpm_limit": data["rpm_limit"],
                "tpm_limit": data["tpm_limit"], "allowed_networks": data["allowed_networks"]}


GRACE_CHOICES = [(0, "Immediately"), (1, "1 hour"), (24, "24 hours"), (168, "7 days")]


class RotateForm(forms.Form):
    grace_hours = forms.TypedChoiceField(choices=GRACE_CHOICES, coerce=int, initial=24,
                                         label="Old secret keeps working for")
