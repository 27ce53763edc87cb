"""REST API of the catalog and the supply-chain gate, under the same rules as the pages:
MSP admins manage, compliance officers read everything, tenant members read the models
entitled to their tenant (an unentitled model is a 404)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from models_catalog import selectors, services
from models_catalog.models import ModelVersion, UploadSession
from models_catalog.provenance import provenance_query
from models_catalog.serializers import (
    AnnexXIIOutputSerializer,
    AnnexXIISerializer,
    EntitlementsSerializer,
    LineageSerializer,
    ModelCreateSerializer,
    ModelLifecycleSerializer,
    ModelOutputSerializer,
    PriceCreateSerializer,
    PriceSerializer,
    ProvenanceQuerySerializer,
    ReferenceSerializer,
    RejectSerializer,
    SubmitSerializer,
    TenantModelOutputSerializer,
    TenantVersionOutputSerializer,
    UploadCreateSerializer,
    UploadOutputSerializer,
    VersionCreateSerializer,
    VersionLifecycleSerializer,
    VersionOutputSerializer,
)
from portal.api import ApplicationError
from tenants.api_access import PortalApi, TenantApi
from tenants.permissions import PlatformPerm, TenantPerm

VIEW, MANAGE = PlatformPerm.MODELS_VIEW, PlatformPerm.MODELS_MANAGE


def _model(request: Request, slug: str):
    return selectors.model_get_for_user(user=request.user, tenant=None, slug=slug)


def _version(request: Request, slug: str, version: str) -> ModelVersion:
    return selectors.version_get_for_user(user=request.user, model=_model(request, slug),
                                          version=version)


def _version_out(version: ModelVersion) -> dict:
    version.refresh_from_db()
    return VersionOutputSerializer(version).data


class ModelListApi(PortalApi):
    platform_perms = {"GET": VIEW, "POST": MANAGE}

    @extend_schema(responses=ModelOutputSerializer(many=True),
                   parameters=[OpenApiParameter("q", str), OpenApiParameter("task", str)])
    def get(self, request: Request) -> Response:
        models = selectors.model_list_for_user(user=request.user, tenant=None,
                                               q=request.query_params.get("q", ""),
                                               task=request.query_params.get("task", ""))
        return self.paginate(models.prefetch_related("entitled_tenants"), ModelOutputSerializer)

    @extend_schema(request=ModelCreateSerializer, responses={201: ModelOutputSerializer})
    def post(self, request: Request) -> Response:
        model = services.model_create(actor=request.user, **self.validated(ModelCreateSerializer))
        return Response(ModelOutputSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(PortalApi):
    platform_perms = {"GET": VIEW}

    @extend_schema(responses=ModelOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(ModelOutputSerializer(_model(request, slug)).data)


class ModelEntitlementsApi(PortalApi):
    """Which tenants may use the model: every tenant, or the ones named (by slug). The
    gateway applies the change at once."""

    platform_perms = {"PUT": MANAGE}

    @extend_schema(request=EntitlementsSerializer, responses=ModelOutputSerializer)
    def put(self, request: Request, slug: str) -> Response:
        model = _model(request, slug)
        data = self.validated(EntitlementsSerializer)
        wanted = data["tenants"]
        tenants = selectors.tenants_with_slugs(slugs=wanted)
        unknown = sorted(set(wanted) - {t.slug for t in tenants})
        if unknown:
            raise ApplicationError("Unknown tenants.", field_errors={"tenants": unknown})
        model = services.model_set_entitlements(
            actor=request.user, model=model, all_tenants=data["all_tenants"],
            tenants=tenants)
        return Response(ModelOutputSerializer(model).data)


class ModelAnnexXIIApi(PortalApi):
    """A model's EU AI Act Annex XII information: read by whoever reads the catalog, written
    by MSP admins (PUT: every field; PATCH: the fields sent)."""

    platform_perms = {"GET": VIEW, "PUT": MANAGE, "PATCH": MANAGE}

    @extend_schema(responses=AnnexXIIOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(selectors.annex_xii_document(_model(request, slug)))

    def _write(self, request: Request, slug: str, *, partial: bool) -> Response:
        model = _model(request, slug)
        data = self.validated(AnnexXIISerializer, partial=partial)
        services.model_update_annex_xii(actor=request.user, model=model, **data)
        model.refresh_from_db()
        return Response(selectors.annex_xii_document(model))

    @extend_schema(request=AnnexXIISerializer, responses=AnnexXIIOutputSerializer)
    def put(self, request: Request, slug: str) -> Response:
        return self._write(request, slug, partial=False)

    @extend_schema(request=AnnexXIISerializer, responses=AnnexXIIOutputSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        return self._write(request, slug, partial=True)


class ModelPriceApi(PortalApi):
    platform_perms = {"GET": VIEW, "POST": MANAGE}

    @extend_schema(responses=PriceSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.price_list(model=_model(request, slug)), PriceSerializer)

    @extend_schema(request=PriceCreateSerializer, responses={201: PriceSerializer})
    def post(self, request: Request, slug: str) -> Response:
        model = _model(request, slug)
        data = self.validated(PriceCreateSerializer)
        price = services.price_set(actor=request.user, model=model, **data)
        return Response(PriceSerializer(price).data, status=status.HTTP_201_CREATED)


class ModelLifecycleApi(PortalApi):
    """Make the model active, deprecated (optionally with a sunset date and a successor; the
    tenants that used it are told) or retired."""

    platform_perms = {"POST": MANAGE}

    @extend_schema(request=ModelLifecycleSerializer, responses=ModelOutputSerializer)
    def post(self, request: Request, slug: str) -> Response:
        model = _model(request, slug)
        data = self.validated(ModelLifecycleSerializer)
        model = services.model_set_lifecycle(actor=request.user, model=model,
                                             **data)
        return Response(ModelOutputSerializer(model).data)


class VersionListApi(PortalApi):
    platform_perms = {"GET": VIEW, "POST": MANAGE}

    @extend_schema(responses=VersionOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        model = _model(request, slug)
        versions = selectors.version_list_for_user(user=request.user, model=model)
        return self.paginate(versions.prefetch_related("files"), VersionOutputSerializer)

    @extend_schema(request=VersionCreateSerializer, responses={201: VersionOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        model = _model(request, slug)
        data = VersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)  # (its version_values() reads the checked body)
        version = services.version_create(actor=request.user, model=model,
                                          **data.version_values())
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(PortalApi):
    platform_perms = {"GET": VIEW}

    @extend_schema(responses=VersionOutputSerializer)
    def get(self, request: Request, slug: str, version: str) -> Response:
        return Response(VersionOutputSerializer(_version(request, slug, version)).data)


class VersionLineageApi(PortalApi):
    """A version's lineage: its base model (a catalog version or an external one, with its
    digest) and datasets. MSP admins correct it; every change is audited."""

    platform_perms = {"GET": VIEW, "PUT": MANAGE}

    @extend_schema(responses=LineageSerializer)
    def get(self, request: Request, slug: str, version: str) -> Response:
        return Response(_lineage_out(_version(request, slug, version)))

    @extend_schema(request=LineageSerializer, responses=LineageSerializer)
    def put(self, request: Request, slug: str, version: str) -> Response:
        mv = _version(request, slug, version)
        data = LineageSerializer(data=request.data)
        data.is_valid(raise_exception=True)  # (its lineage_values() reads the checked body)
        mv = services.version_set_lineage(actor=request.user, version=mv,
                                          **data.lineage_values())
        return Response(_lineage_out(mv))


def _lineage_out(version: ModelVersion) -> dict:
    return {"base_version": str(version.base_version) if version.base_version_id else "",
            "base_model": version.base_model, "base_model_digest": version.base_model_digest,
            "datasets": [{"identifier": d.identifier, "digest": d.digest}
                         for d in version.datasets.all()]}


def _provenance_query(data) -> dict:
    query = ProvenanceQuerySerializer(data=data)
    query.is_valid(raise_exception=True)
    return query.validated_data


class ProvenanceApi(PortalApi):
    """Which versions, deployments and tenants derive from a dataset, an external base model
    or a catalog version (`<model>:<version>`), transitively through base versions."""

    platform_perms = {"GET": VIEW}

    @extend_schema(parameters=[ProvenanceQuerySerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        query = _provenance_query(request.query_params)
        return Response(provenance_query(**query).as_dict())


class ProvenanceExportApi(PortalApi):
    """The same answer signed with the platform key: a DSSE envelope around an in-toto
    Statement (verify with `manage.py provenance_verify`). Audited."""

    platform_perms = {"POST": VIEW}

    @extend_schema(request=ProvenanceQuerySerializer,
                   responses={(200, "application/json"): OpenApiTypes.OBJECT})
    def post(self, request: Request) -> HttpResponse:
        query = _provenance_query(request.data)
        data = services.provenance_export(actor=request.user, **query)
        response = HttpResponse(data, content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="provenance.dsse.json"'
        return response


class _VersionActionApi(PortalApi, ABC):
    """One step of the version's life; the answer is the version as it now is."""

    # A subclass names its body's `serializer_class` (if it takes one) and runs the service
    # in `act`.

    platform_perms = {"POST": MANAGE}
    serializer_class = None  # the request body's serializer (read by the schema too)

    @abstractmethod
    def act(self, version: ModelVersion, data: dict) -> None:
        """Run the step's service on `version` with the checked body `data`."""

    @extend_schema(responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        mv = _version(request, slug, version)
        self.act(mv, self.validated(self.serializer_class) if self.serializer_class else {})
        return Response(_version_out(mv))


class VersionReferenceApi(_VersionActionApi):
    """Pin an image already pushed to the landing repository; the scan starts."""

    serializer_class = ReferenceSerializer

    def act(self, version, data):
        services.version_register_reference(actor=self.request.user, version=version, **data)


class VersionSubmitApi(_VersionActionApi):
    serializer_class = SubmitSerializer

    def act(self, version, data):
        services.version_submit(actor=self.request.user, version=version, note=data["note"])


class VersionApproveApi(_VersionActionApi):
    """Four-eyes approval: sign, copy by digest to the trusted repository, publish."""

    def act(self, version, data):
        services.version_approve(actor=self.request.user, version=version)


class VersionRejectApi(_VersionActionApi):
    serializer_class = RejectSerializer

    def act(self, version, data):
        services.version_reject(actor=self.request.user, version=version, reason=data["reason"])


class VersionLifecycleApi(_VersionActionApi):
    serializer_class = VersionLifecycleSerializer

    def act(self, version, data):
        services.version_set_lifecycle(actor=self.request.user, version=version, **data)


class VersionVerifyApi(_VersionActionApi):
    """Check the signature again — the statement, the database and the registry — and
    record the outcome (`signature_status`, `signature_checked_at`, `signature_detail`)."""

    def act(self, version, data):
        services.version_signature_verify(actor=self.request.user, version=version)


class VersionSbomApi(PortalApi):
    platform_perms = {"GET": VIEW}

    @extend_schema(responses={(200, "application/vnd.cyclonedx+json"): OpenApiTypes.OBJECT})
    def get(self, request: Request, slug: str, version: str) -> HttpResponse:
        mv = _version(request, slug, version)
        if not mv.sbom:
            raise NotFound("This version has no SBOM yet.")
        return HttpResponse(mv.sbom, content_type="application/vnd.cyclonedx+json")


class VersionScanReportApi(PortalApi):
    platform_perms = {"GET": VIEW}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, slug: str, version: str) -> Response:
        mv = _version(request, slug, version)
        if mv.scan_report is None:
            raise NotFound("This version has not been scanned yet.")
        return Response(mv.scan_report)


