from __future__ import annotations

import json
from decimal import Decimal

from django import forms

from models_catalog.models import Model, ModelLifecycle, ModelTask, VersionStatus
from portal.dates import validate_supported_date
from portal.text import holds_unstorable_text, validate_display_name
from tenants.models import Tenant


class CatalogFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search")
    task = forms.ChoiceField(required=False, choices=[("", "Any task"), *ModelTask.choices])
    lifecycle = forms.ChoiceField(required=False,
                                  choices=[("", "Any lifecycle"), *ModelLifecycle.choices])


class UploadMetadataForm(forms.Form):
    """Wizard step 1: a new model, or a new version of an existing one."""

    existing_model = forms.ModelChoiceField(
        queryset=Model.objects.none(), required=False, label="Model",
        empty_label="A new model", help_text="Add a version to an existing model, or describe a "
                                             "new one below.")
    slug = forms.SlugField(required=False, max_length=100,
                           help_text="The model name API clients send, e.g. mistral-7b.")
    name = forms.CharField(required=False, max_length=200, validators=[validate_display_name])
    task = forms.ChoiceField(required=False, choices=ModelTask.choices)
    provider = forms.CharField(required=False, max_length=100, label="Provider / family",
                               validators=[validate_display_name])
    license = forms.CharField(required=False, max_length=100, validators=[validate_display_name])
    context_length = forms.IntegerField(required=False, min_value=1)
    model_card = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                                 help_text="Markdown. Raw HTML is shown as text.")
    version = forms.RegexField(regex=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64,
                               label="Version label", help_text="e.g. 1.0 or 2026-11-rc1",
                               error_messages={"invalid": "Use letters, digits, dots, dashes and "
                                                          "underscores."})
    base_model = forms.CharField(required=False, max_length=200)
    training_data = forms.CharField(required=False, max_length=500,
                                    label="Training data snapshot")
    source_commit = forms.CharField(required=False, max_length=200)
    hyperparameters = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                      help_text='JSON object, e.g. {"lr": 2e-5, "epochs": 3}')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["existing_model"].queryset = Model.objects.order_by("name")

    def clean_hyperparameters(self) -> dict:
        raw = self.cleaned_data["hyperparameters"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("This is not valid JSON.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object ({…}).")
        if holds_unstorable_text(value):
            raise forms.ValidationError("Remove the NUL character (\\u0000) or unpaired "
                                        "surrogate: no field accepts it.")
        return value

    def clean(self):
        data = super().clean()
        if not data.get("existing_model"):
            for name in ("slug", "name", "task"):
                if not data.get(name):
                    self.add_error(name, "Required for a new model.")
            if data.get("slug") and Model.objects.filter(slug=data["slug"]).exists():
                self.add_error("slug", "A model with this slug exists: choose it above.")
        return data

    def model_values(self) -> dict:
        data = self.cleaned_data
        return {name: data[name] for name in ("slug", "name", "task", "provider", "license",
                                              "context_length", "model_card")}

    def version_values(self) -> dict:
        data = self.cleaned_data
        return {name: data[name] for name in ("version", "base_model", "training_data",
                                              "source_commit", "hyperparameters")}


class ReferenceForm(forms.Form):
    repository = forms.CharField(max_length=255, help_text="In the landing namespace, e.g. "
                                                           "landing/mistral-7b.")
    reference = forms.CharField(max_length=140, label="Tag or digest")


class SubmitForm(forms.Form):
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                           label="Note for the approver")


class RejectForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class _SunsetFields(forms.Form):
    """A deprecation's sunset (UTC) and successor; both optional."""

    sunset_at = forms.DateTimeField(
        required=False, label="Sunset (UTC)", validators=[validate_supported_date],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Deprecated only: when it stops serving. Tenants that used it in the last "
                  "90 days are told.")
    successor = forms.ModelChoiceField(
        queryset=Model.objects.exclude(lifecycle=ModelLifecycle.RETIRED).order_by("slug"),
        required=False, to_field_name="slug", empty_label="None",
        help_text="The model to move to; the gateway names it after the sunset.")

    def service_values(self) -> dict:
        return {"sunset_at": self.cleaned_data["sunset_at"],
                "successor": self.cleaned_data["successor"]}


class VersionLifecycleForm(_SunsetFields):
    status = forms.ChoiceField(choices=[(VersionStatus.PUBLISHED, "Published"),
                                        (VersionStatus.DEPRECATED, "Deprecated"),
                                        (VersionStatus.RETIRED, "Retired")])
    field_order = ["status", "sunset_at", "successor"]


class ModelLifecycleForm(_SunsetFields):
    lifecycle = forms.ChoiceField(choices=ModelLifecycle.choices)
    field_order = ["lifecycle", "sunset_at", "successor"]


class EntitlementsForm(forms.Form):
    all_tenants = forms.BooleanField(required=False, label="Every tenant may use this model")
    tenants = forms.ModelMultipleChoiceField(queryset=Tenant.objects.none(), required=False,
                                             widget=forms.CheckboxSelectMultiple,
                                             to_field_name="slug")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenants"].queryset = Tenant.objects.order_by("name")

    def clean(self):
        data = super().clean()
        if not data.get("all_tenants") and not data.get("tenants"):
            self.add_error("tenants", "Choose the tenants, or allow every tenant.")
        return data


class PriceForm(forms.Form):
    input_per_million = forms.DecimalField(min_value=Decimal("0"), max_digits=12,
                                           decimal_places=6, label="Input, per million tokens")
    output_per_million = forms.DecimalField(min_value=Decimal("0"), max_digits=12,
                                            decimal_places=6, label="Output, per million tokens")
    currency = forms.RegexField(regex=r"^[A-Z]{3}$", initial="EUR", max_length=3,
                                error_messages={"invalid": "A three-letter code, e.g. EUR."})
    effective_from = forms.DateTimeField(required=False, label="From (UTC, empty: now)",
                                         validators=[validate_supported_date],
                                         widget=forms.DateTimeInput(
                                             attrs={"type": "datetime-local"}))


class ModelCardForm(forms.ModelForm):
    class Meta:
        model = Model
        fields = ["name", "provider", "license", "context_length", "description", "model_card"]
        widgets = {"model_card": forms.Textarea(attrs={"rows": 10}),
                   "description": forms.Textarea(attrs={"rows": 2})}
