"""A tenant's namespace on a cluster and the objects that fence it in.

Create-or-repair: each object is read; missing → created; different from what the portal wants
(someone edited it) → replaced; equal → left alone. Re-running is harmless.

The RoleBinding grants the tenant's people (group `portal:tenant:<slug>`, as the cluster's
OIDC issuer names them) read-only `view` on their own namespace, nothing more: deploying stays
with the portal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from deployments import kube
from deployments.models import Backend, Cluster, Deployment, DeploymentMode, DeploymentStatus
from tenants.models import Tenant

MANAGED_LABELS = {"app.kubernetes.io/managed-by": "sovereign-model-portal"}
# Per GPU a tenant may use: the CPU and memory a model server needs beside it, plus room for
# what KServe adds to each pod (the ModelCar sidecar asks 100m CPU and 100Mi).
CPU_PER_GPU = 8
MEMORY_GI_PER_GPU = 64
PODS_PER_GPU = 4
# What a container without requests asks for (the namespace's LimitRange).
DEFAULT_REQUESTS = {"cpu": "250m", "memory": "512Mi"}
SIDECAR_CPU = Decimal("0.1")
SIDECAR_MEMORY = 100 * 2**20
_UNITS = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6),
          "G": Decimal(10**9), "T": Decimal(10**12), "Ki": Decimal(2**10),
          "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40)}


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity ('500m', '8', '64Gi') as a number (cores, bytes)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?", text or "0")
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return Decimal(match[1]) * _UNITS[match[2] or ""]


def _quota(gpus: int) -> dict[str, int]:
    """A tenant namespace's ResourceQuota for a GPU quota: cores, GiB, pods."""
    units = max(gpus, 1)
    return {"gpus": gpus, "cpu": units * (CPU_PER_GPU + 1),
            "memory_gi": units * (MEMORY_GI_PER_GPU + 4), "pods": units * PODS_PER_GPU}


def tenant_quota(tenant: Tenant) -> dict[str, Decimal]:
    """The ResourceQuota of the tenant's namespace on every cluster, as numbers."""
    quota = _quota(tenant.max_gpus)
    return {"gpus": Decimal(quota["gpus"]), "cpu": Decimal(quota["cpu"]),
            "memory": Decimal(quota["memory_gi"] * 2**30), "pods": Decimal(quota["pods"])}


def peak_requests(deployment: Deployment) -> dict[str, Decimal]:
    """What a deployment's pods may request at their peak, sidecars included, and the llm-d
    inference scheduler's pods (which ask the LimitRange's defaults)."""
    pods = Decimal(deployment.peak_pods)
    schedulers = Decimal(deployment.scheduler_pods)
    return {"cpu": pods * (quantity(deployment.cpu) + SIDECAR_CPU)
            + schedulers * quantity(DEFAULT_REQUESTS["cpu"]),
            "memory": pods * (quantity(deployment.memory) + SIDECAR_MEMORY)
            + schedulers * quantity(DEFAULT_REQUESTS["memory"]),
            "pods": pods + schedulers}


def namespace_name(tenant: Tenant) -> str:
    return f"tenant-{tenant.slug}"[:63].rstrip("-")


@dataclass(frozen=True)
class KubeObject:
    kind: str
    collection: str  # API path of the collection the object is created in
    name: str
    body: dict
    compare: tuple[str, ...]  # top-level fields (or "labels") that must match

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"


