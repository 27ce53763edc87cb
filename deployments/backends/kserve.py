"""KServe v0.20 `serving.kserve.io/v1beta1` InferenceService backend.

The manifest is a pure function of the Deployment's desired state, so the wizard's preview,
`deployment_manifest` (GitOps export), apply and the drift check all use the very same object.

Canary (checked against KServe v0.20's Go API types and validating webhook):
- Knative mode: the predictor carries the new version and `canaryTrafficPercent`; KServe keeps
  the last rolled-out revision for the rest of the traffic.
- Standard mode: `spec.canary: [{predictor: {name, model}, trafficPercent}]`. KServe merges the
  canary predictor over the stable one, runs it with fixed replicas
  (ceil(stable minReplicas × trafficPercent / 100)) and refuses autoscaling fields on it, so the
  portal sends only the name and the model. The CRD's schema (unlike the main predictor's and
  unlike the SDK's types) requires the canary model's `name` — its container's name, which
  KServe sets to `kserve-container` on the stable predictor — and `modelFormat`. Deployments are
  named
  `{isvc}-{predictor.name}-predictor`; promotion without a restart, as KServe documents it, sets
  the stable `predictor.name` to the canary's name and drops the entry — the portal remembers
  that name in `Deployment.predictor_name`.

Gateway upstream: KServe's `kserve-vllmserver` runtime runs vLLM's own OpenAI server, which
answers under `/v1`; the Hugging Face runtime answers under `/openai/v1`. Both are relative to
the InferenceService's URL (`status.url`, else `status.address.url`).
"""

from __future__ import annotations

import hashlib
import re

from django.core.exceptions import ValidationError

from deployments import kube
from deployments.backends import ClusterBackend, Observation
from deployments.models import (
    RUNTIME_MODEL_FORMAT,
    Deployment,
    DeploymentMode,
    Runtime,
    ScaleMetric,
)
from models_catalog.selectors import registry_configured, registry_host
from portal.api import refusal

MANAGED_BY = "sovereign-model-portal"
LABEL_TENANT = "portal.sovereign.eu/tenant"
LABEL_MODEL = "portal.sovereign.eu/model"
ANNOTATION_MODE = "serving.kserve.io/deploymentMode"
ANNOTATION_STOP = "serving.kserve.io/stop"
ANNOTATION_VERSION = "portal.sovereign.eu/model-version"
OPENAI_PATHS = {Runtime.VLLM: "/v1", Runtime.HUGGINGFACE: "/openai/v1"}
# Kubernetes Service names ({isvc}-{predictor name}-predictor) are DNS labels.
DNS_LABEL_MAX = 63
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# The model server container's name, as KServe names it (constants.InferenceServiceContainerName).
MODEL_CONTAINER = "kserve-container"


def _positive_int(value: str) -> str:
    if not value.isdigit() or int(value) < 1:
        raise ValueError("a whole number of at least 1")
    return str(int(value))


