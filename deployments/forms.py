from __future__ import annotations

import re

import yaml
from django import forms
from django.core.exceptions import ValidationError

from deployments import selectors
from deployments.backends.kserve import QUANTITY, format_extra_args, parse_extra_args
from deployments.backends.llmisvc import PRESET_ARGS
from deployments.models import (
    Autoscaler,
    Backend,
    Cluster,
    DeploymentMode,
    LLMServicePreset,
    Runtime,
    ScaleMetric,
    dns_label_validator,
)
from models_catalog.models import ArtifactKind, Model, ModelLifecycle, ModelTask, ModelVersion
from portal.text import validate_display_name, validate_header_token
from tenants.models import Tenant, TenantStatus


def _quoted(text: str, limit: int = 60) -> str:
    """A user's value inside an error message, shortened so the message stays readable."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_capacity(text: str) -> dict[str, int]:
    """`PRODUCT=COUNT` per line (or comma-separated) → {product: count}."""
    capacity: dict[str, int] = {}
    for item in re.split(r"[\n,]", text or ""):
        item = item.strip()
        if not item:
            continue
        product, _, count = item.partition("=")
        product, count = product.strip(), count.strip()
        if not product or not count.isdigit() or len(count) > 6:
            raise ValidationError(f"{_quoted(item)}: write PRODUCT=COUNT, e.g. "
                                  "NVIDIA-A100-SXM4-80GB=8.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", product):
            raise ValidationError(f"{_quoted(product)} is not a node label value (at most 63 "
                                  "letters, digits, '.', '-', '_').")
        capacity[product] = int(count)
    return capacity


class SecretTextarea(forms.Textarea):
    """A textarea that never sends its value back to the browser (credentials)."""

    def format_value(self, value):
        return None


class ClusterForm(forms.ModelForm):
    api_url = forms.URLField(label="API server URL", max_length=300, assume_scheme="https",
                             help_text="e.g. https://k8s.example.eu:6443")
    credentials = forms.CharField(
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off"}), required=False,
        help_text="A service-account token, or a kubeconfig with inline credentials only "
                  "(token or client certificate data; no exec, auth-provider or file paths). "
                  "Stored encrypted and never shown again; leave empty to keep the stored one.")
    capacity = forms.CharField(
        label="GPU products and capacity", required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "NVIDIA-A100-SXM4-80GB=8"}),
        help_text="One per line: the node label value of nvidia.com/gpu.product = GPUs the "
                  "portal may book on this cluster.")

    class Meta:
        model = Cluster
        fields = ["name", "api_url", "jurisdiction", "credential_kind", "ca_bundle",
                  "gateway_namespace", "default_mode"]
        widgets = {"ca_bundle": forms.Textarea(
            attrs={"rows": 3, "placeholder": "-----BEGIN CERTIFICATE-----"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["name"].disabled = True
            self.initial["capacity"] = "\n".join(
                f"{product}={count}" for product, count in self.instance.gpu_capacity.items())
        else:
            self.fields["credentials"].required = True
            self.fields["credentials"].help_text = (
                "A service-account token, or a kubeconfig with inline credentials only (token "
                "or client certificate data; no exec, auth-provider or file paths). Stored "
                "encrypted and never shown again.")

    def clean_capacity(self):
        return parse_capacity(self.cleaned_data["capacity"])

    def service_fields(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["gpu_capacity"] = self.cleaned_data["capacity"]
        return data


# --- External endpoints -------------------------------------------------------------------

def _upstream_key_field(label: str, help_text: str) -> forms.CharField:
    """The upstream server's API key: write-only (never rendered back), a valid header."""
    return forms.CharField(
        required=False, label=label, help_text=help_text, validators=[validate_header_token],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))


