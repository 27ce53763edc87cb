"""KServe v0.20 `serving.kserve.io/v1alpha2` LLMInferenceService backend (llm-d).

Read against KServe v0.20.0's Go types (`pkg/apis/serving/v1alpha2`), its validating webhook and
its controller (`pkg/controller/v1alpha2/llmisvc`):

- A deployment applies one `LLMInferenceServiceConfig` — its preset, named after it — and one
  or more `LLMInferenceService`s that name it in `spec.baseRefs`. KServe looks a baseRef up in
  the service's own namespace first, then in its system namespace (`kserve`); the portal writes
  the preset into the deployment's namespace, so nothing elsewhere can shadow or change it and
  the portal needs no rights outside the namespaces it manages. KServe merges well-known
  configs, then the baseRefs, then the service's own spec (highest precedence).
- `spec.model.uri` is the ModelCar (`oci://…@sha256:…`), `spec.model.name` the name vLLM
  serves it under (`--served-model-name`); replicas are `spec.replicas`, or `spec.scaling`
  (the Workload Variant Autoscaler with an HPA or KEDA actuator) — never both; a separate
  prefill pool is `spec.prefill` (its own replicas and pod template).
- Canary: every member of a deployment is in one routing group (`spec.router.route.group`,
  the deployment's name) with a `weight`; each member's HTTPRoute carries weighted backends
  for all members. A canary is a second LLMInferenceService at a weight of `percent` beside
  the stable one at `100 - percent`. Promotion stops the old one with the
  `serving.kserve.io/stop: "true"` annotation (KServe keeps a stopped member in the group at
  weight 0 and removes its workloads and route) and gives the new one all the weight; a
  rollback starts the stopped one again and stops the other. A version update without a
  canary changes the stable member in place (a rolling update of its pods).
- Status: conditions `Ready` (from `WorkloadsReady` and `RouterReady`), `PresetsCombined`
  (baseRefs found and merged) and the group's `GroupReady`/`GroupDegraded`; `status.url` is
  the gateway address under `/<namespace>/<name>`, where the OpenAI API answers at `/v1`.
"""

from __future__ import annotations

import hashlib
import re

from deployments import kube
from deployments.backends import ClusterBackend, Observation
from deployments.backends.kserve import (
    ALLOWED_ARGS,
    ANNOTATION_STOP,
    ANNOTATION_VERSION,
    DNS_LABEL_MAX,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    LABEL_MODEL,
    LABEL_TENANT,
    MANAGED_BY,
    _covers,
    apply_object,
    registry_host,
)
from deployments.models import Deployment, DeploymentStatus, LLMServicePreset, SchedulerMode

VERSION = "v1alpha2"
API_VERSION = f"{kube.KSERVE_GROUP}/{VERSION}"
PLURAL = "llminferenceservices"
CONFIG_PLURAL = "llminferenceserviceconfigs"
LABEL_GROUP = "portal.sovereign.eu/llm-group"
LABEL_PRESET = "portal.sovereign.eu/llm-preset"
ANNOTATION_PRESET_REVISION = "portal.sovereign.eu/llm-preset-revision"
MAIN_CONTAINER = "main"  # the container KServe's well-known templates run vLLM in
OPENAI_PATH = "/v1"
# vLLM arguments a preset may add; tensor parallelism comes from spec.parallelism.
PRESET_ARGS = {flag: check for flag, check in ALLOWED_ARGS.items()
               if flag != "--tensor-parallel-size"}
# Conditions in the order a person should read them when something is not ready.
CONDITION_ORDER = ("PresetsCombined", "MainWorkloadReady", "WorkerWorkloadReady",
                   "PrefillWorkloadReady", "PrefillWorkerWorkloadReady", "ScalingReady",
                   "PrefillScalingReady", "WorkloadsReady", "GatewaysReady", "HTTPRoutesReady",
                   "InferencePoolReady", "SchedulerWorkloadReady", "RouterReady", "Ready")


# --- the preset: an LLMInferenceServiceConfig ----------------------------------------------

