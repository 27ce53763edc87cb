"""Clusters, the residency policy and tenant namespaces."""

from __future__ import annotations

import dataclasses
import json
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from deployments import kube, kubeconfig, namespaces
from deployments.models import (
    Cluster,
    CredentialKind,
    DeploymentMode,
    DeploymentStatus,
    TenantNamespace,
)
from portal import crypto, outbound, stored_secrets
from portal.api import ApplicationError, full_clean_or_refuse, refusal
from portal.text import validate_header_token
from tenants.models import Tenant, TenantStatus

SYSTEM = "system:deployments"


# --- Clusters -----------------------------------------------------------------------------

def _check_capacity_map(capacity: dict) -> None:
    if not isinstance(capacity, dict) or not all(
            isinstance(k, str) and k and isinstance(v, int) and v >= 0
            for k, v in capacity.items()):
        raise refusal({"gpu_capacity": "Give GPUs per product as whole numbers, e.g. "
                                       "NVIDIA-A100-SXM4-80GB=8."})


def _check_api_url(api_url: str) -> None:
    """Clusters are reached only where the outbound policy allows (a name that does not
    resolve yet passes here: every connection is vetted again when it is made)."""
    try:
        outbound.check_url(api_url, outbound.msp_policy(), unresolvable_ok=True)
    except outbound.OutboundRefused as exc:
        raise refusal({"api_url": exc.message}) from None


def _check_credentials(*, kind: str, credentials: str, ca_bundle: str) -> None:
    """A one-line token, or a kubeconfig with inline credentials only (deployments.kubeconfig);
    certificates that TLS can load."""
    if kind == CredentialKind.KUBECONFIG:
        try:
            found = kubeconfig.parse(credentials)
        except kubeconfig.KubeconfigRefused as exc:
            raise refusal({"credentials": exc.message}) from None
        try:  # an inline token goes into every request's Authorization header
            validate_header_token(found.token)
        except ValidationError as exc:
            raise refusal({"credentials": exc.messages}) from None
    else:
        token = credentials.strip()
        try:
            if not token:
                raise refusal("Give the token.")
            validate_header_token(token)
        except ValidationError as exc:
            raise refusal({"credentials": [
                "A token is one line without spaces; for a kubeconfig, choose Kubeconfig.",
                *exc.messages]}) from None
        found = kubeconfig.Credentials(token=token)
    ca_field = "credentials"
    if not found.certificate_authority and ca_bundle.strip():
        found = dataclasses.replace(found, certificate_authority=ca_bundle.strip())
        ca_field = "ca_bundle"
    try:
        found.ssl_context()
    except kubeconfig.KubeconfigRefused as exc:
        field = ca_field if exc.field == "certificate-authority-data" else "credentials"
        raise refusal({field: exc.message}) from None


def cluster_create(*, actor, name: str, api_url: str, jurisdiction: str, credentials: str,
                   credential_kind: str = CredentialKind.TOKEN, ca_bundle: str = "",
                   gpu_capacity: dict | None = None, gateway_namespace: str = "istio-system",
                   default_mode: str = DeploymentMode.STANDARD) -> Cluster:
    gpu_capacity = gpu_capacity or {}
    _check_capacity_map(gpu_capacity)
    _check_credentials(kind=credential_kind, credentials=credentials, ca_bundle=ca_bundle)
    _check_api_url(api_url)  # resolves the name: before the transaction, not inside it
    if credential_kind == CredentialKind.TOKEN:
        credentials = credentials.strip()
    with transaction.atomic():
        cluster = Cluster(name=name, api_url=api_url.rstrip("/"), jurisdiction=jurisdiction,
                          credential_kind=credential_kind, ca_bundle=ca_bundle,
                          credentials_encrypted=crypto.encrypt(credentials),
                          gpu_capacity=gpu_capacity, gateway_namespace=gateway_namespace,
                          default_mode=default_mode)
        full_clean_or_refuse(cluster)
        cluster.save()
        audit.record(action="cluster.created", actor=actor, target=cluster,
                     details={"name": name, "api_url": cluster.api_url,
                              "jurisdiction": jurisdiction, "gpu_capacity": gpu_capacity,
                              "credential_kind": credential_kind})
    return cluster