class ExternalEndpointForm(forms.Form):
    model = forms.ModelChoiceField(
        queryset=Model.objects.none(), required=False, label="Catalog model",
        empty_label="— a new model (name it below) —",
        help_text="The catalog model this server serves.")
    model_slug = forms.SlugField(
        max_length=100, required=False, label="New model slug",
        help_text="Only when the model is not in the catalog yet: it is added, available to "
                  "every tenant.")
    task = forms.ChoiceField(choices=[("", "—")] + ModelTask.choices, required=False,
                             help_text="Of the new model.")
    base_url = forms.URLField(
        max_length=500, label="Base URL", assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "http://10.0.0.5:8000/v1"}),
        help_text="The OpenAI-compatible base URL; the health check asks its /models.")
    upstream_model = forms.CharField(
        max_length=200, required=False, label="Upstream model name",
        help_text="The name the server serves the model under; empty: the catalog slug.")
    upstream_api_key = _upstream_key_field(
        "Upstream API key", "If the server wants one. Stored encrypted and never shown again.")
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.filter(status=TenantStatus.ACTIVE), required=False,
        empty_label="Shared — serves every entitled tenant", label="Audience")
    name = forms.CharField(max_length=100, required=False, label="Display name",
                           validators=[validate_display_name],
                           help_text="Empty: the server's host and port.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = Model.objects.exclude(
            lifecycle=ModelLifecycle.RETIRED).order_by("slug")
        self.fields["model"].label_from_instance = lambda m: f"{m.name} ({m.slug}, {m.task})"

    def clean(self):
        data = super().clean()
        if data.get("model") and data.get("model_slug"):
            self.add_error("model_slug", "Choose a catalog model or name a new one, not both.")
        elif not data.get("model") and not data.get("model_slug") \
                and "model_slug" not in self.errors:
            self.add_error("model", "Choose a catalog model, or name a new one below.")
        elif data.get("model_slug") and not data.get("task"):
            self.add_error("task", "Choose the task of the new model.")
        return data

    def service_fields(self) -> dict:
        return dict(self.cleaned_data)


class ExternalEndpointEditForm(forms.Form):
    base_url = ExternalEndpointForm.base_fields["base_url"]
    upstream_model = ExternalEndpointForm.base_fields["upstream_model"]
    name = ExternalEndpointForm.base_fields["name"]
    upstream_api_key = _upstream_key_field(
        "New upstream API key",
        "Empty keeps the stored key. Stored encrypted and never shown again.")
    remove_upstream_api_key = forms.BooleanField(
        required=False, label="Remove the stored upstream API key")

    def __init__(self, *args, has_key: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not has_key:  # nothing stored to keep or remove
            del self.fields["remove_upstream_api_key"]
            key = self.fields["upstream_api_key"]
            key.label = "Upstream API key"
            key.help_text = "If the server wants one. Stored encrypted and never shown again."

    def clean(self):
        data = super().clean()
        if data.get("upstream_api_key") and data.get("remove_upstream_api_key"):
            self.add_error("remove_upstream_api_key",
                           "Give a new key or remove the stored one, not both.")
        return data

    def service_fields(self) -> dict:
        data = self.cleaned_data
        key = "" if data.get("remove_upstream_api_key") else (data["upstream_api_key"] or None)
        return {"base_url": data["base_url"], "upstream_model": data["upstream_model"],
                "name": data["name"], "upstream_api_key": key}


# --- The deploy wizard: one form per step; earlier steps travel as hidden fields ----------

class TargetStep(forms.Form):
    title = "Model and audience"
    version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), empty_label=None,
        help_text="Published versions only; the signature is verified again before applying.")
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.filter(status=TenantStatus.ACTIVE), required=False,
        empty_label="Shared — serves every entitled tenant",
        label="Audience", help_text="Dedicated: runs in that tenant's namespace, counts "
                                    "against its GPU quota.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = selectors.deployable_versions()
        self.fields["version"].label_from_instance = (
            lambda v: f"{v.model.name} ({v.model.slug}) · {v.version}"
                      + (" · ModelPack" if v.is_modelpack else ""))


SERVING_BACKENDS = [(Backend.KSERVE, "InferenceService (vLLM or Hugging Face runtime)"),
                    (Backend.LLMISVC, "LLMInferenceService (llm-d, from a preset)")]