def _pod(preset: LLMServicePreset, *, with_args: bool = True) -> dict:
    quantities = {"cpu": preset.cpu, "memory": preset.memory}
    if preset.gpu_count:
        quantities[GPU_RESOURCE] = str(preset.gpu_count)
    container = {"name": MAIN_CONTAINER, "image": preset.runtime_image,
                 "resources": {"requests": dict(quantities), "limits": dict(quantities)}}
    if with_args and preset.runtime_args:
        container["args"] = [flag if value is True else f"{flag}={value}"
                             for flag, value in preset.runtime_args.items()]
    pod: dict = {"containers": [container]}
    if preset.gpu_count and preset.gpu_product:
        pod["nodeSelector"] = {GPU_PRODUCT_LABEL: preset.gpu_product}
    return pod


def _parallelism(preset: LLMServicePreset) -> dict:
    parallelism = {}
    if preset.tensor_parallel > 1:
        parallelism["tensor"] = preset.tensor_parallel
    if preset.data_parallel > 1 or preset.data_local_parallel > 1:
        parallelism.update(data=preset.data_parallel, dataLocal=preset.data_local_parallel)
    if preset.pipeline_parallel > 1:
        parallelism["pipeline"] = preset.pipeline_parallel
    return parallelism


def config_spec(preset: LLMServicePreset) -> dict:
    """What the preset sets in every LLMInferenceService that names it in its baseRefs."""
    spec: dict = {"template": _pod(preset)}
    parallelism = _parallelism(preset)
    if parallelism:
        spec["parallelism"] = parallelism
    if preset.pods_per_replica > 1:  # multi-node: the template is the head, these the workers
        spec["worker"] = _pod(preset, with_args=False)
    if preset.kv_offload_cpu:
        offload = {"cpu": preset.kv_offload_cpu, "evictionPolicy": preset.kv_offload_policy}
        if preset.kv_offload_disk:
            offload["secondary"] = [{"fileSystem": {"emptyDir": {"size": preset.kv_offload_disk}}}]
        spec["kvCacheOffloading"] = offload
    if preset.scheduler != SchedulerMode.NONE:
        scheduler: dict = {}
        if preset.scheduler_replicas > 1:
            scheduler["replicas"] = preset.scheduler_replicas
        if preset.scheduler == SchedulerMode.CUSTOM:
            scheduler["config"] = {"inline": preset.scheduler_config}
        spec["router"] = {"scheduler": scheduler}
    return spec


def preset_config(preset: LLMServicePreset, namespace: str) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMInferenceServiceConfig",
        "metadata": {
            "name": preset.name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_PRESET: preset.name},
            "annotations": {ANNOTATION_PRESET_REVISION: str(preset.revision)},
        },
        "spec": config_spec(preset),
    }


# --- the deployment's LLMInferenceServices -------------------------------------------------

def stable_name(deployment: Deployment) -> str:
    return deployment.predictor_name or deployment.resource_name


def canary_member_name(deployment: Deployment, version) -> str:
    """`<name>-v-<version>`: a DNS label of at most 63 characters, unlike the stable one."""
    room = DNS_LABEL_MAX - len(deployment.resource_name) - 1
    suffix = "v-" + re.sub(r"[^a-z0-9]+", "-", version.version.lower()).strip("-")
    if len(suffix) > room:
        suffix = "v" + hashlib.sha256(version.version.encode()).hexdigest()[:room - 1]
    name = f"{deployment.resource_name}-{suffix}".rstrip("-")
    if name == stable_name(deployment):
        name = name[:DNS_LABEL_MAX - 2] + "-c"
    return name


def members(deployment: Deployment) -> list[tuple[str, object, str]]:
    """(name, version, role) of every LLMInferenceService the deployment wants: the stable
    one, a pending canary, and the one a promotion stopped (kept for a rollback)."""
    found = [(stable_name(deployment), deployment.version, "stable")]
    if deployment.canary_version_id:
        found.append((canary_member_name(deployment, deployment.canary_version),
                      deployment.canary_version, "canary"))
    if deployment.stopped_member and deployment.previous_version_id:
        found.append((deployment.stopped_member, deployment.previous_version, "stopped"))
    return found