def _fraction(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a number between 0 and 1, e.g. 0.9") from None
    if not 0 < number <= 1:
        raise ValueError("a number between 0 and 1, e.g. 0.9")
    return str(number)


def _dtype(value: str) -> str:
    if value not in {"auto", "half", "float16", "bfloat16", "float32"}:
        raise ValueError("auto, half, float16, bfloat16 or float32")
    return value


# Runtime arguments an MSP admin may add; anything else could change what the model is.
# None: a flag without a value.
ALLOWED_ARGS = {
    "--max-model-len": _positive_int,
    "--dtype": _dtype,
    "--gpu-memory-utilization": _fraction,
    "--tensor-parallel-size": _positive_int,
    "--max-num-seqs": _positive_int,
    "--enable-prefix-caching": None,
}

QUANTITY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


def parse_extra_args(text: str) -> dict[str, str | bool]:
    """`--flag=value` or `--flag` per line → {flag: value | True}; ValidationError otherwise."""
    parsed: dict[str, str | bool] = {}
    errors = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        flag, has_value, value = line.partition("=")
        flag, value = flag.strip(), value.strip()
        if flag not in ALLOWED_ARGS:
            errors.append(f"{flag} is not allowed (allowed: {', '.join(ALLOWED_ARGS)}).")
            continue
        check = ALLOWED_ARGS[flag]
        if check is None:
            if has_value:
                errors.append(f"{flag} takes no value.")
            parsed[flag] = True
            continue
        try:
            parsed[flag] = check(value)
        except ValueError as exc:
            errors.append(f"{flag} needs {exc}.")
    if errors:
        raise ValidationError(errors)
    return parsed


def format_extra_args(args: dict) -> str:
    return "\n".join(flag if value is True else f"{flag}={value}" for flag, value in args.items())


def _model(deployment: Deployment, version) -> dict:
    quantities = {"cpu": deployment.cpu, "memory": deployment.memory}
    if deployment.gpu_count:
        quantities[GPU_RESOURCE] = str(deployment.gpu_count)
    quantities = {name: value for name, value in quantities.items() if value}
    model = {
        "modelFormat": {"name": RUNTIME_MODEL_FORMAT[deployment.runtime]},
        "runtime": deployment.runtime,
        "storageUri": version.storage_uri(registry_host()),
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
    }
    args = [flag if value is True else f"{flag}={value}"
            for flag, value in deployment.extra_args.items()]
    if args:
        model["args"] = args
    return model


def _predictor(deployment: Deployment, version) -> dict:
    predictor: dict = {"minReplicas": deployment.min_replicas,
                       "maxReplicas": deployment.max_replicas}
    if deployment.scale_metric:
        predictor["scaleMetric"] = deployment.scale_metric
        if deployment.scale_target:
            predictor["scaleTarget"] = deployment.scale_target
    if deployment.gpu_product:
        predictor["nodeSelector"] = {GPU_PRODUCT_LABEL: deployment.gpu_product}
    predictor["model"] = _model(deployment, version)
    return predictor


def canary_name(deployment: Deployment, version) -> str:
    """The Standard-mode canary's `predictor.name`: `v-<version>`, a DNS label that keeps
    `{isvc}-{name}-predictor` within 63 characters and differs from the stable predictor's."""
    room = DNS_LABEL_MAX - len(deployment.resource_name) - len("--predictor")
    if room < 2:
        raise refusal(
            {"version": f"The InferenceService name {deployment.resource_name!r} is too long "
                        "for a Standard-mode canary (KServe names its Deployment "
                        "<name>-<canary>-predictor, at most 63 characters): roll out without "
                        "a canary."})
    name = "v-" + re.sub(r"[^a-z0-9]+", "-", version.version.lower()).strip("-")
    if name == deployment.predictor_name:
        name += "-c"
    if len(name) > room:
        name = "v" + hashlib.sha256(version.version.encode()).hexdigest()[:room - 1]
    return name.rstrip("-")


def build_manifest(deployment: Deployment) -> dict:
    annotations = {ANNOTATION_MODE: deployment.mode,
                   ANNOTATION_VERSION: deployment.version.version}
    if deployment.stop_requested:
        annotations[ANNOTATION_STOP] = "true"
    canary = deployment.canary_version
    spec: dict
    if canary and deployment.mode == DeploymentMode.KNATIVE:
        predictor = _predictor(deployment, canary)
        predictor["canaryTrafficPercent"] = deployment.canary_traffic_percent
        spec = {"predictor": predictor}
    else:
        predictor = _predictor(deployment, deployment.version)
        if deployment.predictor_name:
            predictor = {"name": deployment.predictor_name, **predictor}
        spec = {"predictor": predictor}
        if canary:
            spec["canary"] = [{
                "predictor": {"name": canary_name(deployment, canary),
                              "model": {"name": MODEL_CONTAINER,
                                        **_model(deployment, canary)}},
                "trafficPercent": deployment.canary_traffic_percent,
            }]
    return {
        "apiVersion": f"{kube.KSERVE_GROUP}/{kube.KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": deployment.resource_name,
            "namespace": deployment.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                LABEL_MODEL: deployment.model.slug,
                LABEL_TENANT: deployment.tenant.slug if deployment.tenant else "shared",
            },
            "annotations": annotations,
        },
        "spec": spec,
    }