def _in_namespace(ns: str, labels: dict, api_version: str, kind: str, plural: str, name: str,
                  compare: tuple[str, ...], **fields) -> KubeObject:
    """An object of `kind` named `name` in namespace `ns`, labelled `labels`; `fields` are its
    top-level fields besides apiVersion, kind and metadata."""
    group = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return KubeObject(kind, f"{group}/namespaces/{ns}/{plural}", name, {
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": labels}, **fields}, compare)


def _objects(cluster: Cluster, ns: str, labels: dict, gpus: int,
             tenant_slug: str) -> list[KubeObject]:
    quota = _quota(gpus)
    rbac = "rbac.authorization.k8s.io"
    return [
        KubeObject("Namespace", "/api/v1/namespaces", ns, {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {
                **labels,
                # KServe v0.20's vLLM and Hugging Face runtimes set neither runAsNonRoot nor a
                # seccomp profile, so `restricted` would refuse every model pod: enforce
                # `baseline` (no privileged pods, host namespaces or host paths) and report
                # what `restricted` would refuse.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted"}},
        }, ("labels",)),
        _in_namespace(ns, labels, "v1", "ResourceQuota", "resourcequotas", "portal-quota",
                      ("spec",), spec={"hard": {
                          "requests.nvidia.com/gpu": str(quota["gpus"]),
                          "requests.cpu": str(quota["cpu"]),
                          "requests.memory": f"{quota['memory_gi']}Gi",
                          "pods": str(quota["pods"]),
                      }}),
        _in_namespace(ns, labels, "v1", "LimitRange", "limitranges", "portal-defaults",
                      ("spec",), spec={"limits": [{
                          "type": "Container",
                          "default": {"cpu": "1", "memory": "2Gi"},
                          "defaultRequest": dict(DEFAULT_REQUESTS),
                      }]}),
        _in_namespace(ns, labels, "networking.k8s.io/v1", "NetworkPolicy", "networkpolicies",
                      "default-deny-ingress", ("spec",), spec={
                          "podSelector": {},
                          "policyTypes": ["Ingress"],
                          "ingress": [{"from": _admitted_peers(cluster)}],
                      }),
        _in_namespace(ns, labels, f"{rbac}/v1", "RoleBinding", "rolebindings", "tenant-viewers",
                      ("roleRef", "subjects"),
                      roleRef={"apiGroup": rbac, "kind": "ClusterRole", "name": "view"},
                      subjects=[{"apiGroup": rbac, "kind": "Group",
                                 "name": f"portal:tenant:{tenant_slug}"}]),
    ]


KNATIVE_SYSTEM_NAMESPACE = "knative-serving"


def _admitted_namespaces(cluster: Cluster) -> list[str]:
    """Who may reach model pods: the gateway's namespace; with Knative in use on the cluster
    also Knative's own (its activator holds requests while a revision scales from zero, and
    its autoscaler scrapes the pods)."""

    knative = cluster.default_mode == DeploymentMode.KNATIVE or Deployment.objects.filter(
        cluster=cluster, mode=DeploymentMode.KNATIVE).exclude(
        status=DeploymentStatus.DELETED).exists()
    return [cluster.gateway_namespace] + ([KNATIVE_SYSTEM_NAMESPACE] if knative else [])


def _admitted_peers(cluster: Cluster) -> list[dict]:
    """The admitted namespaces; with LLMInferenceService in use on the cluster also the pods
    of the namespace itself: llm-d's inference scheduler scrapes the model servers and
    receives their KV-cache events, prefill pods hand KV caches to decode pods, and a
    multi-node replica's pods talk to each other."""
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
             for namespace in _admitted_namespaces(cluster)]
    if Deployment.objects.filter(cluster=cluster, backend=Backend.LLMISVC).exclude(
            status=DeploymentStatus.DELETED).exists():
        peers.append({"podSelector": {}})
    return peers


def _matches(live: dict, wanted: KubeObject) -> bool:
    for field in wanted.compare:
        if field == "labels":
            have = (live.get("metadata") or {}).get("labels") or {}
            if any(have.get(k) != v for k, v in wanted.body["metadata"]["labels"].items()):
                return False
        elif live.get(field) != wanted.body.get(field):
            return False
    return True


def shared_objects(cluster: Cluster) -> list[KubeObject]:
    """The platform namespace of shared deployments: pod security and the ingress fence; its
    GPUs are bounded by the cluster capacity the portal books, not by a tenant quota."""
    ns = settings.DEPLOYMENTS_SHARED_NAMESPACE
    labels = {**MANAGED_LABELS, "portal.sovereign.eu/tenant": "shared"}
    namespace, _quota, _limits, policy, _binding = _objects(cluster, ns, labels, 0, "shared")
    return [namespace, policy]


def tenant_objects(cluster: Cluster, tenant: Tenant) -> list[KubeObject]:
    labels = {**MANAGED_LABELS, "portal.sovereign.eu/tenant": tenant.slug}
    return _objects(cluster, namespace_name(tenant), labels, tenant.max_gpus, tenant.slug)


def ensure(cluster: Cluster, tenant: Tenant | None) -> list[str]:
    """Create or repair every object; returns what was done, e.g. ['ResourceQuota repaired'].
    `tenant` None: the shared namespace. Converges under races: an object that another
    writer (a second worker, a retried request) created or changed meanwhile answers 409,
    and is read and compared again."""
    done = []
    wanted_objects = tenant_objects(cluster, tenant) if tenant else shared_objects(cluster)
    with kube.session(cluster) as k:
        for wanted in wanted_objects:
            for attempt in range(3):
                try:
                    outcome = _ensure_one(k, wanted)
                except kube.KubeError as exc:
                    if not kube.conflict(exc) or attempt == 2:
                        raise
                    continue
                if outcome:
                    done.append(f"{wanted.kind} {outcome}")
                break
    return done


def _ensure_one(k, wanted: KubeObject) -> str:
    try:
        live = k.request("GET", wanted.path)
    except kube.KubeError as exc:
        if not kube.not_found(exc):
            raise
        k.request("POST", wanted.collection, wanted.body)
        return "created"
    if _matches(live, wanted):
        return ""
    if wanted.kind == "RoleBinding" and live.get("roleRef") != wanted.body["roleRef"]:
        # roleRef is immutable: a binding to another role is replaced, not edited.
        k.request("DELETE", wanted.path)
        k.request("POST", wanted.collection, wanted.body)
        return "replaced"
    body = {**wanted.body, "metadata": {
        **wanted.body["metadata"],
        "labels": {**((live.get("metadata") or {}).get("labels") or {}),
                   **wanted.body["metadata"]["labels"]},
        "resourceVersion": (live.get("metadata") or {}).get("resourceVersion")}}
    k.request("PUT", wanted.path, body)
    return "repaired"