def _replicas(deployment: Deployment) -> dict:
    if deployment.min_replicas == deployment.max_replicas or not deployment.autoscaler:
        return {"replicas": deployment.max_replicas}
    return {"scaling": {"minReplicas": deployment.min_replicas,
                        "maxReplicas": deployment.max_replicas,
                        "wva": {deployment.autoscaler: {}}}}


def _member(deployment: Deployment, name: str, version, role: str) -> dict:
    preset = deployment.llm_preset
    percent = deployment.canary_traffic_percent or 0
    spec: dict = {"model": {"uri": version.storage_uri(registry_host()),
                            "name": deployment.served_model_name}}
    prefill = deployment.prefill_replicas
    if role == "canary":  # fixed replicas, like a Standard-mode InferenceService canary
        spec["replicas"] = deployment.canary_replicas
        prefill = deployment.canary_prefill_replicas
        weight = percent
    else:
        spec.update(_replicas(deployment))
        weight = {"stable": 100 - percent, "stopped": 0}[role]
    if prefill:
        spec["prefill"] = {"replicas": prefill, "template": _pod(preset)}
        if preset.tensor_parallel > 1:
            spec["prefill"]["parallelism"] = {"tensor": preset.tensor_parallel}
    spec["router"] = {"route": {"group": deployment.resource_name, "weight": weight},
                      "gateway": {}}
    spec["baseRefs"] = [{"name": preset.name}]
    annotations = {ANNOTATION_VERSION: version.version}
    if role == "stopped" or deployment.stop_requested:
        annotations[ANNOTATION_STOP] = "true"
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMInferenceService",
        "metadata": {
            "name": name,
            "namespace": deployment.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                LABEL_MODEL: deployment.model.slug,
                LABEL_TENANT: deployment.tenant.slug if deployment.tenant else "shared",
                LABEL_GROUP: deployment.resource_name,
            },
            "annotations": annotations,
        },
        "spec": spec,
    }


def build_manifest(deployment: Deployment) -> dict:
    """The preset and every LLMInferenceService, as one `v1` List (kubectl, Argo CD and Flux
    apply it as it is)."""
    items = [preset_config(deployment.llm_preset, deployment.namespace)]
    items += [_member(deployment, *member) for member in members(deployment)]
    return {"apiVersion": "v1", "kind": "List", "items": items}


# --- what the cluster says -----------------------------------------------------------------

def _conditions(live: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in (live.get("status") or {}).get("conditions") or []}


def _failing(conditions: dict[str, dict]) -> str:
    for kind in CONDITION_ORDER + ("GroupReady",):
        condition = conditions.get(kind)
        if condition and condition.get("status") == "False":
            return (f"{kind}: {condition.get('reason', '')} "
                    f"{condition.get('message', '')}").strip()
    return ""


def _status_url(live: dict) -> str:
    status = live.get("status") or {}
    url = status.get("url") or next(
        (a.get("url") for a in status.get("addresses") or [] if a.get("url")), "")
    return (url or "").rstrip("/")


def _differs(live: dict | None, desired: dict) -> bool:
    if live is None or not _covers(live.get("spec") or {}, desired["spec"]):
        return True
    annotations = live.get("metadata", {}).get("annotations") or {}
    labels = live.get("metadata", {}).get("labels") or {}
    ours = desired["metadata"]
    if any(annotations.get(k) != v for k, v in ours["annotations"].items()) \
            or any(labels.get(k) != v for k, v in ours["labels"].items()):
        return True
    # A stop annotation someone else added (or removed) is drift too.
    return (ANNOTATION_STOP in annotations) != (ANNOTATION_STOP in ours["annotations"])