def _covers(live, desired) -> bool:
    """Whether `live` holds everything in `desired`. Fields the cluster adds (KServe's
    defaulting webhook sets e.g. `model.protocolVersion`, Kubernetes fills defaults) are not
    drift; a value the portal set that changed or went missing is."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and _covers(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(live, list) and len(live) == len(desired)
                and all(_covers(a, b) for a, b in zip(live, desired, strict=True)))
    return live == desired


# Fields only the portal sets: present live but absent from the desired state means someone
# (or a half-finished change) left a canary or a name behind.
_PORTAL_ONLY = (("canary",), ("predictor", "canaryTrafficPercent"), ("predictor", "name"))


def _drifted(live: dict, desired: dict) -> bool:
    live_spec, spec = live.get("spec") or {}, desired["spec"]
    if not _covers(live_spec, spec):
        return True
    for path in _PORTAL_ONLY:
        have, want = live_spec, spec
        for key in path:
            have = have.get(key) if isinstance(have, dict) else None
            want = want.get(key) if isinstance(want, dict) else None
        if have is not None and want is None:
            return True
    annotations = live.get("metadata", {}).get("annotations") or {}
    ours = desired["metadata"]["annotations"]
    if any(annotations.get(k) != v for k, v in ours.items()):
        return True
    # A stop annotation someone else added is drift too.
    return ANNOTATION_STOP in annotations and ANNOTATION_STOP not in ours


def _conditions(live: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in (live.get("status") or {}).get("conditions") or []}


def apply_object(k: kube.KubeSession, plural: str, desired: dict) -> str:
    """Create a custom object; on 409 re-read and replace it with the live resourceVersion
    (a concurrent writer makes that a 409 again: re-read once more)."""
    group, version = desired["apiVersion"].split("/")
    meta = desired["metadata"]
    args = (group, version, meta["namespace"], plural)
    try:
        k.call(k.custom.create_namespaced_custom_object, *args, desired)
        return "created"
    except kube.KubeError as exc:
        if not kube.conflict(exc):
            raise
    for _attempt in range(3):
        live = k.call(k.custom.get_namespaced_custom_object, *args, meta["name"])
        body = {**desired, "metadata": {
            **meta, "resourceVersion": live["metadata"].get("resourceVersion")}}
        try:
            k.call(k.custom.replace_namespaced_custom_object, *args, meta["name"], body)
            return "updated (re-read and replaced)"
        except kube.KubeError as exc:
            if not kube.conflict(exc):
                raise
    raise kube.KubeError(f"The {desired['kind']} {meta['name']} kept changing under the portal "
                         "(409 three times); try again.", status=409)


def shape_errors(deployment: Deployment) -> dict[str, str]:
    errors: dict[str, str] = {}
    mode, scale_metric, scale_target = (deployment.mode, deployment.scale_metric,
                                        deployment.scale_target)
    if deployment.runtime not in Runtime.values:
        errors["runtime"] = "Choose the vLLM or the Hugging Face runtime."
    if mode not in DeploymentMode.values:
        errors["mode"] = "Choose Standard or Knative."
    if deployment.min_replicas > deployment.max_replicas:
        errors["max_replicas"] = "The maximum must be at least the minimum."
    if mode == DeploymentMode.KNATIVE and scale_metric in (ScaleMetric.CPU, ScaleMetric.MEMORY):
        errors["scale_metric"] = "Knative scales on concurrency or rps."
    if mode == DeploymentMode.STANDARD and scale_metric in (ScaleMetric.CONCURRENCY,
                                                            ScaleMetric.RPS):
        errors["scale_metric"] = "Standard mode (HPA) scales on cpu or memory."
    if scale_target is not None and not scale_metric:
        errors["scale_target"] = "Choose a scale metric for the target."
    elif mode == DeploymentMode.STANDARD and scale_target is not None \
            and not 1 <= scale_target <= 100:
        # KServe's webhook: an HPA target is a utilisation percentage, 1 to 100.
        errors["scale_target"] = "In Standard mode the target is a percentage: 1 to 100."
    tp = deployment.extra_args.get("--tensor-parallel-size")
    if tp and int(tp) > max(deployment.gpu_count, 1):
        errors["extra_args"] = f"--tensor-parallel-size={tp} needs at least {tp} GPUs."
    return errors


class KServeBackend(ClusterBackend):
    kind = "InferenceService"

    def manifest(self, deployment: Deployment) -> dict:
        return build_manifest(deployment)

    def apply(self, deployment: Deployment) -> str:
        with kube.session(deployment.cluster) as k:
            return apply_object(k, kube.ISVC_PLURAL, build_manifest(deployment))

    def shape_errors(self, deployment: Deployment) -> dict[str, str]:
        return shape_errors(deployment)

    def rollout_fields(self, deployment: Deployment, version,
                       canary_traffic_percent: int | None) -> dict:
        if canary_traffic_percent and deployment.mode == DeploymentMode.STANDARD:
            if deployment.min_replicas < 1:
                raise refusal({"canary_traffic_percent": (
                    "In Standard mode KServe runs a canary with ceil(min replicas × percent / "
                    "100) pods, so with min replicas 0 it would get none: scale to at least "
                    "1 minimum replica first, or roll out without a canary.")})
            canary_name(deployment, version)  # refuses names KServe could not use
        return {}

    def promotion_fields(self, deployment: Deployment) -> dict:
        # Standard mode: the stable predictor takes the canary's name, so KServe keeps the
        # canary's pods as the new stable ones instead of restarting them.
        if deployment.mode == DeploymentMode.STANDARD:
            return {"predictor_name": canary_name(deployment, deployment.canary_version)}
        return {}

    def observe(self, deployment: Deployment) -> Observation:
        with kube.session(deployment.cluster) as k:
            try:
                live = k.call(k.custom.get_namespaced_custom_object, kube.KSERVE_GROUP,
                              kube.KSERVE_VERSION, deployment.namespace, kube.ISVC_PLURAL,
                              deployment.resource_name)
            except kube.KubeError as exc:
                if kube.not_found(exc):
                    return Observation(found=False, problem="The InferenceService is gone.")
                raise
        status = live.get("status") or {}
        conditions = _conditions(live)
        url = status.get("url") or (status.get("address") or {}).get("url") or ""
        ready = (conditions.get("Ready", {}).get("status") == "True") and bool(url)
        problem = ""
        if not ready:
            for kind in ("PredictorReady", "CanaryPredictorReady", "IngressReady", "Ready"):
                condition = conditions.get(kind)
                if condition and condition.get("status") == "False":
                    problem = (f"{kind}: {condition.get('reason', '')} "
                               f"{condition.get('message', '')}").strip()
                    break
        components = status.get("components") or {}
        predictor = components.get("predictor") or {}
        observed = {key: value for key, value in {
            "traffic": predictor.get("traffic"),
            "canaries": status.get("canaryStatuses"),
            "latestReadyRevision": predictor.get("latestReadyRevision"),
            "replicas": ((status.get("modelStatus") or {}).get("copies") or {}).get(
                "totalCopies"),
        }.items() if value}
        return Observation(
            found=True, ready=ready, service_url=url.rstrip("/"),
            url=(url.rstrip("/") + OPENAI_PATHS[deployment.runtime]) if url else "",
            problem=problem, conditions=list(conditions.values()), observed=observed,
            # Without a registry the desired manifest can't be built: readiness is still
            # followed, and the reconcile says why it can't compare.
            drifted=registry_configured() and _drifted(live, build_manifest(deployment)))

    def delete(self, deployment: Deployment) -> None:
        with kube.session(deployment.cluster) as k:
            try:
                k.call(k.custom.delete_namespaced_custom_object, kube.KSERVE_GROUP,
                       kube.KSERVE_VERSION, deployment.namespace, kube.ISVC_PLURAL,
                       deployment.resource_name)
            except kube.KubeError as exc:
                if not kube.not_found(exc):
                    raise


BACKEND = KServeBackend()