def cluster_update(*, actor, cluster: Cluster, credentials: str = "", **fields) -> Cluster:
    """Change the given fields; empty `credentials` keeps the stored ones (unless the kind of
    credentials changes: then new ones are required)."""
    if "gpu_capacity" in fields:
        _check_capacity_map(fields["gpu_capacity"])
    kind = fields.get("credential_kind", cluster.credential_kind)
    ca_bundle = fields.get("ca_bundle", cluster.ca_bundle)
    if credentials:
        _check_credentials(kind=kind, credentials=credentials, ca_bundle=ca_bundle)
        if kind == CredentialKind.TOKEN:
            credentials = credentials.strip()
    elif kind != cluster.credential_kind:
        raise refusal({"credentials": "The kind of credentials changed: give the new "
                                      "credentials."})
    elif ca_bundle != cluster.ca_bundle:
        try:
            stored = stored_secrets.reveal(cluster, "credentials_encrypted")
        except stored_secrets.SecretUnreadable as exc:
            raise refusal({"credentials": exc.message}) from None
        _check_credentials(kind=kind, credentials=stored, ca_bundle=ca_bundle)
    if fields.get("api_url", cluster.api_url) != cluster.api_url:
        _check_api_url(fields["api_url"])
    with transaction.atomic():
        changed = {}
        for field, value in fields.items():
            if getattr(cluster, field) != value:
                changed[field] = value
                setattr(cluster, field, value)
        if credentials:
            cluster.credentials_encrypted = crypto.encrypt(credentials)
            changed["credentials"] = "replaced"
        full_clean_or_refuse(cluster)
        cluster.save()
        if changed:
            audit.record(action="cluster.updated", actor=actor, target=cluster,
                         details={k: (v if k != "ca_bundle" else "replaced")
                                  for k, v in changed.items()})
    return cluster


@transaction.atomic
def cluster_delete(*, actor, cluster: Cluster) -> Cluster:
    """Retire a cluster that no longer serves anything.

    Refused while any deployment on it is not `deleted`. The row stays, archived and without
    its credentials, so the deleted deployments that ran there (and their events, usage and
    audit trail) keep pointing at the cluster they ran on; the cluster itself is not touched.
    """
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    live = list(cluster.deployments.exclude(status=DeploymentStatus.DELETED)
                .values_list("name", flat=True)[:6])
    if live:
        shown = ", ".join(live[:5]) + (", …" if len(live) > 5 else "")
        raise ApplicationError(
            f"{cluster.name} still has deployments that are not deleted ({shown}). Delete "
            "them first, wait until they show Deleted, then delete the cluster.")
    if cluster.archived_at:
        raise ApplicationError(f"{cluster.name} is already deleted.")
    cluster.archived_at = timezone.now()
    cluster.credentials_encrypted = ""
    cluster.save(update_fields=["archived_at", "credentials_encrypted", "updated_at"])
    audit.record(action="cluster.deleted", actor=actor, target=cluster,
                 details={"name": cluster.name, "api_url": cluster.api_url,
                          "jurisdiction": cluster.jurisdiction,
                          "deleted_deployments_kept": cluster.deployments.count()})
    return cluster


# What the LLMInferenceService backend needs served (API discovery of KServe's v1alpha2).
LLM_GROUP_VERSION = f"{kube.KSERVE_GROUP}/v1alpha2"
LLM_RESOURCES = {"llminferenceservices", "llminferenceserviceconfigs"}


def _llm_served(k: kube.KubeSession) -> bool:
    """Whether API discovery lists LLMInferenceService and its config at v1alpha2."""
    try:
        found = k.request("GET", f"/apis/{LLM_GROUP_VERSION}")
    except kube.KubeError as exc:
        if kube.not_found(exc):
            return False
        raise
    return LLM_RESOURCES <= {r.get("name") for r in (found or {}).get("resources") or []}


# KServe's `oci+native://` storage (v0.20): the container runtime mounts the model artifact
# as an ImageVolume (Kubernetes 1.33 or later), and KServe must have OCI model support on.
NATIVE_OCI_MIN_KUBERNETES = (1, 33)


def _kubernetes_release(git_version: str) -> tuple[int, int] | None:
    found = re.match(r"^v?(\d+)\.(\d+)", git_version or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def _native_oci(k: kube.KubeSession, git_version: str) -> tuple[bool, str]:
    """(whether ModelPack artifacts can be deployed with `oci+native://`, why not)."""
    release = _kubernetes_release(git_version)
    if release is None or release < NATIVE_OCI_MIN_KUBERNETES:
        wanted = ".".join(map(str, NATIVE_OCI_MIN_KUBERNETES))
        return False, (f"Kubernetes {git_version or '(unknown version)'} has no ImageVolume "
                       f"support; {wanted} or later is needed.")
    namespace = settings.KSERVE_NAMESPACE
    try:
        found = k.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/"
                                 "inferenceservice-config") or {}
    except kube.KubeError as exc:
        if kube.not_found(exc):
            return False, (f"KServe's inferenceservice-config ConfigMap is not in the "
                           f"{namespace} namespace (set KSERVE_NAMESPACE if KServe lives "
                           "elsewhere).")
        if exc.status in (401, 403):
            return False, (f"the credentials may not read KServe's inferenceservice-config "
                           f"in {namespace} ({exc.message}).")
        raise
    raw = (found.get("data") or {}).get("storageInitializer") or "{}"
    try:
        storage = json.loads(raw)
    except ValueError:
        storage = None
    if not isinstance(storage, dict):
        return False, ("the storageInitializer entry of KServe's inferenceservice-config is "
                       "not a JSON object.")
    if storage.get("enableOciModelSupport") is not True:
        return False, ("KServe's OCI model support is off: set \"enableOciModelSupport\": true "
                       "in the storageInitializer entry of inferenceservice-config "
                       f"({namespace} namespace).")
    return True, ""


