"""Where deployments run. Each backend turns a Deployment's desired state into something
serving, and reports what it observes; the services own the state machine around them.

Backends the portal applies to a cluster (KServe's InferenceService and LLMInferenceService)
also derive from `ClusterBackend`: their own checks of a deployment's shape and the fields a
roll-out, a promotion or a rollback changes. Everything else — residency, quotas, signatures,
the audit trail, the worker, the reconcile loop — is the services' and the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from deployments.models import Backend, Deployment


@dataclass(frozen=True)
class Observation:
    """What the backend sees right now."""

    found: bool
    ready: bool = False
    url: str = ""  # the OpenAI-compatible base URL for the gateway, when ready
    service_url: str = ""  # where the target says it is served (KServe's status.url)
    problem: str = ""  # why it is not ready (a failed condition, an unhealthy endpoint)
    conditions: list[dict] = field(default_factory=list)
    observed: dict = field(default_factory=dict)
    drifted: bool = False  # the live object no longer matches what the portal applied
    # It took the connection but gave no answer in time: a server that handles one request
    # at a time (llama.cpp, Ollama) while it generates. A ready deployment stays ready.
    busy: bool = False


class DeploymentBackend(Protocol):
    kind: str  # what the backend serves a deployment as, for people ("InferenceService")

    def manifest(self, deployment: Deployment) -> dict | None:
        """The object the backend applies (for the YAML preview and GitOps), or None."""

    def apply(self, deployment: Deployment) -> str:
        """Make the target match the deployment's desired state; returns what was done."""

    def observe(self, deployment: Deployment) -> Observation: ...

    def delete(self, deployment: Deployment) -> None: ...


class ClusterBackend:
    """What differs between the backends the portal applies to a cluster; by default a
    backend adds no check and no field."""

    kind = ""

    def shape_errors(self, deployment: Deployment) -> dict[str, str]:
        """Field → why the deployment's shape can't be served by this backend."""
        return {}

    def rollout_fields(self, deployment: Deployment, version,
                       canary_traffic_percent: int | None) -> dict:
        """Checks of a roll-out of `version` (refused with `portal.api.ApplicationError`)
        and the fields it sets beside the version (or the canary) itself."""
        return {}

    def promotion_fields(self, deployment: Deployment) -> dict:
        """Fields a promotion of the pending canary sets beside the versions."""
        return {}

    def rollback_fields(self, deployment: Deployment) -> dict:
        """Fields a rollback to the previous version sets beside the versions."""
        return {}


# Backend (the Deployment.backend value) → module path of an object implementing
# DeploymentBackend as `BACKEND`. A new target adds a `Backend` choice and a line here.
BACKENDS: dict[str, str] = {
    Backend.KSERVE: "deployments.backends.kserve",
    Backend.LLMISVC: "deployments.backends.llmisvc",
    Backend.EXTERNAL: "deployments.backends.external",
}


def backend_for(deployment: Deployment) -> DeploymentBackend:
    from importlib import import_module

    return import_module(BACKENDS[deployment.backend]).BACKEND


def to_yaml(manifest: dict | None, *, sort_keys: bool = False) -> str:
    """A manifest as YAML, in the order it was built unless `sort_keys` (empty for none)."""
    import yaml

    return yaml.safe_dump(manifest, sort_keys=sort_keys,
                          default_flow_style=False) if manifest else ""


def manifest_yaml(deployment: Deployment) -> str:
    """The manifest as YAML, exactly as applied (empty for backends without one)."""
    return to_yaml(backend_for(deployment).manifest(deployment))


def manifest_diff(before: dict, after: dict, *, before_label: str, after_label: str,
                  sort_keys: bool = False) -> str:
    """The unified diff of two manifests' YAML (empty when they agree). `sort_keys` when one
    side was stored in the database: PostgreSQL's jsonb does not keep key order."""
    import difflib

    if before == after:
        return ""
    return "".join(difflib.unified_diff(
        to_yaml(before, sort_keys=sort_keys).splitlines(keepends=True),
        to_yaml(after, sort_keys=sort_keys).splitlines(keepends=True),
        fromfile=before_label, tofile=after_label))