class UploadCreateApi(PortalApi):
    """Start a resumable upload of a ModelCar archive — or resume the interrupted one, for
    the same file name and size (200 instead of 201) — then PUT its bytes in chunks to `url`
    with Content-Range, and POST `complete_url`."""

    platform_perms = {"POST": MANAGE}

    @extend_schema(request=UploadCreateSerializer,
                   responses={201: UploadOutputSerializer, 200: UploadOutputSerializer})
    def post(self, request: Request, slug: str, version: str) -> Response:
        mv = _version(request, slug, version)
        data = self.validated(UploadCreateSerializer)
        interrupted = getattr(mv, "upload", None)
        session = services.upload_session_create(actor=request.user, version=mv,
                                                 **data)
        resumed = interrupted is not None and interrupted.pk == session.pk
        return Response(UploadOutputSerializer(session).data,
                        status=status.HTTP_200_OK if resumed else status.HTTP_201_CREATED)


def _content_range(header: str, length: int) -> int | None:
    """The start of `bytes <start>-<end>/<total>` when it spans exactly `length` bytes."""
    try:
        unit, _, spec = header.partition(" ")
        span, _, _total = spec.partition("/")
        start, _, end = span.partition("-")
        start_i, end_i = int(start), int(end)
    except ValueError:
        return None
    if unit != "bytes" or end_i < start_i or end_i - start_i + 1 != length:
        return None
    return start_i