class ClusterStep(forms.Form):
    title = "Cluster"
    cluster = forms.ModelChoiceField(queryset=Cluster.objects.none(), empty_label=None,
                                     widget=forms.RadioSelect)
    backend = forms.ChoiceField(choices=SERVING_BACKENDS, required=False,
                                label="Serve it as", initial=Backend.KSERVE,
                                help_text="LLMInferenceService only on clusters where the check "
                                          "found it served.")
    mode = forms.ChoiceField(choices=[("", "Cluster default")] + DeploymentMode.choices,
                             required=False, label="Deployment mode",
                             help_text="InferenceService only.")

    def __init__(self, *args, version: ModelVersion | None = None, **kwargs):
        from deployments.services import jurisdiction_allowed

        super().__init__(*args, **kwargs)
        self.version = version  # chosen on the first step: a ModelPack needs oci+native://
        allowed = [c.pk for c in selectors.cluster_list()
                   if jurisdiction_allowed(c.jurisdiction)]
        self.fields["cluster"].queryset = Cluster.objects.filter(pk__in=allowed)
        if not selectors.llm_clusters().filter(pk__in=allowed).exists():
            self.fields["backend"].choices = SERVING_BACKENDS[:1]

    def clean_backend(self):
        return self.cleaned_data["backend"] or Backend.KSERVE

    def clean(self):
        from deployments.services import packaging_problem

        data = super().clean()
        cluster = data.get("cluster")
        problem = packaging_problem(self.version, cluster) if self.version and cluster else None
        if problem:
            self.add_error("cluster", problem)
        if data.get("backend") == Backend.LLMISVC and cluster \
                and cluster.llm_inference_service is not True:
            self.add_error("backend", f"{cluster.name} did not serve LLMInferenceService at its "
                                      "last check: choose a cluster that does, or serve it as "
                                      "an InferenceService.")
        return data


def _replica_range(*, lowest: int) -> tuple[forms.IntegerField, forms.IntegerField]:
    """A serving step's `min_replicas` and `max_replicas` (up to 64); `lowest` 0 lets the
    service scale to zero."""
    return (forms.IntegerField(min_value=lowest, max_value=64, initial=1),
            forms.IntegerField(min_value=1, max_value=64, initial=1))


class _ServingStep(forms.Form):
    """What the two serving steps share: the service's name, first (its help, `name_help`,
    says what the name becomes), and the cluster's free GPUs per product (`self.free`) for
    the choices' labels."""

    name_help = ""
    name = forms.CharField(max_length=63, required=False, validators=[dns_label_validator])

    def __init__(self, *args, cluster: Cluster | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].help_text = self.name_help
        self.free = selectors.cluster_free_gpus(cluster) if cluster else {}


class ResourcesStep(_ServingStep):
    title = "Runtime and resources"
    name_help = ("The InferenceService name and the model name the runtime serves; defaults to "
                 "the model's slug.")
    runtime = forms.ChoiceField(choices=Runtime.choices, initial=Runtime.VLLM)
    gpu_product = forms.ChoiceField(choices=[], required=False, label="GPU product")
    gpu_count = forms.IntegerField(min_value=0, max_value=16, initial=1,
                                   label="GPUs per replica")
    cpu = forms.CharField(max_length=16, initial="8", label="CPU per replica")
    memory = forms.CharField(max_length=16, initial="64Gi", label="Memory per replica")
    min_replicas, max_replicas = _replica_range(lowest=0)
    scale_metric = forms.ChoiceField(choices=[("", "Runtime default")] + ScaleMetric.choices,
                                     required=False,
                                     help_text="Standard mode: cpu or memory. Knative: "
                                               "concurrency or rps.")
    scale_target = forms.IntegerField(min_value=1, required=False)
    extra_args = forms.CharField(
        required=False, label="Extra runtime arguments",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "--max-model-len=8192"}),
        help_text="One per line, from the allow-list: --max-model-len, --dtype, "
                  "--gpu-memory-utilization, --tensor-parallel-size, --max-num-seqs, "
                  "--enable-prefix-caching.")

    def __init__(self, *args, cluster: Cluster | None = None, **kwargs):
        super().__init__(*args, cluster=cluster, **kwargs)
        products = cluster.gpu_products if cluster else []
        self.fields["gpu_product"].choices = [("", "No GPU")] + [
            (p, f"{p} ({self.free[p]} of {cluster.gpu_capacity[p]} free)") for p in products]
        if products:
            self.fields["gpu_product"].initial = products[0]

    def clean_cpu(self):
        return self._quantity("cpu")

    def clean_memory(self):
        return self._quantity("memory")

    def _quantity(self, name):
        value = self.cleaned_data[name].strip()
        if not QUANTITY.match(value):
            raise ValidationError("Use a Kubernetes quantity, e.g. 8, 500m, 64Gi.")
        return value

    def clean_extra_args(self):
        return parse_extra_args(self.cleaned_data["extra_args"])

    def clean(self):
        data = super().clean()
        if data.get("gpu_count") and not data.get("gpu_product"):
            self.add_error("gpu_product", "Choose the GPU product for the GPUs.")
        return data