def cluster_check(*, actor, cluster: Cluster) -> Cluster:
    """Server version from /version, the InferenceService CRD, whether LLMInferenceService
    is served (API discovery) and whether native OCI models (ImageVolume) can be deployed;
    the outcome is kept."""
    from kubernetes import client

    version, problem, llm = "", "", None
    native, native_detail = None, ""
    try:
        with kube.session(cluster) as k:
            info = k.call(client.VersionApi(k.api_client).get_code)
            version = info.git_version
            try:
                k.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                 f"{kube.ISVC_CRD}")
                llm = _llm_served(k)
                native, native_detail = _native_oci(k, version)
            except kube.KubeError as exc:
                if kube.not_found(exc):
                    problem = (f"Kubernetes {version} answers, but KServe is not installed: "
                               f"the CRD {kube.ISVC_CRD} is missing.")
                elif exc.status in (401, 403):
                    problem = (f"Kubernetes {version} answers, but the credentials may not "
                               f"read CRDs ({exc.message}).")
                else:
                    raise
    except (kube.CredentialsUnreadable, kube.CredentialsUnusable, kube.AddressRefused) as exc:
        problem = exc.message  # nothing was sent
    except kube.KubeError as exc:
        problem = (f"Can't reach the API server: {exc.message}" if exc.status not in (401, 403)
                   else f"The API server refused the credentials ({exc.message}). Replace "
                        "the token or kubeconfig.")
    found = (f"Kubernetes {version}, KServe CRD present; LLMInferenceService "
             f"({LLM_GROUP_VERSION}) {'served' if llm else 'not served'}; native OCI models "
             f"(oci+native://, ModelPack) {'available' if native else 'not available'}.")
    with transaction.atomic():
        cluster.server_version = version
        cluster.last_check_ok = not problem
        cluster.last_check_message = (problem or found)[:500]
        cluster.llm_inference_service = llm
        cluster.native_oci_models = native
        cluster.native_oci_detail = native_detail[:300]
        cluster.last_checked_at = timezone.now()
        cluster.save(update_fields=["server_version", "last_check_ok", "last_check_message",
                                    "llm_inference_service", "native_oci_models",
                                    "native_oci_detail", "last_checked_at", "updated_at"])
        audit.record(action="cluster.checked", actor=actor, target=cluster,
                     details={"ok": not problem, "message": cluster.last_check_message,
                              "llm_inference_service": llm, "native_oci_models": native})
    return cluster


def cluster_namespaces_sync(*, actor, cluster: Cluster) -> int:
    """Queue a namespace sync of every active tenant on `cluster`; returns how many.

    Each `tasks.sync_tenant_namespace` creates or repairs one tenant's namespace objects and
    records the outcome on its `TenantNamespace` row.
    """
    from deployments import tasks

    tenant_ids = list(Tenant.objects.filter(status=TenantStatus.ACTIVE)
                      .values_list("pk", flat=True))
    with transaction.atomic():
        audit.record(action="cluster.namespaces_sync_requested", actor=actor, target=cluster,
                     details={"name": cluster.name, "tenants": len(tenant_ids)})
    for tenant_id in tenant_ids:
        tasks.sync_tenant_namespace.delay(cluster.pk, tenant_id)
    return len(tenant_ids)


# --- Residency ----------------------------------------------------------------------------

# EU member states, so that ALLOWED_JURISDICTIONS=EU admits a cluster labelled DE or FR-IDF.
EU_MEMBERS = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT "
                       "RO SE SI SK".split())


def jurisdiction_allowed(code: str) -> bool:
    country = code.split("-", 1)[0]
    for allowed in settings.ALLOWED_JURISDICTIONS:
        if code == allowed or code.startswith(allowed + "-"):
            return True
        if allowed == "EU" and (country in EU_MEMBERS or country == "EU"):
            return True
    return False


# --- Tenant namespaces --------------------------------------------------------------------

def tenant_namespace_ensure(*, cluster: Cluster, tenant: Tenant,
                            actor=SYSTEM) -> TenantNamespace:
    """Create or repair the tenant's namespace objects on `cluster`; records the outcome."""
    record, _ = TenantNamespace.objects.get_or_create(
        cluster=cluster, tenant=tenant, defaults={"name": namespaces.namespace_name(tenant)})
    try:
        done = namespaces.ensure(cluster, tenant)
        ok, message = True, ", ".join(done) or "in sync"
    except kube.KubeError as exc:
        done, ok, message = [], False, exc.message
    with transaction.atomic():
        record.ok, record.message, record.synced_at = ok, message[:500], timezone.now()
        record.save(update_fields=["ok", "message", "synced_at"])
        if done or not ok:
            audit.record(action="namespace.synced" if ok else "namespace.sync_failed",
                         actor=actor, tenant=tenant, target=record,
                         details={"cluster": cluster.name, "namespace": record.name,
                                  "changes": done, "message": message})
    return record
