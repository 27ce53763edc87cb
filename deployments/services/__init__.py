"""Every write of the deployments app (clusters, namespaces, deployments), one import away.

`clusters` holds clusters, the residency policy and tenant namespaces; `admission` every check
before anything is applied; `lifecycle` the deployment state machine; `external` registered
OpenAI-compatible endpoints; `llm` LLMInferenceService presets and the deployments built on
them.
"""

from deployments.services.admission import (
    jurisdiction_allowed_for_tenant,
    kserve_deployment_build,
    kserve_deployment_validate,
    packaging_problem,
)
from deployments.services.clusters import (
    EU_MEMBERS,
    cluster_check,
    cluster_create,
    cluster_delete,
    cluster_namespaces_sync,
    cluster_update,
    jurisdiction_allowed,
    tenant_namespace_ensure,
)
from deployments.services.external import (
    deployment_check,
    endpoint_model_resolve,
    external_endpoint_register,
    external_endpoint_update,
    external_endpoints_check_all,
)
from deployments.services.lifecycle import (
    deployment_delete,
    deployment_drive,
    deployment_follow,
    deployment_promote,
    deployment_reconcile,
    deployment_retry,
    deployment_rollback,
    deployment_scale,
    deployment_start,
    deployment_stop,
    deployment_update_preview,
    deployment_update_version,
    deployments_fail_stale,
    deployments_reconcile_all,
    kserve_deployment_create,
)
from deployments.services.llm import (
    llm_deployment_build,
    llm_preset_create,
    llm_preset_delete,
    llm_preset_update,
)

__all__ = [
    "EU_MEMBERS", "cluster_check", "cluster_create", "cluster_delete",
    "cluster_namespaces_sync", "cluster_update",
    "deployment_check",
    "deployment_delete", "deployment_drive", "deployment_follow", "deployment_promote",
    "deployment_reconcile", "deployment_retry", "deployment_rollback", "deployment_scale",
    "deployment_start", "deployment_stop", "deployment_update_preview",
    "deployment_update_version",
    "deployments_fail_stale", "deployments_reconcile_all", "endpoint_model_resolve",
    "external_endpoint_register", "external_endpoint_update", "external_endpoints_check_all",
    "jurisdiction_allowed", "jurisdiction_allowed_for_tenant", "kserve_deployment_build",
    "kserve_deployment_create", "kserve_deployment_validate", "llm_deployment_build",
    "llm_preset_create", "llm_preset_delete", "llm_preset_update", "packaging_problem",
    "tenant_namespace_ensure",
]