class LLMResourcesStep(_ServingStep):
    title = "Preset and replicas"
    name_help = ("The LLMInferenceService name, its routing group and the model name vLLM "
                 "serves; defaults to the model's slug.")
    preset = forms.ModelChoiceField(queryset=LLMServicePreset.objects.none(), empty_label=None,
                                    help_text="Runtime, GPUs, parallelism, scheduler and "
                                              "KV-cache offload (LLM presets).")
    min_replicas, max_replicas = _replica_range(lowest=1)
    autoscaler = forms.ChoiceField(choices=[("", "None (fixed replicas)")] + Autoscaler.choices,
                                   required=False,
                                   help_text="Scales between min and max on the Workload "
                                             "Variant Autoscaler's inference metrics.")
    prefill_replicas = forms.IntegerField(
        min_value=0, max_value=64, initial=0, label="Prefill pool",
        help_text="Pods of a separate prefill pool (prefill/decode disaggregation); 0: none.")

    def __init__(self, *args, cluster: Cluster | None = None, **kwargs):
        super().__init__(*args, cluster=cluster, **kwargs)
        presets = selectors.llm_preset_list()
        self.fields["preset"].queryset = presets
        free = self.free

        def label(preset):
            if not preset.gpu_count:
                return f"{preset.name} — CPU only, {preset.cpu} CPU, {preset.memory}"
            where = (f"{free[preset.gpu_product]} free on {cluster.name}"
                     if cluster and preset.gpu_product in cluster.gpu_capacity
                     else f"not on {cluster.name}" if cluster else "")
            pods = f" × {preset.pods_per_replica} pods" if preset.pods_per_replica > 1 else ""
            return (f"{preset.name} — {preset.gpu_count} × {preset.gpu_product}{pods}"
                    + (f" ({where})" if where else ""))
        self.fields["preset"].label_from_instance = label

    def clean(self):
        data = super().clean()
        if (data.get("min_replicas") or 0) > (data.get("max_replicas") or 0):
            self.add_error("max_replicas", "The maximum must be at least the minimum.")
        elif data.get("min_replicas") != data.get("max_replicas") and not data.get("autoscaler"):
            self.add_error("autoscaler", "Choose HPA or KEDA to scale between the minimum and "
                                         "the maximum, or give both the same number.")
        return data


WIZARD_STEPS = [TargetStep, ClusterStep, ResourcesStep]
# The third step, per backend chosen in the second.
RESOURCE_STEPS = {Backend.KSERVE: ResourcesStep, Backend.LLMISVC: LLMResourcesStep}


# --- Actions on a deployment --------------------------------------------------------------

class UpdateVersionForm(forms.Form):
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), empty_label=None)
    canary_traffic_percent = forms.IntegerField(
        min_value=1, max_value=99, required=False, label="Canary traffic %",
        help_text="Empty: a rolling update to 100%.")

    def __init__(self, *args, deployment, **kwargs):
        super().__init__(*args, **kwargs)
        versions = selectors.deployable_versions(deployment.model).exclude(
            pk=deployment.version_id)
        if deployment.cluster_id and selectors.cluster_modelpack_problem(deployment.cluster):
            # The cluster can't mount ModelPack artifacts (oci+native://): offer ModelCars only.
            versions = versions.exclude(artifact_kind=ArtifactKind.MODELPACK)
        self.fields["version"].queryset = versions


class ScaleForm(forms.Form):
    min_replicas = forms.IntegerField(min_value=0, max_value=64)
    max_replicas = forms.IntegerField(min_value=1, max_value=64)
    scale_metric = forms.ChoiceField(choices=[("", "Runtime default")] + ScaleMetric.choices,
                                     required=False)
    scale_target = forms.IntegerField(min_value=1, required=False)


