"""LLMInferenceService presets (LLMInferenceServiceConfig) and deployments that use them.

A preset is curated once by an MSP admin and applied by the portal, with each deployment that
uses it, into that deployment's namespace. Editing a preset in use rolls the change out to its
deployments at once: each is checked again (capacity, quota) before anything is saved, and
each gets a pending change on its timeline that the worker applies.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from deployments.backends.kserve import QUANTITY, format_extra_args, parse_extra_args
from deployments.backends.llmisvc import PRESET_ARGS, config_spec
from deployments.models import (
    Autoscaler,
    Backend,
    Cluster,
    Deployment,
    DeploymentStatus,
    LLMServicePreset,
    SchedulerMode,
)
from deployments.services import admission, lifecycle
from models_catalog.models import ModelVersion
from portal.api import refusal
from tenants.models import Tenant

S = DeploymentStatus
PRESET_FIELDS = ("name", "description", "runtime_image", "runtime_args", "gpu_product",
                 "gpu_count", "cpu", "memory", "tensor_parallel", "data_parallel",
                 "data_local_parallel", "pipeline_parallel", "scheduler", "scheduler_replicas",
                 "scheduler_config", "kv_offload_cpu", "kv_offload_policy", "kv_offload_disk")
# The deployment fields a preset decides (copied, so bookings and quotas see them).
SHAPE_FIELDS = ("gpu_product", "gpu_count", "cpu", "memory", "pods_per_replica")
GPU_PRODUCT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
Refuse = Callable[[str, str], None]  # refuse(field, message) records a field error


def _check_preset(preset: LLMServicePreset) -> None:
    """Every refusal of a preset's values, as field errors."""
    errors: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    try:
        preset.full_clean()
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    _check_runtime_args(preset, refuse)
    _check_resources(preset, refuse)
    _check_parallelism(preset, refuse)
    if preset.scheduler == SchedulerMode.CUSTOM:
        config = preset.scheduler_config
        if not isinstance(config, dict) or config.get("kind") != "EndpointPickerConfig":
            refuse("scheduler_config", "Give an EndpointPickerConfig (kind: "
                                       "EndpointPickerConfig) for the custom scheduler.")
    else:
        preset.scheduler_config = {}
    if errors:
        raise refusal(errors)


def _check_runtime_args(preset: LLMServicePreset, refuse: Refuse) -> None:
    """The runtime arguments parse, and name none that a preset field sets; the preset keeps
    them as parsed."""
    try:
        args = parse_extra_args(format_extra_args(preset.runtime_args or {}))
    except ValidationError as exc:
        refuse("runtime_args", " ".join(exc.messages))
    else:
        unknown = set(args) - set(PRESET_ARGS)
        if unknown:
            refuse("runtime_args", "Set tensor parallelism in its own field: KServe passes "
                                   "it to vLLM from spec.parallelism.")
        preset.runtime_args = args


def _check_resources(preset: LLMServicePreset, refuse: Refuse) -> None:
    """CPU, memory and the KV-cache offload tiers are Kubernetes quantities (a disk tier only
    behind a CPU tier), and GPUs name their product; without GPUs the product is cleared."""
    for field in ("cpu", "memory"):
        if not QUANTITY.match(getattr(preset, field) or ""):
            refuse(field, "Use a Kubernetes quantity, e.g. 8, 500m, 64Gi.")
    for field in ("kv_offload_cpu", "kv_offload_disk"):
        if getattr(preset, field) and not QUANTITY.match(getattr(preset, field)):
            refuse(field, "Use a Kubernetes quantity, e.g. 10Gi.")
    if preset.kv_offload_disk and not preset.kv_offload_cpu:
        refuse("kv_offload_cpu", "A disk tier needs the CPU tier in front of it (KServe).")
    if preset.gpu_count and not GPU_PRODUCT.fullmatch(preset.gpu_product or ""):
        refuse("gpu_product", "Give the GPU product (the node label value of "
                              "nvidia.com/gpu.product, e.g. NVIDIA-A100-SXM4-80GB).")
    if not preset.gpu_count:
        preset.gpu_product = ""


def _check_parallelism(preset: LLMServicePreset, refuse: Refuse) -> None:
    """The parallelism KServe can run, and a GPU count per pod that fits its ranks."""
    if preset.data_parallel % preset.data_local_parallel:
        refuse("data_local_parallel", "The data-parallel ranks in all must be a multiple of "
                                      "the ranks per pod.")
    if preset.pipeline_parallel > 1 and (preset.data_parallel > 1
                                         or preset.data_local_parallel > 1):
        refuse("pipeline_parallel", "KServe runs pipeline or data parallelism, not both.")
    needed = preset.gpus_per_pod_needed
    if preset.gpu_count and needed != preset.gpu_count:
        refuse("gpu_count", f"Tensor × data-parallel ranks per pod is {needed}: give each pod "
                            f"{needed} GPUs, or change the parallelism.")
    if not preset.gpu_count and needed > 1:
        refuse("gpu_count", "Tensor and data parallelism spread a model over GPUs: give the "
                            "pods GPUs, or set both to 1.")


