from __future__ import annotations

import json
from decimal import Decimal

from django import forms

from models_catalog.models import (
    AnnexXIIInformation,
    Model,
    ModelLifecycle,
    ModelTask,
    ModelVersion,
    VersionStatus,
    lineage_digest_validator,
)
from models_catalog.provenance import ProvenanceKind
from portal.dates import validate_supported_date
from portal.text import holds_unstorable_text, validate_display_name
from tenants.models import Tenant


class CatalogFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search")
    task = forms.ChoiceField(required=False, choices=[("", "Any task"), *ModelTask.choices])
    lifecycle = forms.ChoiceField(required=False,
                                  choices=[("", "Any lifecycle"), *ModelLifecycle.choices])


def parse_dataset_lines(text: str) -> list[tuple[str, str]]:
    """One dataset a line: its identifier, then (after a space) its digest if known."""
    datasets = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        digest = ""
        if len(parts) > 1 and lineage_digest_validator.regex.match(parts[-1]):
            digest = parts.pop()
        datasets.append((" ".join(parts), digest))
    return datasets


def dataset_lines(version: ModelVersion) -> str:
    return "\n".join(f"{d.identifier} {d.digest}".strip() for d in version.datasets.all())


class LineageFields(forms.Form):
    """Base model (a catalog version or an external one, with its digest) and datasets."""

    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, label="Base model in the catalog",
        empty_label="None (or an external model below)",
        help_text="The catalog version these weights were tuned or derived from.")
    base_model = forms.CharField(required=False, max_length=200, label="External base model",
                                 help_text="Where the weights came from outside the catalog, "
                                           "e.g. hf.co/mistralai/Mistral-7B-v0.3.")
    base_model_digest = forms.CharField(required=False, max_length=300,
                                        label="External base model digest",
                                        help_text="e.g. sha256:… of its weights, or git:<commit>")
    datasets = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Datasets",
        help_text="One a line: the identifier, a space, its snapshot digest (e.g. "
                  "s3://corpus/clinical-notes-2026 sha256:…).")

    def __init__(self, *args, version: ModelVersion | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        choices = ModelVersion.objects.select_related("model").exclude(
            status=VersionStatus.REJECTED).order_by("model__slug", "version")
        if version is not None and version.pk:
            choices = choices.exclude(pk=version.pk)
        self.fields["base_version"].queryset = choices

    def clean_datasets(self) -> list[tuple[str, str]]:
        return parse_dataset_lines(self.cleaned_data["datasets"])

    def lineage_values(self) -> dict:
        data = self.cleaned_data
        return {name: data[name] for name in ("base_version", "base_model", "base_model_digest",
                                              "datasets")}


class LineageForm(LineageFields):
    @classmethod
    def for_version(cls, version: ModelVersion) -> LineageForm:
        return cls(version=version, initial={
            "base_version": version.base_version_id, "base_model": version.base_model,
            "base_model_digest": version.base_model_digest,
            "datasets": dataset_lines(version)})


class ProvenanceQueryForm(forms.Form):
    kind = forms.ChoiceField(choices=ProvenanceKind.choices, label="Derived from")
    identifier = forms.CharField(max_length=300, help_text="A dataset identifier, an external "
                                 "base model, or a catalog version as <model>:<version>.")
    digest = forms.CharField(required=False, max_length=300,
                             help_text="Optional: only this snapshot.")


class UploadMetadataForm(LineageFields):
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
    training_data = forms.CharField(required=False, max_length=500,
                                    label="Training data snapshot")
    source_commit = forms.CharField(required=False, max_length=200)
    hyperparameters = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                      help_text='JSON object, e.g. {"lr": 2e-5, "epochs": 3}')

    field_order = ["existing_model", "slug", "name", "task", "provider", "license",
                   "context_length", "model_card", "version", "base_version", "base_model",
                   "base_model_digest", "datasets", "training_data", "source_commit",
                   "hyperparameters"]

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
        return {**{name: data[name] for name in ("version", "training_data", "source_commit",
                                                 "hyperparameters")},
                **self.lineage_values()}


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
    cached_input_per_million = forms.DecimalField(
        min_value=Decimal("0"), max_digits=12, decimal_places=6, required=False,
        label="Cached input, per million tokens (empty: the input price)")
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


class AnnexXIIForm(forms.ModelForm):
    """The EU AI Act Annex XII information of a model; licence and context window are the
    model's own fields, edited here too."""

    license = forms.CharField(required=False, max_length=100, label="Licence",
                              validators=[validate_display_name])
    context_length = forms.IntegerField(required=False, min_value=1,
                                        label="Context window (tokens)")

    class Meta:
        model = AnnexXIIInformation
        fields = ["intended_tasks", "acceptable_use", "architecture", "parameter_count",
                  "training_approach", "input_modalities", "output_modalities",
                  "training_data_summary", "limitations", "training_energy_kwh"]
        widgets = {name: forms.Textarea(attrs={"rows": 3})
                   for name in ("intended_tasks", "acceptable_use", "training_data_summary",
                                "limitations")}
        labels = {"intended_tasks": "Intended tasks and integration",
                  "parameter_count": "Number of parameters"}

    field_order = ["intended_tasks", "acceptable_use", "architecture", "parameter_count",
                   "training_approach", "input_modalities", "output_modalities", "license",
                   "context_length", "training_data_summary", "limitations",
                   "training_energy_kwh"]

    def __init__(self, *args, model: Model, **kwargs):
        kwargs.setdefault("initial", {}).update(license=model.license,
                                                context_length=model.context_length)
        super().__init__(*args, **kwargs)
        self.order_fields(self.field_order)
