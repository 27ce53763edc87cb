from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from models_catalog.models import (
    Model,
    ModelFile,
    ModelLifecycle,
    ModelPrice,
    ModelTask,
    ModelVersion,
    TrainingApproach,
    UploadSession,
    VersionStatus,
)
from models_catalog.provenance import ProvenanceKind
from portal.dates import validate_supported_date
from portal.text import validate_display_name


class ModelOutputSerializer(serializers.ModelSerializer):
    entitled_tenants = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    successor = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Model
        fields = ["slug", "name", "task", "description", "model_card", "provider", "license",
                  "context_length", "lifecycle", "deprecated_at", "sunset_at", "successor",
                  "available_to_all_tenants", "entitled_tenants", "created_at", "updated_at"]


class TenantModelOutputSerializer(serializers.ModelSerializer):
    """What a tenant sees of a model: no entitlement lists of other tenants."""

    class Meta:
        model = Model
        fields = ["slug", "name", "task", "description", "model_card", "provider", "license",
                  "context_length", "lifecycle"]


class ModelCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200, validators=[validate_display_name])
    task = serializers.ChoiceField(choices=ModelTask.choices)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    model_card = serializers.CharField(required=False, allow_blank=True, default="")
    provider = serializers.CharField(required=False, allow_blank=True, default="",
                                     max_length=100, validators=[validate_display_name])
    license = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                    validators=[validate_display_name])
    context_length = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                              default=None)
    available_to_all_tenants = serializers.BooleanField(required=False, default=True)


class FileOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelFile
        fields = ["path", "size_bytes", "sha256", "format"]


class DatasetSerializer(serializers.Serializer):
    identifier = serializers.CharField(max_length=300)
    digest = serializers.CharField(max_length=300, required=False, allow_blank=True, default="",
                                   help_text="algorithm:value, e.g. sha256:<64 hex digits>")


class LineageSerializer(serializers.Serializer):
    """A version's lineage. `base_version` names a catalog version as `<model>:<version>`;
    an external base model goes in `base_model` (with `base_model_digest`) instead."""

    base_version = serializers.CharField(required=False, allow_blank=True, default="",
                                         max_length=200, help_text="<model slug>:<version>")
    base_model = serializers.CharField(required=False, allow_blank=True, default="",
                                       max_length=200)
    base_model_digest = serializers.CharField(required=False, allow_blank=True, default="",
                                              max_length=300)
    datasets = DatasetSerializer(many=True, required=False, default=list)

    def lineage_values(self) -> dict:
        """For the services: the base version looked up, datasets as pairs."""
        from models_catalog.services import version_by_reference

        data = self.validated_data
        reference = data.get("base_version", "")
        return {"base_version": version_by_reference(reference) if reference else None,
                "base_model": data.get("base_model", ""),
                "base_model_digest": data.get("base_model_digest", ""),
                "datasets": [(d["identifier"], d.get("digest", ""))
                             for d in data.get("datasets", [])]}


class VersionOutputSerializer(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    base_version = serializers.SerializerMethodField()
    datasets = DatasetSerializer(many=True, read_only=True)
    uploaded_by = serializers.SlugRelatedField(slug_field="email", read_only=True,
                                               allow_null=True)
    submitted_by = serializers.SlugRelatedField(slug_field="email", read_only=True,
                                                allow_null=True)
    approved_by = serializers.SlugRelatedField(slug_field="email", read_only=True,
                                               allow_null=True)
    files = FileOutputSerializer(many=True, read_only=True)
    findings = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["model", "version", "status", "status_reason", "work_error",
                  "landing_repository", "trusted_repository", "manifest_digest",
                  "manifest_media_type", "artifact_kind", "size_bytes", "base_version",
                  "base_model", "base_model_digest", "datasets", "training_data",
                  "source_commit", "hyperparameters", "scan_verdict", "scan_progress",
                  "scanned_at", "findings", "files", "sbom_digest", "signature_key_id",
                  "signature_artifact_digest", "model_signature",
                  "model_signature_artifact_digest", "signed_at", "signature_status",
                  "signature_checked_at", "signature_detail", "uploaded_by", "submitted_by",
                  "submitted_at", "submit_note", "approved_by", "approved_at", "created_at"]

    def get_base_version(self, obj) -> str:
        return str(obj.base_version) if obj.base_version_id else ""

    def get_findings(self, obj) -> list[dict]:
        return list((obj.scan_report or {}).get("findings") or [])


class TenantVersionOutputSerializer(serializers.ModelSerializer):
    files = FileOutputSerializer(many=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["version", "status", "trusted_repository", "manifest_digest", "size_bytes",
                  "scan_verdict", "files", "sbom_digest", "signature_key_id", "signed_at",
                  "signature_status", "signature_checked_at", "model_signature",
                  "model_signature_artifact_digest"]


class VersionCreateSerializer(LineageSerializer):
    version = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    training_data = serializers.CharField(required=False, allow_blank=True, default="",
                                          max_length=500)
    source_commit = serializers.CharField(required=False, allow_blank=True, default="",
                                          max_length=200)
    hyperparameters = serializers.DictField(required=False, default=dict)

    def version_values(self) -> dict:
        data = self.validated_data
        return {"version": data["version"], "training_data": data["training_data"],
                "source_commit": data["source_commit"],
                "hyperparameters": data["hyperparameters"], **self.lineage_values()}


class ProvenanceQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ProvenanceKind.choices)
    identifier = serializers.CharField(max_length=300)
    digest = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class UploadCreateSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255)
    size_bytes = serializers.IntegerField(min_value=1)


class UploadOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="PUT the chunks here; GET where it stands.")
    complete_url = serializers.SerializerMethodField(help_text="POST here after the last chunk.")
    chunk_bytes = serializers.SerializerMethodField(help_text="The chunk size the portal uses.")

    class Meta:
        model = UploadSession
        fields = ["id", "filename", "size_bytes", "received_bytes", "status", "created_at",
                  "url", "complete_url", "chunk_bytes"]

    def get_url(self, obj) -> str:
        return reverse("api-upload", args=[obj.pk])

    def get_complete_url(self, obj) -> str:
        return reverse("api-upload-complete", args=[obj.pk])

    def get_chunk_bytes(self, obj) -> int:
        return settings.MODEL_UPLOAD_CHUNK_BYTES


class ReferenceSerializer(serializers.Serializer):
    repository = serializers.CharField(max_length=255)
    reference = serializers.CharField(max_length=140, help_text="tag or sha256 digest")


class SubmitSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="")


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class _SunsetSerializer(serializers.Serializer):
    sunset_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, validators=[validate_supported_date],
        help_text="Deprecated only: when it stops serving (the gateway then refuses its "
                  "requests, naming the successor). Tenants whose keys used it in the last 90 "
                  "days are told.")
    successor = serializers.SlugRelatedField(
        slug_field="slug", queryset=Model.objects.all(), required=False, allow_null=True,
        default=None, help_text="The model to move to.")


class VersionLifecycleSerializer(_SunsetSerializer):
    status = serializers.ChoiceField(choices=[VersionStatus.PUBLISHED, VersionStatus.DEPRECATED,
                                              VersionStatus.RETIRED])


class ModelLifecycleSerializer(_SunsetSerializer):
    lifecycle = serializers.ChoiceField(choices=ModelLifecycle.choices)


class EntitlementsSerializer(serializers.Serializer):
    all_tenants = serializers.BooleanField()
    tenants = serializers.ListField(child=serializers.SlugField(), required=False, default=list)


class PriceSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelPrice
        fields = ["input_per_million", "output_per_million", "cached_input_per_million",
                  "currency", "effective_from"]


class PriceCreateSerializer(serializers.Serializer):
    input_per_million = serializers.DecimalField(max_digits=12, decimal_places=6,
                                                 min_value=Decimal("0"))
    output_per_million = serializers.DecimalField(max_digits=12, decimal_places=6,
                                                  min_value=Decimal("0"))
    cached_input_per_million = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=Decimal("0"), required=False,
        allow_null=True, default=None,
        help_text="Price of input tokens read from the model server's prefix cache; null: "
                  "the input price.")
    currency = serializers.RegexField(r"^[A-Z]{3}$", default="EUR")
    effective_from = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                               validators=[validate_supported_date])


class AnnexXIISerializer(serializers.Serializer):
    """Input of the Annex XII information: any subset of the fields (PATCH) or all (PUT)."""

    intended_tasks = serializers.CharField(allow_blank=True)
    acceptable_use = serializers.CharField(allow_blank=True)
    architecture = serializers.CharField(allow_blank=True, max_length=200)
    parameter_count = serializers.IntegerField(allow_null=True, min_value=1)
    training_approach = serializers.ChoiceField(choices=[("", "Not given"),
                                                         *TrainingApproach.choices])
    input_modalities = serializers.CharField(allow_blank=True, max_length=200)
    output_modalities = serializers.CharField(allow_blank=True, max_length=200)
    license = serializers.CharField(allow_blank=True, max_length=100,
                                    validators=[validate_display_name])
    context_length = serializers.IntegerField(allow_null=True, min_value=1)
    training_data_summary = serializers.CharField(allow_blank=True)
    limitations = serializers.CharField(allow_blank=True)
    training_energy_kwh = serializers.DecimalField(allow_null=True, max_digits=16,
                                                   decimal_places=3, min_value=0)


class AnnexXIIOutputSerializer(serializers.Serializer):
    """The Annex XII document (see `selectors.annex_xii_document`)."""

    model = serializers.CharField()
    name = serializers.CharField()
    provider = serializers.CharField()
    intended_tasks = serializers.CharField()
    acceptable_use = serializers.CharField()
    architecture = serializers.CharField()
    parameter_count = serializers.IntegerField(allow_null=True)
    training_approach = serializers.CharField()
    input_modalities = serializers.CharField()
    output_modalities = serializers.CharField()
    license = serializers.CharField()
    context_window = serializers.IntegerField(allow_null=True)
    training_data_summary = serializers.CharField()
    limitations = serializers.CharField()
    training_energy_kwh = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