def _name_taken(name: str, exclude: LLMServicePreset | None = None) -> bool:
    taken = LLMServicePreset.objects.in_service().filter(name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    return taken.exists()


def _details(preset: LLMServicePreset) -> dict:
    return {"name": preset.name, "revision": preset.revision,
            "runtime_image": preset.runtime_image, "gpus": preset.gpu_count,
            "gpu_product": preset.gpu_product, "parallelism": {
                "tensor": preset.tensor_parallel, "data": preset.data_parallel,
                "data_local": preset.data_local_parallel,
                "pipeline": preset.pipeline_parallel},
            "scheduler": preset.scheduler, "kv_offload": preset.kv_offload_cpu or "off"}


@transaction.atomic
def llm_preset_create(*, actor, **fields) -> LLMServicePreset:
    preset = LLMServicePreset(**{k: v for k, v in fields.items() if k in PRESET_FIELDS})
    _check_preset(preset)
    if _name_taken(preset.name):
        raise refusal({"name": "A preset with this name exists."})
    preset.created_by = actor if getattr(actor, "pk", None) else None
    preset.save()
    audit.record(action="llm_preset.created", actor=actor, target=preset,
                 details=_details(preset))
    return preset


def _users(preset: LLMServicePreset):
    return Deployment.objects.filter(backend=Backend.LLMISVC, llm_preset=preset).exclude(
        status__in=[S.DELETED, S.DELETING]).select_related(
        "cluster", "tenant", "model", "version", "canary_version", "previous_version")


def llm_preset_update(*, actor, preset: LLMServicePreset, **fields) -> LLMServicePreset:
    """Change a preset. When what it applies changes, every deployment using it is checked
    with the new shape first (a refusal refuses the edit), then gets a pending change."""
    before = LLMServicePreset.objects.get(pk=preset.pk)
    for field, value in fields.items():
        if field in PRESET_FIELDS and field != "name":
            setattr(preset, field, value)
    _check_preset(preset)
    changed = {f: getattr(preset, f) for f in PRESET_FIELDS
               if getattr(preset, f) != getattr(before, f)}
    if not changed:
        return preset
    rolls_out = config_spec(preset) != config_spec(before)
    shape = {"gpu_product": preset.gpu_product, "gpu_count": preset.gpu_count,
             "cpu": preset.cpu, "memory": preset.memory,
             "pods_per_replica": preset.pods_per_replica}
    users = list(_users(preset)) if rolls_out else []
    for deployment in users:  # refusals (audited) before anything is saved
        proposed = copy.copy(deployment)
        proposed.llm_preset = preset
        for field, value in shape.items():
            setattr(proposed, field, value)
        try:
            admission.kserve_deployment_validate(actor=actor, deployment=proposed)
        except ValidationError as exc:
            raise refusal(f"{deployment.name} on {deployment.cluster.name} uses this "
                          f"preset and would be refused: {' '.join(exc.messages)}"
                          ) from exc
    with transaction.atomic():
        if rolls_out:
            preset.revision = before.revision + 1
        preset.save()
        audit.record(action="llm_preset.updated", actor=actor, target=preset,
                     details={**_details(preset), "changed": sorted(changed),
                              "deployments": [d.pk for d in users]})
    for deployment in users:
        _roll_out(actor=actor, deployment=deployment, preset=preset, shape=shape)
    return preset


def _roll_out(*, actor, deployment: Deployment, preset: LLMServicePreset, shape: dict) -> None:
    """A preset change on one deployment: a pending change when it is settled or serving;
    one the worker is about to apply anyway takes the new shape as it is."""
    message = f"Preset {preset.name} changed (revision {preset.revision}): applying it again."
    settled = (S.READY, S.FAILED, S.PROGRESSING, S.STOPPED)
    if deployment.status in settled:
        lifecycle._change(actor=actor, deployment=deployment,
                                    action="deployment.preset_changed", message=message,
                                    details={"preset": preset.name,
                                             "revision": preset.revision}, **shape)
        return
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(**shape)
        lifecycle._event(deployment, message)


@transaction.atomic
def llm_preset_delete(*, actor, preset: LLMServicePreset) -> LLMServicePreset:
    """Retire a preset no deployment uses any more (the row stays for their history)."""
    preset = LLMServicePreset.objects.select_for_update().get(pk=preset.pk)
    if preset.archived_at:
        raise refusal(f"{preset.name} is already deleted.")
    users = list(_users(preset).values_list("name", flat=True)[:6])
    if users:
        shown = ", ".join(users[:5]) + (", …" if len(users) > 5 else "")
        raise refusal(f"{preset.name} is used by deployments that are not deleted "
                      f"({shown}): delete them or wait until they show Deleted.")
    preset.archived_at = timezone.now()
    preset.save(update_fields=["archived_at", "updated_at"])
    audit.record(action="llm_preset.deleted", actor=actor, target=preset,
                 details={"name": preset.name, "revision": preset.revision})
    return preset


def llm_deployment_build(
    *, version: ModelVersion, cluster: Cluster, tenant: Tenant | None,
    preset: LLMServicePreset | None, min_replicas: int = 1, max_replicas: int = 1,
    autoscaler: str = "", prefill_replicas: int = 0, name: str = "",
) -> Deployment:
    """An unsaved LLMInferenceService deployment of a published ModelCar, with the preset's
    GPU shape: what the wizard previews as YAML."""
    resource_name = admission.resource_name_for(version, name)
    if autoscaler not in Autoscaler.values or min_replicas == max_replicas:
        autoscaler = ""
    shape = ({"gpu_product": preset.gpu_product, "gpu_count": preset.gpu_count,
              "cpu": preset.cpu, "memory": preset.memory,
              "pods_per_replica": preset.pods_per_replica} if preset else {})
    return Deployment(
        model=version.model, tenant=tenant, name=resource_name, backend=Backend.LLMISVC,
        cluster=cluster, version=version, namespace=admission.namespace_for(tenant),
        resource_name=resource_name, upstream_model=resource_name, llm_preset=preset,
        min_replicas=min_replicas, max_replicas=max_replicas, autoscaler=autoscaler,
        prefill_replicas=prefill_replicas, **shape)
