"""REST endpoints for clusters and deployments: the MSP admin's actions, for automation."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from deployments import selectors, services
from deployments.backends import backend_for, manifest_yaml
from deployments.backends.kserve import format_extra_args, parse_extra_args
from deployments.models import Backend
from deployments.serializers import (
    ClusterCreateSerializer,
    ClusterOutputSerializer,
    ClusterUpdateSerializer,
    DeploymentCreateSerializer,
    DeploymentDetailSerializer,
    DeploymentOutputSerializer,
    ExternalEndpointCreateSerializer,
    ExternalEndpointUpdateSerializer,
    GpuAllocationSerializer,
    LLMPresetSerializer,
    ManifestSerializer,
    NamespaceSyncSerializer,
    ScaleSerializer,
    TenantDeploymentsSerializer,
    TenantNamespaceSerializer,
    UpdateVersionSerializer,
)
from models_catalog.models import ModelVersion
from portal.api import ApplicationError, refusal
from portal.openapi import ApiErrorSerializer
from tenants.api_access import PortalApi, TenantApi
from tenants.models import Tenant
from tenants.permissions import PlatformPerm, TenantPerm
from tenants.selectors import tenant_by_slug


def _named_in_body(queryset, field: str, **lookup):
    """An object the request body refers to; one that does not exist (or was deleted) is a
    404 that says which."""
    found = queryset.filter(**lookup).first()
    if found is None:
        raise NotFound(f"There is no {field} {next(iter(lookup.values()))}: check "
                       f"`{field}` in the body.")
    return found


class _ManageApi(PortalApi):
    """Clusters, deployments and presets: the operator's admins only, whatever the method."""

    platform_perms = dict.fromkeys(("GET", "POST", "PATCH", "PUT", "DELETE"),
                                   PlatformPerm.DEPLOYMENTS_MANAGE)
    platform_denied_message = "Only the platform operator's admins manage deployments."


class ClusterListApi(_ManageApi):
    @extend_schema(responses=ClusterOutputSerializer(many=True), operation_id="clusters_list")
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.cluster_list(), ClusterOutputSerializer)

    @extend_schema(request=ClusterCreateSerializer, responses={201: ClusterOutputSerializer})
    def post(self, request: Request) -> Response:
        cluster = services.cluster_create(actor=request.user,
                                          **self.validated(ClusterCreateSerializer))
        return Response(ClusterOutputSerializer(cluster).data, status=status.HTTP_201_CREATED)


