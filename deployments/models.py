from __future__ import annotations

import math

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from models_catalog.models import Model, ModelVersion
from portal.crypto import EncryptedTextField
from portal.text import validate_display_name
from tenants.models import Tenant, User, jurisdiction_validator

dns_label_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use lowercase letters, digits and hyphens (a Kubernetes DNS label).")
# KServe names an InferenceService's objects `<name>-predictor` (and `<name>-<canary>-predictor`)
# and its webhook wants a DNS-1035 label: a letter first, and room for the suffix.
ISVC_NAME_MAX = 53
isvc_name_validator = RegexValidator(
    rf"^[a-z](?:[a-z0-9-]{{0,{ISVC_NAME_MAX - 2}}}[a-z0-9])?$",
    f"Use at most {ISVC_NAME_MAX} lowercase letters, digits and hyphens, starting with a "
    "letter (KServe adds -predictor to it).")


def _one_in_service_per_name(what: str, message: str) -> models.UniqueConstraint:
    """Names are unique among rows in service; an archived row keeps its name for history."""
    return models.UniqueConstraint(fields=["name"], condition=models.Q(archived_at__isnull=True),
                                   name=f"one_{what}_in_service_per_name",
                                   violation_error_message=message)


class InServiceQuerySet(models.QuerySet):
    def in_service(self) -> InServiceQuerySet:
        return self.filter(archived_at__isnull=True)


class ArchivedNotDeleted(models.Model):
    """Base of the named rows (clusters, presets) that are archived instead of deleted, so
    the deployments that used them keep their history. Each has `name` and `archived_at`,
    and its Meta adds `_one_in_service_per_name`: only rows in service hold on to a name."""

    objects = InServiceQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DeploymentMode(models.TextChoices):
    """KServe's deployment mode: a cluster's default, which a deployment may override. It
    decides how a canary runs and which metrics the autoscaler may scale on."""

    STANDARD = "Standard", "Standard (Kubernetes Deployment)"
    KNATIVE = "Knative", "Knative (serverless)"


class CredentialKind(models.TextChoices):
    """What a cluster's stored credentials are: a service-account token, used with the
    cluster's CA bundle, or a kubeconfig (inline credentials only) that may bring its own CA."""

    TOKEN = "token", "Service-account token"
    KUBECONFIG = "kubeconfig", "Kubeconfig"