class RawBytesParser(BaseParser):
    """Leaves the body unread: the view streams it to disk."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


def _upload(request: Request, pk) -> UploadSession:
    return selectors.upload_session_get(pk=pk)


class UploadChunkApi(PortalApi):
    platform_perms = {"GET": MANAGE, "PUT": MANAGE}

    parser_classes = [RawBytesParser]

    @extend_schema(responses=UploadOutputSerializer)
    def get(self, request: Request, pk) -> Response:
        """Where the upload stands: resume from `received_bytes`."""
        return Response(UploadOutputSerializer(_upload(request, pk)).data)

    @extend_schema(request={"application/octet-stream": OpenApiTypes.BINARY},
                   responses={200: UploadOutputSerializer, 409: inline_serializer(
                       "UploadOffsetConflict", fields={
                           "detail": serializers.CharField(),
                           "received_bytes": serializers.IntegerField(
                               help_text="Resume the upload from this byte.")})},
                   parameters=[OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER,
                                                description="bytes <start>-<end>/<total>")])
    def put(self, request: Request, pk) -> Response:
        session = _upload(request, pk)
        try:
            length = int(request.headers.get("Content-Length", ""))
        except ValueError:
            raise ApplicationError("Send Content-Length.") from None
        offset = _content_range(request.headers.get("Content-Range", ""), length)
        if offset is None:
            raise ApplicationError("Send Content-Range: bytes <start>-<end>/<total> matching "
                                   "the body.")
        try:
            session = services.upload_chunk_append(session=session, offset=offset,
                                                   length=length, stream=request._request)
        except services.UploadOffsetMismatch as exc:
            return Response({"detail": exc.message, "received_bytes": exc.received},
                            status=status.HTTP_409_CONFLICT)
        return Response(UploadOutputSerializer(session).data)


class UploadCompleteApi(PortalApi):
    platform_perms = {"POST": MANAGE}

    @extend_schema(request=None, responses=UploadOutputSerializer)
    def post(self, request: Request, pk) -> Response:
        session = services.upload_complete(actor=request.user, session=_upload(request, pk))
        return Response(UploadOutputSerializer(session).data)


class TenantModelListApi(TenantApi):
    tenant_url_kwarg = "tenant_slug"
    tenant_perms = {"GET": TenantPerm.TENANT_VIEW}

    @extend_schema(responses=TenantModelOutputSerializer(many=True))
    def get(self, request: Request, tenant_slug: str) -> Response:
        models = selectors.model_search(selectors.model_list_for_tenant(tenant=self.tenant),
                                        q=request.query_params.get("q", ""),
                                        task=request.query_params.get("task", ""))
        return self.paginate(models, TenantModelOutputSerializer)


class TenantModelDetailApi(TenantApi):
    tenant_url_kwarg = "tenant_slug"
    tenant_perms = {"GET": TenantPerm.TENANT_VIEW}

    @extend_schema(responses=TenantModelOutputSerializer)
    def get(self, request: Request, tenant_slug: str, slug: str) -> Response:
        model = selectors.model_get_for_tenant(tenant=self.tenant, slug=slug)
        data = TenantModelOutputSerializer(model).data
        data["annex_xii"] = selectors.annex_xii_document(model)
        data["versions"] = TenantVersionOutputSerializer(
            selectors.version_list_public(model=model).prefetch_related("files"),
            many=True).data
        return Response(data)