class ClusterDetailApi(_ManageApi):
    """A cluster: read it, change its fields (empty credentials keep the stored ones), or
    retire it once nothing is deployed on it."""

    @extend_schema(responses=ClusterOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(ClusterOutputSerializer(selectors.cluster_get(pk)).data)

    @extend_schema(request=ClusterUpdateSerializer, responses=ClusterOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        cluster = selectors.cluster_get(pk)
        data = self.validated(ClusterUpdateSerializer, partial=True)
        fields = dict(data)
        cluster = services.cluster_update(actor=request.user, cluster=cluster,
                                          credentials=fields.pop("credentials", ""), **fields)
        return Response(ClusterOutputSerializer(cluster).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        """Refused (400) while any deployment on the cluster is not deleted."""
        services.cluster_delete(actor=request.user, cluster=selectors.cluster_get(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClusterCheckApi(_ManageApi):
    @extend_schema(request=None, responses=ClusterOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        cluster = services.cluster_check(actor=request.user, cluster=selectors.cluster_get(pk))
        return Response(ClusterOutputSerializer(cluster).data)


class ClusterNamespaceListApi(_ManageApi):
    @extend_schema(responses=TenantNamespaceSerializer(many=True),
                   operation_id="clusters_namespaces_list")
    def get(self, request: Request, pk: int) -> Response:
        """The tenant namespaces on the cluster, as last synced."""
        cluster = selectors.cluster_get(pk)
        rows = selectors.cluster_namespace_list(cluster=cluster)
        return self.paginate(rows, TenantNamespaceSerializer)


class ClusterNamespaceSyncApi(_ManageApi):
    @extend_schema(request=None, responses={202: NamespaceSyncSerializer},
                   operation_id="clusters_namespaces_sync")
    def post(self, request: Request, pk: int) -> Response:
        """Queue a sync of every active tenant's namespace on the cluster; the outcome
        appears in `GET /api/clusters/{id}/namespaces/` once the worker has run."""
        count = services.cluster_namespaces_sync(actor=request.user,
                                                 cluster=selectors.cluster_get(pk))
        return Response({"tenants": count}, status=status.HTTP_202_ACCEPTED)


class DeploymentListApi(_ManageApi):
    @extend_schema(responses=DeploymentOutputSerializer(many=True),
                   operation_id="deployments_list")
    def get(self, request: Request) -> Response:
        deployments = selectors.deployment_list(status=request.query_params.get("status", ""),
                                                cluster=request.query_params.get("cluster", ""))
        return self.paginate(deployments, DeploymentOutputSerializer)

    @extend_schema(request=DeploymentCreateSerializer,
                   responses={201: DeploymentOutputSerializer, 200: ManifestSerializer,
                              404: ApiErrorSerializer})
    def post(self, request: Request) -> Response:
        data = self.validated(DeploymentCreateSerializer)
        values = dict(data)
        dry_run = values.pop("dry_run")
        version = _named_in_body(ModelVersion.objects.all(), "version", pk=values.pop("version"))
        cluster = _named_in_body(selectors.cluster_list(), "cluster", pk=values.pop("cluster"))
        slug = values.pop("tenant")
        tenant = _named_in_body(Tenant.objects.all(), "tenant", slug=slug) if slug else None
        backend, preset = values.pop("backend"), values.pop("preset")
        llm = {k: values.pop(k) for k in ("autoscaler", "prefill_replicas")}
        if backend == Backend.LLMISVC:
            if preset is None:
                raise refusal({"preset": "Give the id of an LLM preset."})
            deployment = services.llm_deployment_build(
                version=version, cluster=cluster, tenant=tenant,
                preset=selectors.llm_preset_get(preset), name=values["name"],
                min_replicas=values["min_replicas"], max_replicas=values["max_replicas"], **llm)
        else:
            try:
                values["extra_args"] = parse_extra_args(format_extra_args(values["extra_args"]))
            except ValidationError as exc:
                raise refusal({"extra_args": exc.messages}) from exc
            deployment = services.kserve_deployment_build(version=version, cluster=cluster,
                                                          tenant=tenant, **values)
        if dry_run:
            services.kserve_deployment_validate(actor=request.user, deployment=deployment)
            manifest = backend_for(deployment).manifest(deployment)
            return Response({"manifest": manifest, "yaml": manifest_yaml(deployment)})
        deployment = services.kserve_deployment_create(actor=request.user, deployment=deployment)
        return Response(DeploymentOutputSerializer(deployment).data,
                        status=status.HTTP_201_CREATED)


class ExternalEndpointCreateApi(_ManageApi):
    @extend_schema(request=ExternalEndpointCreateSerializer,
                   responses={201: DeploymentOutputSerializer},
                   operation_id="deployments_external_create")
    def post(self, request: Request) -> Response:
        """Register a running OpenAI-compatible server and health-check it; a failed check
        still registers it, with `status` failed and the reason in `status_reason`."""
        data = self.validated(ExternalEndpointCreateSerializer)
        values = dict(data)
        slug = values.pop("tenant")
        tenant = tenant_by_slug(slug) if slug else None
        if slug and tenant is None:
            raise refusal({"tenant": f"No tenant {slug!r}."})
        deployment = services.external_endpoint_register(
            actor=request.user, model_slug=values.pop("model"), tenant=tenant, **values)
        return Response(DeploymentOutputSerializer(deployment).data,
                        status=status.HTTP_201_CREATED)


class ExternalEndpointUpdateApi(_ManageApi):
    @extend_schema(request=ExternalEndpointUpdateSerializer, responses=DeploymentOutputSerializer,
                   operation_id="deployments_endpoint_update")
    def patch(self, request: Request, pk: int) -> Response:
        """Change an external endpoint's URL, upstream name, display name or key; the
        endpoint is checked again at once."""
        deployment = selectors.external_endpoint_get(pk)
        data = self.validated(ExternalEndpointUpdateSerializer)
        deployment = services.external_endpoint_update(actor=request.user,
                                                       deployment=deployment,
                                                       **data)
        return Response(DeploymentOutputSerializer(deployment).data)


class ExternalEndpointCheckApi(_ManageApi):
    @extend_schema(request=None, responses=DeploymentOutputSerializer,
                   operation_id="deployments_endpoint_check")
    def post(self, request: Request, pk: int) -> Response:
        """Health-check an external endpoint now (`GET <base URL>/models`)."""
        deployment = services.deployment_check(actor=request.user,
                                               deployment=selectors.external_endpoint_get(pk))
        return Response(DeploymentOutputSerializer(deployment).data)


class DeploymentDetailApi(_ManageApi):
    """A deployment with its events. DELETE asks the worker to remove what it applied to the
    cluster (an external endpoint is unregistered at once); the row stays, with its history."""

    @extend_schema(responses=DeploymentDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(DeploymentDetailSerializer(selectors.deployment_get(pk)).data)

    @extend_schema(request=None, responses=DeploymentOutputSerializer)
    def delete(self, request: Request, pk: int) -> Response:
        deployment = services.deployment_delete(actor=request.user,
                                                deployment=selectors.deployment_get(pk))
        return Response(DeploymentOutputSerializer(deployment).data,
                        status=status.HTTP_202_ACCEPTED)


class DeploymentManifestApi(_ManageApi):
    @extend_schema(responses=ManifestSerializer)
    def get(self, request: Request, pk: int) -> Response:
        deployment = selectors.deployment_get(pk)
        manifest = backend_for(deployment).manifest(deployment)
        if manifest is None:
            raise ApplicationError("An external endpoint has no manifest.")
        return Response({"manifest": manifest, "yaml": manifest_yaml(deployment)})


class DeploymentActionApi(_ManageApi):
    """POST without a body: retry, promote, rollback, stop, start."""

    action_name = ""

    @extend_schema(request=None, responses={202: DeploymentOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        action = getattr(services, f"deployment_{self.action_name}")
        deployment = action(actor=request.user, deployment=selectors.deployment_get(pk))
        return Response(DeploymentOutputSerializer(deployment).data,
                        status=status.HTTP_202_ACCEPTED)


class DeploymentUpdateApi(_ManageApi):
    @extend_schema(request=UpdateVersionSerializer, responses={202: DeploymentOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        deployment = selectors.deployment_get(pk)
        data = self.validated(UpdateVersionSerializer)
        version = _named_in_body(ModelVersion.objects.all(), "version", pk=data["version"])
        deployment = services.deployment_update_version(
            actor=request.user, deployment=deployment, version=version,
            canary_traffic_percent=data["canary_traffic_percent"])
        return Response(DeploymentOutputSerializer(deployment).data,
                        status=status.HTTP_202_ACCEPTED)


class DeploymentScaleApi(_ManageApi):
    @extend_schema(request=ScaleSerializer, responses={202: DeploymentOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        deployment = services.deployment_scale(actor=request.user,
                                               deployment=selectors.deployment_get(pk),
                                               **self.validated(ScaleSerializer))
        return Response(DeploymentOutputSerializer(deployment).data,
                        status=status.HTTP_202_ACCEPTED)


class GpuAllocationApi(_ManageApi):
    @extend_schema(responses=GpuAllocationSerializer(many=True))
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.gpu_allocation(), GpuAllocationSerializer)


class LLMPresetListApi(_ManageApi):
    @extend_schema(responses=LLMPresetSerializer(many=True), operation_id="llm_presets_list")
    def get(self, request: Request) -> Response:
        return self.paginate(selectors.llm_preset_list(), LLMPresetSerializer)

    @extend_schema(request=LLMPresetSerializer, responses={201: LLMPresetSerializer},
                   operation_id="llm_presets_create")
    def post(self, request: Request) -> Response:
        """Curate an LLMInferenceServiceConfig preset; deployments that use it apply it."""
        data = self.validated(LLMPresetSerializer)
        preset = services.llm_preset_create(actor=request.user, **data)
        return Response(LLMPresetSerializer(selectors.llm_preset_get(preset.pk)).data,
                        status=status.HTTP_201_CREATED)


class LLMPresetDetailApi(_ManageApi):
    @extend_schema(responses=LLMPresetSerializer, operation_id="llm_presets_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        return Response(LLMPresetSerializer(selectors.llm_preset_get(pk)).data)

    @extend_schema(request=LLMPresetSerializer, responses=LLMPresetSerializer,
                   operation_id="llm_presets_update")
    def patch(self, request: Request, pk: int) -> Response:
        """Change a preset (not its name). When what it applies changes, every deployment
        using it is checked again and re-applied; a refusal refuses the change (400)."""
        preset = selectors.llm_preset_get(pk)
        data = LLMPresetSerializer(preset, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = {k: v for k, v in data.validated_data.items() if k != "name"}
        services.llm_preset_update(actor=request.user, preset=preset, **fields)
        return Response(LLMPresetSerializer(selectors.llm_preset_get(pk)).data)

    @extend_schema(request=None, responses={204: None}, operation_id="llm_presets_destroy")
    def delete(self, request: Request, pk: int) -> Response:
        """Refused (400) while a deployment that is not deleted uses the preset."""
        services.llm_preset_delete(actor=request.user, preset=selectors.llm_preset_get(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantDeploymentListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.DEPLOYMENTS_VIEW}

    @extend_schema(responses=TenantDeploymentsSerializer, operation_id="tenant_deployments_list")
    def get(self, request: Request, slug: str) -> Response:
        return Response(TenantDeploymentsSerializer({
            "dedicated": selectors.tenant_dedicated_deployments(tenant=self.tenant),
            "shared": selectors.tenant_shared_deployments(tenant=self.tenant)}).data)
