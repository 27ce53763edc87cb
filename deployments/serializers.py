from rest_framework import serializers

from deployments.backends.kserve import ALLOWED_ARGS
from deployments.backends.llmisvc import PRESET_ARGS
from deployments.models import (
    Autoscaler,
    Backend,
    Cluster,
    CredentialKind,
    Deployment,
    DeploymentEvent,
    DeploymentMode,
    KVEvictionPolicy,
    LLMServicePreset,
    Runtime,
    ScaleMetric,
    SchedulerMode,
    TenantNamespace,
)
from models_catalog.models import ModelTask
from portal.text import validate_display_name, validate_header_token


class ClusterOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Cluster
        fields = ["id", "name", "api_url", "jurisdiction", "credential_kind", "gpu_capacity",
                  "gateway_namespace", "default_mode", "server_version", "llm_inference_service",
                  "native_oci_models", "native_oci_detail", "last_check_ok",
                  "last_check_message", "last_checked_at", "created_at", "updated_at"]


class TenantNamespaceSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.slug", help_text="Tenant slug.")
    namespace = serializers.CharField(source="name")

    class Meta:
        model = TenantNamespace
        fields = ["tenant", "namespace", "synced_at", "ok", "message"]


class NamespaceSyncSerializer(serializers.Serializer):
    tenants = serializers.IntegerField(help_text="Active tenants whose namespace sync was "
                                                 "queued.")


class ClusterCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    api_url = serializers.URLField(max_length=300)
    jurisdiction = serializers.CharField(max_length=8)
    credential_kind = serializers.ChoiceField(choices=CredentialKind.choices,
                                              default=CredentialKind.TOKEN)
    credentials = serializers.CharField(
        write_only=True, help_text="A token, or a kubeconfig with inline credentials only "
                                   "(`token`, `client-certificate-data` + `client-key-data`, "
                                   "`certificate-authority-data`); never returned.")
    ca_bundle = serializers.CharField(required=False, allow_blank=True, default="")
    gpu_capacity = serializers.DictField(child=serializers.IntegerField(min_value=0),
                                         required=False, default=dict)
    gateway_namespace = serializers.CharField(max_length=63, default="istio-system")
    default_mode = serializers.ChoiceField(choices=DeploymentMode.choices,
                                           default=DeploymentMode.STANDARD)


class ClusterUpdateSerializer(ClusterCreateSerializer):
    name = None
    credentials = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                        default="")


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeploymentEvent
        fields = ["at", "level", "status", "message"]


class DeploymentOutputSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.slug")
    tenant = serializers.CharField(source="tenant.slug", allow_null=True, default=None)
    cluster = serializers.CharField(source="cluster.name", allow_null=True, default=None)
    version = serializers.CharField(source="version.version", allow_null=True, default=None)
    canary_version = serializers.CharField(source="canary_version.version", allow_null=True,
                                           default=None)
    llm_preset = serializers.CharField(source="llm_preset.name", allow_null=True, default=None,
                                       help_text="LLMInferenceService: the preset's name.")

    class Meta:
        model = Deployment
        fields = ["id", "name", "backend", "model", "tenant", "cluster", "namespace",
                  "resource_name", "mode", "status", "status_reason", "version",
                  "canary_version", "canary_traffic_percent", "runtime", "gpu_product",
                  "gpu_count", "cpu", "memory", "min_replicas", "max_replicas", "scale_metric",
                  "scale_target", "extra_args", "llm_preset", "pods_per_replica",
                  "prefill_replicas", "autoscaler", "url", "base_url", "conditions",
                  "observed", "created_at", "updated_at"]


class DeploymentDetailSerializer(DeploymentOutputSerializer):
    events = EventSerializer(many=True, read_only=True)

    class Meta(DeploymentOutputSerializer.Meta):
        fields = DeploymentOutputSerializer.Meta.fields + ["events"]


class DeploymentCreateSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="ModelVersion id (published and signed)")
    cluster = serializers.IntegerField()
    backend = serializers.ChoiceField(
        choices=Backend.choices, default=Backend.KSERVE,
        help_text="kserve or llmisvc: a KServe LLMInferenceService built on `preset`; the "
                  "runtime, GPU, CPU, memory, mode, scale and extra_args fields are then not "
                  "used. (An external endpoint is registered at /api/deployments/external/.)")
    preset = serializers.IntegerField(required=False, allow_null=True, default=None,
                                      help_text="LLMInferenceService preset id.")
    autoscaler = serializers.ChoiceField(choices=Autoscaler.choices, required=False,
                                         allow_blank=True, default="",
                                         help_text="LLMInferenceService: when min < max.")
    prefill_replicas = serializers.IntegerField(min_value=0, max_value=64, default=0,
                                                help_text="LLMInferenceService: pods of a "
                                                          "separate prefill pool.")
    tenant = serializers.SlugField(required=False, allow_null=True, default=None,
                                   help_text="Tenant slug for a dedicated deployment; "
                                             "empty: shared.")
    name = serializers.CharField(max_length=63, required=False, allow_blank=True, default="",
                                 validators=[validate_display_name])
    mode = serializers.ChoiceField(choices=DeploymentMode.choices, required=False,
                                   allow_blank=True, default="")
    runtime = serializers.ChoiceField(choices=Runtime.choices, default=Runtime.VLLM)
    gpu_product = serializers.CharField(required=False, allow_blank=True, default="")
    gpu_count = serializers.IntegerField(min_value=0, max_value=16, default=0)
    cpu = serializers.RegexField(r"^[0-9]+(?:\.[0-9]+)?m?$", default="4")
    memory = serializers.RegexField(r"^[0-9]+(?:Ki|Mi|Gi|Ti|k|M|G|T)?$", default="16Gi")
    min_replicas = serializers.IntegerField(min_value=0, max_value=64, default=1)
    max_replicas = serializers.IntegerField(min_value=1, max_value=64, default=1)
    scale_metric = serializers.ChoiceField(choices=ScaleMetric.choices, required=False,
                                           allow_blank=True, default="")
    scale_target = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                            default=None)
    extra_args = serializers.DictField(
        required=False, default=dict,
        help_text=f"Allowed flags: {', '.join(ALLOWED_ARGS)}; value true for a bare flag.")
    dry_run = serializers.BooleanField(default=False, help_text="Validate and return the "
                                                                "manifest; apply nothing.")

    def validate_backend(self, value: str) -> str:
        if value == Backend.EXTERNAL:
            raise serializers.ValidationError("Register an external endpoint with POST "
                                              "/api/deployments/external/.")
        return value


class UpdateVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    canary_traffic_percent = serializers.IntegerField(min_value=1, max_value=99, required=False,
                                                      allow_null=True, default=None)


class ScaleSerializer(serializers.Serializer):
    min_replicas = serializers.IntegerField(min_value=0, max_value=64)
    max_replicas = serializers.IntegerField(min_value=1, max_value=64)
    scale_metric = serializers.ChoiceField(choices=ScaleMetric.choices, required=False,
                                           allow_blank=True, default="")
    scale_target = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                            default=None)
    autoscaler = serializers.ChoiceField(choices=Autoscaler.choices, required=False,
                                         allow_blank=True, allow_null=True, default=None,
                                         help_text="LLMInferenceService; absent keeps it.")
    prefill_replicas = serializers.IntegerField(min_value=0, max_value=64, required=False,
                                                allow_null=True, default=None,
                                                help_text="LLMInferenceService; absent keeps "
                                                          "it.")


class ManifestSerializer(serializers.Serializer):
    manifest = serializers.DictField()
    yaml = serializers.CharField()


class GpuAllocationSerializer(serializers.Serializer):
    cluster = serializers.CharField()
    tenant = serializers.CharField(help_text="Tenant slug, or 'shared'.")
    gpu_product = serializers.CharField()
    gpus = serializers.IntegerField(help_text="Peak GPUs held (GPUs × max replicas).")
    deployments = serializers.IntegerField()


