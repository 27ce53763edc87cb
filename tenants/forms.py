from django import forms

from tenants.models import Tenant, TenantRole


class TenantForm(forms.ModelForm):
    PROFILE_FIELDS = ("name", "slug", "contact_email", "jurisdiction")
    QUOTA_FIELDS = ("max_gpus", "max_api_keys", "rate_limit_rpm", "rate_limit_tpm",
                    "default_monthly_budget", "budget_currency")

    class Meta:
        model = Tenant
        fields = [
            "name", "slug", "contact_email", "jurisdiction",
            "max_gpus", "max_api_keys", "rate_limit_rpm", "rate_limit_tpm",
            "default_monthly_budget", "budget_currency",
        ]
        help_texts = {
            "slug": "Short identifier used in URLs and API paths; it can't be changed later.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["slug"].disabled = True
        self.fields["jurisdiction"].widget.attrs["placeholder"] = "DE"

    def profile_fields(self):
        return [self[name] for name in self.PROFILE_FIELDS]

    def quota_fields(self):
        return [self[name] for name in self.QUOTA_FIELDS]


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(choices=TenantRole.choices, initial=TenantRole.DEVELOPER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=TenantRole.choices)


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False,
                             widget=forms.TextInput(attrs={"placeholder": "Reason (optional)"}))