class LLMInferenceServiceBackend(ClusterBackend):
    kind = "LLMInferenceService"

    def manifest(self, deployment: Deployment) -> dict:
        return build_manifest(deployment)

    @staticmethod
    def _group_names(k: kube.KubeSession, deployment: Deployment) -> set[str]:
        """Names of the LLMInferenceServices in the deployment's routing group, live."""
        selector = f"{LABEL_GROUP}={deployment.resource_name}"
        found = k.call(k.custom.list_namespaced_custom_object, kube.KSERVE_GROUP, VERSION,
                       deployment.namespace, PLURAL, label_selector=selector)
        return {item["metadata"]["name"] for item in found.get("items") or []
                if (item["metadata"].get("labels") or {}).get(LABEL_GROUP)
                == deployment.resource_name}

    def apply(self, deployment: Deployment) -> str:
        config, *services = build_manifest(deployment)["items"]
        wanted = {body["metadata"]["name"] for body in services}
        with kube.session(deployment.cluster) as k:
            done = [f"preset {config['metadata']['name']} "
                    f"{apply_object(k, CONFIG_PLURAL, config)}"]
            for body in services:
                done.append(f"{body['metadata']['name']} {apply_object(k, PLURAL, body)}")
            for name in sorted(self._group_names(k, deployment) - wanted):
                self._delete(k, deployment.namespace, PLURAL, name)
                done.append(f"{name} removed")
        return "applied (" + "; ".join(done) + ")"

    def observe(self, deployment: Deployment) -> Observation:
        desired = build_manifest(deployment)["items"]
        with kube.session(deployment.cluster) as k:
            live = {}
            for body in desired:
                plural = CONFIG_PLURAL if body["kind"] == "LLMInferenceServiceConfig" else PLURAL
                live[(body["kind"], body["metadata"]["name"])] = self._get(
                    k, deployment.namespace, plural, body["metadata"]["name"])
            strays = self._group_names(k, deployment) - {
                body["metadata"]["name"] for body in desired[1:]}
        drifted = bool(strays) or any(
            _differs(live[(body["kind"], body["metadata"]["name"])], body) for body in desired)
        roles = {name: role for name, _, role in members(deployment)}
        stable = live[("LLMInferenceService", stable_name(deployment))]
        if stable is None:
            return Observation(found=False, problem="The LLMInferenceService is gone.",
                               drifted=True)
        conditions, problems, canaries = [], [], []
        for name, role in roles.items():
            obj = live[("LLMInferenceService", name)]
            found = _conditions(obj or {})
            conditions += [{**c, "object": name} for c in found.values()]
            if role == "stable":
                problems.append(_failing(found))
            elif role == "canary":
                ready = found.get("Ready", {}).get("status") == "True"
                canaries.append({"name": name, "ready": ready,
                                 "trafficPercent": deployment.canary_traffic_percent})
                if not ready:
                    problems.append(f"canary {name}: "
                                    f"{_failing(found) or 'no Ready condition yet'}")
        stable_conditions = _conditions(stable)
        url = _status_url(stable)
        ready = (stable_conditions.get("Ready", {}).get("status") == "True" and bool(url)
                 and all(c["ready"] for c in canaries)
                 and not (canaries and stable_conditions.get("GroupReady", {}).get("status")
                          == "False"))
        group = (((stable.get("status") or {}).get("router") or {}).get("group") or {})
        weights = {m["name"]: m.get("weight", 0) for m in group.get("members") or []
                   if not m.get("stopped")}
        total = sum(weights.values())
        observed = {key: value for key, value in {
            "replicas": (((stable.get("status") or {}).get("workloads") or {}).get("primary")
                         or {}).get("readyReplicas"),
            "traffic": [{"revisionName": name, "percent": round(weight * 100 / total)}
                        for name, weight in sorted(weights.items()) if weight] if total else None,
            "stopped": sorted(m["name"] for m in group.get("members") or [] if m.get("stopped")),
            "canaries": canaries,
        }.items() if value}
        return Observation(
            found=True, ready=ready, service_url=url,
            url=(url + OPENAI_PATH) if url else "",
            problem="" if ready else next((p for p in problems if p), ""),
            conditions=conditions, observed=observed, drifted=drifted)

    def delete(self, deployment: Deployment) -> None:
        """Every LLMInferenceService of the deployment, and its preset when no other live
        deployment in the namespace uses it."""
        with kube.session(deployment.cluster) as k:
            names = self._group_names(k, deployment) | {
                name for name, _, _ in members(deployment)}
            for name in sorted(names):
                self._delete(k, deployment.namespace, PLURAL, name)
            others = Deployment.objects.filter(
                backend=deployment.backend, cluster=deployment.cluster,
                namespace=deployment.namespace, llm_preset=deployment.llm_preset).exclude(
                pk=deployment.pk).exclude(status=DeploymentStatus.DELETED)
            if not others.exists():
                self._delete(k, deployment.namespace, CONFIG_PLURAL, deployment.llm_preset.name)

    @staticmethod
    def _get(k: kube.KubeSession, namespace: str, plural: str, name: str) -> dict | None:
        try:
            return k.call(k.custom.get_namespaced_custom_object, kube.KSERVE_GROUP, VERSION,
                          namespace, plural, name)
        except kube.KubeError as exc:
            if kube.not_found(exc):
                return None
            raise

    @staticmethod
    def _delete(k: kube.KubeSession, namespace: str, plural: str, name: str) -> None:
        try:
            k.call(k.custom.delete_namespaced_custom_object, kube.KSERVE_GROUP, VERSION,
                   namespace, plural, name)
        except kube.KubeError as exc:
            if not kube.not_found(exc):
                raise

    # --- the deployment's shape and its roll-outs ---

    def shape_errors(self, deployment: Deployment) -> dict[str, str]:
        errors: dict[str, str] = {}
        preset, cluster = deployment.llm_preset, deployment.cluster
        if preset is None or preset.archived_at:
            errors["preset"] = "Choose a preset (LLM presets lists them)."
        if cluster.llm_inference_service is not True:
            errors["backend"] = (
                f"{cluster.name} did not serve LLMInferenceService (serving.kserve.io/"
                f"{VERSION}) at its last check: install KServe's LLMInferenceService "
                "controller and CRDs there, then press Check connectivity on the cluster.")
        if deployment.min_replicas < 1:
            errors["min_replicas"] = "An LLMInferenceService runs at least 1 replica."
        elif deployment.min_replicas > deployment.max_replicas:
            errors["max_replicas"] = "The maximum must be at least the minimum."
        elif deployment.min_replicas < deployment.max_replicas and not deployment.autoscaler:
            errors["autoscaler"] = ("Choose HPA or KEDA to scale between the minimum and the "
                                    "maximum, or give both the same number.")
        if preset is not None:
            errors.update(self._name_clashes(deployment))
        if deployment.prefill_replicas and deployment.pods_per_replica > 1:
            errors["prefill_replicas"] = ("A separate prefill pool needs a single-node preset "
                                          "(this one runs a replica on "
                                          f"{deployment.pods_per_replica} pods).")
        return errors

    @staticmethod
    def _name_clashes(deployment: Deployment) -> dict[str, str]:
        """An LLMInferenceService name another deployment in the namespace already uses (its
        stable one, a canary or a stopped one) would make two deployments write one object."""
        others = Deployment.objects.filter(
            backend=deployment.backend, cluster=deployment.cluster,
            namespace=deployment.namespace).exclude(status=DeploymentStatus.DELETED).exclude(
            pk=deployment.pk).select_related("version", "canary_version", "previous_version")
        taken = {name: other for other in others for name, _, _ in members(other)}
        for name, _, role in members(deployment):
            if name in taken:
                field = "version" if role == "canary" else "name"
                return {field: f"{deployment.namespace}/{name} is an LLMInferenceService of "
                               f"{taken[name].name}: choose another name."}
        return {}

    def rollout_fields(self, deployment: Deployment, version,
                       canary_traffic_percent: int | None) -> dict:
        if canary_traffic_percent:
            canary_member_name(deployment, version)
        # A new roll-out replaces what a rollback could have returned to: the stopped
        # LLMInferenceService goes.
        return {"stopped_member": ""}

    def promotion_fields(self, deployment: Deployment) -> dict:
        return {"predictor_name": canary_member_name(deployment, deployment.canary_version),
                "stopped_member": stable_name(deployment)}

    def rollback_fields(self, deployment: Deployment) -> dict:
        if not deployment.stopped_member:
            return {}  # back to the previous version in place
        return {"predictor_name": deployment.stopped_member,
                "stopped_member": stable_name(deployment)}


BACKEND = LLMInferenceServiceBackend()