class ExternalEndpointCreateSerializer(serializers.Serializer):
    model = serializers.SlugField(max_length=100, help_text="Catalog model slug; a new slug "
                                                            "adds the model (give `task`).")
    task = serializers.ChoiceField(choices=ModelTask.choices, required=False, allow_blank=True,
                                   default="", help_text="Required when `model` is new.")
    base_url = serializers.URLField(max_length=500, help_text="OpenAI-compatible base URL, "
                                                              "e.g. http://10.0.0.5:8000/v1")
    upstream_model = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                           default="", help_text="Empty: the catalog slug.")
    upstream_api_key = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                             default="", validators=[validate_header_token],
                                             help_text="Stored encrypted; never returned.")
    tenant = serializers.SlugField(required=False, allow_null=True, default=None,
                                   help_text="Tenant slug for a dedicated endpoint; empty: "
                                             "shared.")
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                 validators=[validate_display_name])


class ExternalEndpointUpdateSerializer(serializers.Serializer):
    base_url = serializers.URLField(max_length=500, required=False)
    upstream_model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                 validators=[validate_display_name],
                                 help_text="Empty: the server's host and port.")
    upstream_api_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, validators=[validate_header_token],
        help_text="A new key; an empty string removes the stored one; absent keeps it.")


class TenantDeploymentSerializer(serializers.ModelSerializer):
    """What a tenant may know about a deployment: no cluster, namespace, URL or key."""

    model = serializers.CharField(source="model.slug")
    model_name = serializers.CharField(source="model.name")
    version = serializers.CharField(source="version.version", allow_null=True, default=None)
    replicas = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = ["id", "model", "model_name", "version", "status", "replicas", "created_at"]

    def get_replicas(self, deployment) -> int | None:
        return deployment.observed.get("replicas") if deployment.observed else None


class TenantSharedDeploymentSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.slug")
    model_name = serializers.CharField(source="model.name")

    class Meta:
        model = Deployment
        fields = ["model", "model_name", "status"]


class TenantDeploymentsSerializer(serializers.Serializer):
    dedicated = TenantDeploymentSerializer(many=True)
    shared = TenantSharedDeploymentSerializer(many=True)


class LLMPresetSerializer(serializers.ModelSerializer):
    """An LLMInferenceService preset (LLMInferenceServiceConfig), as the API reads and writes
    it. `runtime_args` uses the flags of the allow-list; true for a bare flag."""

    runtime_args = serializers.DictField(
        required=False, default=dict,
        help_text=f"Allowed flags: {', '.join(PRESET_ARGS)}; value true for a bare flag.")
    scheduler = serializers.ChoiceField(choices=SchedulerMode.choices,
                                        default=SchedulerMode.DEFAULT)
    scheduler_config = serializers.DictField(required=False, default=dict,
                                             help_text="The EndpointPickerConfig, for the "
                                                       "custom scheduler.")
    kv_offload_policy = serializers.ChoiceField(choices=KVEvictionPolicy.choices,
                                                default=KVEvictionPolicy.LRU)
    in_use = serializers.IntegerField(read_only=True, default=0,
                                      help_text="Deployments (not deleted) that use it.")

    class Meta:
        model = LLMServicePreset
        fields = ["id", "name", "description", "runtime_image", "runtime_args", "gpu_product",
                  "gpu_count", "cpu", "memory", "tensor_parallel", "data_parallel",
                  "data_local_parallel", "pipeline_parallel", "scheduler", "scheduler_replicas",
                  "scheduler_config", "kv_offload_cpu", "kv_offload_policy", "kv_offload_disk",
                  "revision", "in_use", "created_at", "updated_at"]
        read_only_fields = ["revision", "created_at", "updated_at"]
        # The service checks names, images and the rest once, with messages that say what to do.
        extra_kwargs = {"name": {"validators": []}, "runtime_image": {"validators": []},
                        "description": {"validators": []}}