class LLMScaleForm(forms.Form):
    min_replicas = forms.IntegerField(min_value=1, max_value=64)
    max_replicas = forms.IntegerField(min_value=1, max_value=64)
    autoscaler = LLMResourcesStep.base_fields["autoscaler"]
    prefill_replicas = forms.IntegerField(min_value=0, max_value=64, label="Prefill pool")


# --- LLMInferenceService presets ----------------------------------------------------------

class LLMPresetForm(forms.ModelForm):
    runtime_args = forms.CharField(
        required=False, label="vLLM arguments", max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "--max-model-len=8192"}),
        help_text="One per line, from the allow-list: " + ", ".join(PRESET_ARGS) + ".")
    scheduler_config = forms.CharField(
        required=False, label="EndpointPickerConfig (YAML)", max_length=20000,
        widget=forms.Textarea(attrs={"rows": 8, "class": "mono",
                                     "placeholder": "apiVersion: inference.networking.x-k8s.io/"
                                                    "v1alpha1\nkind: EndpointPickerConfig\n"
                                                    "plugins: …"}),
        help_text="Only for the custom scheduler: e.g. prefix-cache-aware and load-aware "
                  "scorers.")
    gpu_product = forms.CharField(required=False, max_length=100, label="GPU product",
                                  help_text="Node label value of nvidia.com/gpu.product, e.g. "
                                            "NVIDIA-A100-SXM4-80GB.")

    class Meta:
        model = LLMServicePreset
        fields = ["name", "description", "runtime_image", "runtime_args", "gpu_product",
                  "gpu_count", "cpu", "memory", "tensor_parallel", "data_parallel",
                  "data_local_parallel", "pipeline_parallel", "scheduler",
                  "scheduler_replicas", "scheduler_config", "kv_offload_cpu",
                  "kv_offload_policy", "kv_offload_disk"]
        labels = {"runtime_image": "Runtime image", "gpu_count": "GPUs per pod",
                  "cpu": "CPU per pod", "memory": "Memory per pod",
                  "tensor_parallel": "Tensor parallel", "data_parallel": "Data parallel",
                  "data_local_parallel": "Data parallel per pod",
                  "pipeline_parallel": "Pipeline parallel",
                  "kv_offload_cpu": "KV-cache offload to CPU RAM",
                  "kv_offload_policy": "Eviction policy", "kv_offload_disk": "Disk tier"}
        widgets = {"runtime_image": forms.TextInput(attrs={
            "class": "mono", "placeholder": "registry.example.eu/llm-d/llm-d-cuda:v0.8.0@"
                                            "sha256:…"})}

    FIELDSETS = [
        ("Runtime", ["name", "description", "runtime_image", "runtime_args"]),
        ("Resources per pod", ["gpu_product", "gpu_count", "cpu", "memory"]),
        ("Parallelism", ["tensor_parallel", "data_parallel", "data_local_parallel",
                         "pipeline_parallel"]),
        ("Scheduler and router", ["scheduler", "scheduler_replicas", "scheduler_config"]),
        ("KV-cache offload", ["kv_offload_cpu", "kv_offload_policy", "kv_offload_disk"]),
    ]

    def fieldsets(self) -> list[tuple[str, list]]:
        return [(legend, [self[name] for name in names]) for legend, names in self.FIELDSETS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["name"].disabled = True
            self.initial["runtime_args"] = format_extra_args(self.instance.runtime_args)
            if self.instance.scheduler_config:
                self.initial["scheduler_config"] = yaml.safe_dump(
                    self.instance.scheduler_config, sort_keys=False)

    def clean_runtime_args(self):
        return parse_extra_args(self.cleaned_data["runtime_args"])

    def clean_scheduler_config(self):
        text = self.cleaned_data["scheduler_config"].strip()
        if not text:
            return {}
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValidationError(f"This is not YAML ({exc.__class__.__name__}).") from None
        if not isinstance(value, dict):
            raise ValidationError("Give the EndpointPickerConfig as a YAML mapping.")
        return value

    def _post_clean(self):
        """The service checks the whole preset (and the model's validators) once."""

    def service_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields
                if name in self.cleaned_data}