class Cluster(ArchivedNotDeleted):
    """A Kubernetes cluster with KServe that the MSP deploys models to.

    GPU capacity is configured, not discovered: the portal's service account should not need
    cluster-wide read access to nodes, and the share of a cluster's GPUs the MSP reserves for
    the portal is a business decision the node list cannot tell.
    """

    name = models.SlugField(max_length=63, validators=[dns_label_validator])
    api_url = models.URLField("API server URL", max_length=300)
    ca_bundle = models.TextField("CA bundle (PEM)", blank=True,
                                 help_text="Empty to trust the system's CAs.")
    credential_kind = models.CharField(max_length=16, choices=CredentialKind.choices,
                                       default=CredentialKind.TOKEN)
    credentials_encrypted = EncryptedTextField(
        blank=True, secret_name="cluster credentials (token or kubeconfig)",
        remedy="Enter the token or kubeconfig again (Edit)")
    jurisdiction = models.CharField(max_length=8, validators=[jurisdiction_validator],
                                    help_text="Where the cluster runs, e.g. DE or DE-BY.")
    gpu_capacity = models.JSONField(
        default=dict, blank=True,
        help_text="GPUs per product (node label nvidia.com/gpu.product) reserved for the portal.")
    gateway_namespace = models.CharField(
        max_length=63, default="istio-system", validators=[dns_label_validator],
        help_text="Namespace of the ingress gateway: the only one allowed into tenant "
                  "namespaces.")
    default_mode = models.CharField(max_length=16, choices=DeploymentMode.choices,
                                    default=DeploymentMode.STANDARD)
    server_version = models.CharField(max_length=40, blank=True)
    llm_inference_service = models.BooleanField(
        "LLMInferenceService served", null=True, blank=True,
        help_text="Whether the last check found KServe's LLMInferenceService and "
                  "LLMInferenceServiceConfig served at serving.kserve.io/v1alpha2.")
    native_oci_models = models.BooleanField(
        "native OCI models", null=True, blank=True,
        help_text="Whether the last check found what KServe's `oci+native://` storage needs "
                  "(ImageVolume: Kubernetes 1.33 or later; KServe's enableOciModelSupport): "
                  "what ModelPack artifacts are deployed with.")
    native_oci_detail = models.CharField(max_length=300, blank=True,
                                         help_text="Why not, when the check says no.")
    last_check_ok = models.BooleanField(null=True, blank=True)
    last_check_message = models.CharField(max_length=500, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the cluster was deleted from the portal. The row stays so the "
                  "deployments that ran there keep their history; its name is free again.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(ArchivedNotDeleted.Meta):
        constraints = [_one_in_service_per_name("cluster", "A cluster with this name exists.")]

    @property
    def gpu_products(self) -> list[str]:
        return sorted(self.gpu_capacity)


class Backend(models.TextChoices):
    EXTERNAL = "external", "External OpenAI-compatible endpoint"
    KSERVE = "kserve", "KServe InferenceService"
    LLMISVC = "llmisvc", "KServe LLMInferenceService (llm-d)"


# Backends whose objects the portal applies to a cluster: a manifest, the worker's state
# machine, GPU bookings and the reconcile loop. (External endpoints run elsewhere.)
CLUSTER_BACKENDS = (Backend.KSERVE, Backend.LLMISVC)


class DeploymentStatus(models.TextChoices):
    """Where a deployment stands, as `deployments.services` sets it: pending, applying and
    progressing until it serves (ready) or failed; stopping and deleting on request, until
    stopped or deleted."""

    PENDING = "pending", "Pending"
    APPLYING = "applying", "Applying"
    PROGRESSING = "progressing", "Progressing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"


# Statuses in which nothing is in flight: the detail page stops polling.
SETTLED_STATUSES = frozenset({DeploymentStatus.READY, DeploymentStatus.FAILED,
                              DeploymentStatus.STOPPED, DeploymentStatus.DELETED})
# Statuses that hold GPUs (or will, in a moment) for capacity and quota.
ACTIVE_STATUSES = frozenset({DeploymentStatus.PENDING, DeploymentStatus.APPLYING,
                             DeploymentStatus.PROGRESSING, DeploymentStatus.READY,
                             DeploymentStatus.FAILED, DeploymentStatus.STOPPING})


class Runtime(models.TextChoices):
    VLLM = "kserve-vllmserver", "vLLM (kserve-vllmserver)"
    HUGGINGFACE = "kserve-huggingfaceserver", "Hugging Face (kserve-huggingfaceserver)"


RUNTIME_MODEL_FORMAT = {Runtime.VLLM: "vLLM", Runtime.HUGGINGFACE: "huggingface"}


class ScaleMetric(models.TextChoices):
    """What KServe's autoscaler scales a predictor on: Knative on concurrency or requests
    per second, Standard mode (an HPA) on CPU or memory utilisation."""

    CONCURRENCY = "concurrency", "Concurrency"
    RPS = "rps", "Requests per second"
    CPU = "cpu", "CPU utilisation (%)"
    MEMORY = "memory", "Memory utilisation (%)"


class Autoscaler(models.TextChoices):
    """How KServe scales an LLMInferenceService between min and max replicas: the Workload
    Variant Autoscaler (WVA) computes the replicas, an HPA or a KEDA ScaledObject applies them."""

    HPA = "hpa", "HPA (needs the Prometheus Adapter)"
    KEDA = "keda", "KEDA"


class SchedulerMode(models.TextChoices):
    """Whether a preset's LLMInferenceServices route through llm-d's inference scheduler
    (`spec.router.scheduler`), and with which EndpointPickerConfig."""

    NONE = "none", "None (route straight to the model servers)"
    DEFAULT = "default", "llm-d scheduler, KServe's defaults"
    CUSTOM = "custom", "llm-d scheduler, my EndpointPickerConfig"


class KVEvictionPolicy(models.TextChoices):
    """The `evictionPolicy` of a preset's KV-cache offload to CPU RAM (`kvCacheOffloading`);
    used only when the offload is on."""

    LRU = "lru", "LRU"
    ARC = "arc", "ARC"


image_digest_validator = RegexValidator(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[a-f0-9]{64}$",
    "Give the image pinned by digest: registry/repository[:tag]@sha256:<64 hex digits>, so "
    "every cluster runs exactly the runtime that was reviewed.")
preset_name_validator = RegexValidator(
    r"^(?!kserve-)", "Names starting with kserve- are KServe's own well-known configurations.")


class LLMServicePreset(ArchivedNotDeleted):
    """An `LLMInferenceServiceConfig` the MSP curates: the runtime, its GPUs, parallelism,
    scheduler and KV-cache offload. LLMInferenceService deployments reference it through
    `spec.baseRefs`; the portal applies it, under `name`, to the namespace of every deployment
    that uses it (KServe resolves a baseRef in the service's namespace first)."""

    name = models.CharField(
        max_length=50, validators=[dns_label_validator, preset_name_validator],
        help_text="The LLMInferenceServiceConfig's name on the clusters (a DNS label).")
    description = models.CharField(max_length=300, blank=True,
                                   validators=[validate_display_name])
    runtime_image = models.CharField(
        max_length=300, validators=[image_digest_validator],
        help_text="The llm-d / vLLM serving image, pinned by digest.")
    runtime_args = models.JSONField(default=dict, blank=True)
    gpu_product = models.CharField(max_length=100, blank=True,
                                   help_text="Node label value of nvidia.com/gpu.product.")
    gpu_count = models.PositiveSmallIntegerField(
        default=1, validators=[MaxValueValidator(16)],
        help_text="nvidia.com/gpu each pod asks for; 0: CPU only.")
    cpu = models.CharField(max_length=16)
    memory = models.CharField(max_length=16)
    tensor_parallel = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(16)])
    data_parallel = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Data-parallel ranks in all (spec.parallelism.data).")
    data_local_parallel = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(16)],
        help_text="Data-parallel ranks per pod (spec.parallelism.dataLocal).")
    pipeline_parallel = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(16)],
        help_text="Pipeline stages, one pod each.")
    scheduler = models.CharField(max_length=16, choices=SchedulerMode.choices,
                                 default=SchedulerMode.DEFAULT)
    scheduler_replicas = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(8)])
    scheduler_config = models.JSONField(
        default=dict, blank=True,
        help_text="The EndpointPickerConfig, for the custom scheduler.")
    kv_offload_cpu = models.CharField(
        max_length=16, blank=True, help_text="CPU RAM for the KV cache (e.g. 10Gi); empty: off.")
    kv_offload_policy = models.CharField(max_length=8, choices=KVEvictionPolicy.choices,
                                         default=KVEvictionPolicy.LRU)
    kv_offload_disk = models.CharField(
        max_length=16, blank=True, help_text="A node-local disk tier (emptyDir size); empty: none.")
    revision = models.PositiveIntegerField(default=1)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(ArchivedNotDeleted.Meta):
        constraints = [_one_in_service_per_name("llm_preset", "A preset with this name exists.")]

    @property
    def pods_per_replica(self) -> int:
        """Pods of one replica: data-parallel ranks spread over pods, or one per pipeline
        stage (more than one pod makes a multi-node LeaderWorkerSet)."""
        return max(self.data_parallel // self.data_local_parallel, self.pipeline_parallel)

    @property
    def gpus_per_pod_needed(self) -> int:
        return self.tensor_parallel * self.data_local_parallel


class Deployment(models.Model):
    """Somewhere a catalog model is served; the gateway's upstream.

    Shared deployments (no tenant) serve every entitled tenant; dedicated ones only their
    tenant. For KServe the fields below are the desired state the manifest is built from;
    `canary_version` is a pending canary, `previous_version` what a rollback returns to.
    """

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="deployments")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="dedicated_deployments",
                               help_text="Empty for a shared deployment.")
    name = models.CharField(max_length=100, validators=[validate_display_name])
    backend = models.CharField(max_length=16, choices=Backend.choices)
    base_url = models.URLField("upstream base URL", max_length=500, blank=True,
                               help_text="The OpenAI-compatible base URL, e.g. http://host:8000/v1")
    upstream_model = models.CharField(max_length=200, blank=True,
                                      help_text="Model name the upstream expects; defaults to "
                                                "the catalog slug.")
    upstream_api_key_encrypted = EncryptedTextField(
        blank=True, secret_name="upstream API key",
        remedy="Enter the key again on the endpoint's edit page")
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices,
                              default=DeploymentStatus.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)

    # --- KServe desired state ---
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="deployments")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="deployments")
    canary_version = models.ForeignKey(ModelVersion, null=True, blank=True,
                                       on_delete=models.PROTECT, related_name="+")
    canary_traffic_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(99)])
    previous_version = models.ForeignKey(ModelVersion, null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    predictor_name = models.CharField(
        max_length=63, blank=True,
        help_text="KServe `spec.predictor.name` (Standard mode): empty until a canary is "
                  "promoted, then the promoted canary's name, so promotion restarts nothing. "
                  "LLMInferenceService: the name of the one serving the version, once a "
                  "canary was promoted.")
    mode = models.CharField(max_length=16, choices=DeploymentMode.choices, blank=True)
    namespace = models.CharField(max_length=63, blank=True)
    resource_name = models.CharField(max_length=63, blank=True,
                                     validators=[isvc_name_validator])
    runtime = models.CharField(max_length=32, choices=Runtime.choices, blank=True)
    gpu_product = models.CharField(max_length=100, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=0)
    cpu = models.CharField(max_length=16, blank=True)
    memory = models.CharField(max_length=16, blank=True)
    min_replicas = models.PositiveSmallIntegerField(default=1)
    max_replicas = models.PositiveSmallIntegerField(default=1)
    scale_metric = models.CharField(max_length=16, choices=ScaleMetric.choices, blank=True)
    scale_target = models.PositiveIntegerField(null=True, blank=True)
    extra_args = models.JSONField(default=dict, blank=True)

    # --- LLMInferenceService desired state (the GPU shape above is copied from the preset) ---
    llm_preset = models.ForeignKey(LLMServicePreset, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="deployments")
    pods_per_replica = models.PositiveSmallIntegerField(
        default=1, help_text="Pods of one replica (more than one: multi-node).")
    prefill_replicas = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(64)],
        help_text="Pods of a separate prefill pool (spec.prefill); 0: none.")
    autoscaler = models.CharField(max_length=8, choices=Autoscaler.choices, blank=True,
                                  help_text="When min < max replicas.")
    stopped_member = models.CharField(
        max_length=63, blank=True,
        help_text="The LLMInferenceService kept stopped (serving.kserve.io/stop) after a "
                  "promotion: what a rollback starts again.")

    stop_requested = models.BooleanField(default=False)
    delete_requested = models.BooleanField(
        default=False, help_text="Deletion was asked for: a retry after a failed delete "
                                 "deletes again instead of re-applying.")

    applied_manifest = models.JSONField(
        default=dict, blank=True,
        help_text="The manifest last applied: what a pending change is compared to.")

    # --- KServe observed state ---
    url = models.URLField(max_length=500, blank=True)
    conditions = models.JSONField(default=list, blank=True)
    observed = models.JSONField(default=dict, blank=True,
                                help_text="Replicas and traffic as the cluster reports them.")

    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__slug", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "namespace", "resource_name"],
                condition=~models.Q(status="deleted")
                & models.Q(backend__in=["kserve", "llmisvc"]),
                name="one_live_inferenceservice_per_name"),
        ]

    def __str__(self) -> str:
        return f"{self.model.slug} @ {self.name}"

    @property
    def served_model_name(self) -> str:
        return self.upstream_model or self.model.slug

    @property
    def is_settled(self) -> bool:
        return self.status in SETTLED_STATUSES

    @property
    def gpus_reserved(self) -> int:
        """GPUs this deployment may hold at its peak: every replica, plus a canary's pods."""
        return self.gpu_count * self.peak_pods

    @property
    def peak_pods(self) -> int:
        """Pods this deployment may run at its peak: every replica, plus a canary's pods."""
        if self.backend == Backend.LLMISVC:
            # The canary is a second LLMInferenceService with fixed replicas; a stopped one
            # (kept for a rollback) runs no pods.
            pods = self.max_replicas * self.pods_per_replica + self.prefill_replicas
            if self.canary_version_id:
                pods += self.canary_replicas * self.pods_per_replica \
                    + self.canary_prefill_replicas
            return pods
        if not self.canary_version_id:
            return self.max_replicas
        if self.mode == DeploymentMode.STANDARD:
            return self.max_replicas + self.canary_replicas
        return self.max_replicas * 2  # Knative: the candidate autoscales up to max too

    @property
    def canary_replicas(self) -> int:
        """Pods KServe runs for a Standard-mode canary: fixed, ceil(minReplicas × % / 100).
        The portal sizes an LLMInferenceService canary the same way."""
        return math.ceil(self.min_replicas * (self.canary_traffic_percent or 0) / 100)

    @property
    def scheduler_pods(self) -> int:
        """Pods of llm-d's inference scheduler at the peak: each serving LLMInferenceService
        (the stable one and a canary) runs its own."""
        preset = self.llm_preset if self.backend == Backend.LLMISVC else None
        if preset is None or preset.scheduler == SchedulerMode.NONE:
            return 0
        return preset.scheduler_replicas * (2 if self.canary_version_id else 1)

    @property
    def canary_prefill_replicas(self) -> int:
        """The prefill pool of an LLMInferenceService canary, sized like its replicas."""
        return math.ceil(self.prefill_replicas * (self.canary_traffic_percent or 0) / 100)


class DeploymentEvent(models.Model):
    """One step on a deployment's timeline, as the detail page shows it."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices)
    message = models.CharField(max_length=1000)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.message}"


class TenantNamespace(models.Model):
    """A tenant's namespace on one cluster, as last reconciled."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="namespaces")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=63, validators=[dns_label_validator])
    synced_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "tenant"],
                                               name="one_namespace_per_tenant_and_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"
