from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms

from gateway.selectors import key_owner_choices
from models_catalog.models import Model
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


class BulkRevokeForm(forms.Form):
    """Which keys to revoke at once: a tenant's (optionally one person's and/or those allowed
    to one model), or with `across_tenants` every tenant's keys allowed to one model."""

    owner = forms.ModelChoiceField(queryset=None, required=False, empty_label="Everyone",
                                   label="Person", help_text="Only this person's keys.")
    model = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="Any model", to_field_name="slug",
        help_text="Only the keys that list this model among their allowed models.")
    key_ids = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        if tenant is None:
            del self.fields["owner"]
            self.fields["model"].queryset = Model.objects.order_by("slug")
            self.fields["model"].required = True
            self.fields["model"].empty_label = None
        else:
            self.fields["owner"].queryset = key_owner_choices(tenant=tenant)
            self.fields["owner"].label_from_instance = lambda user: user.email
            self.fields["model"].queryset = model_list_for_tenant(tenant=tenant)

    def clean_key_ids(self) -> list[int] | None:
        raw = self.cleaned_data["key_ids"].strip()
        if not raw:
            return None
        try:
            return [int(part) for part in raw.split(",")]
        except ValueError:
            raise forms.ValidationError("Preview the keys again.") from None
