"""REST API of the catalog and the supply-chain gate, under the same rules as the pages:
MSP admins manage, compliance officers read everything, tenant members read the models
entitled to their tenant (an unentitled model is a 404)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_catalog import selectors, services
from models_catalog.models import ModelVersion, UploadSession
from models_catalog.serializers import (
    EntitlementsSerializer,
    ModelCreateSerializer,
    ModelLifecycleSerializer,
    ModelOutputSerializer,
    PriceCreateSerializer,
    PriceSerializer,
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
from tenants import permissions
from tenants.api import tenant_for_api
from tenants.permissions import PlatformPerm, TenantPerm


def _require(request: Request, perm: PlatformPerm) -> None:
    if not permissions.has_platform_perm(request.user, perm):
        raise PermissionDenied("Only the platform operator's staff may do this.")


def _model(request: Request, slug: str, perm: PlatformPerm = PlatformPerm.MODELS_VIEW):
    _require(request, perm)
    return selectors.model_get_for_user(user=request.user, tenant=None, slug=slug)


def _version(request: Request, slug: str, version: str,
             perm: PlatformPerm = PlatformPerm.MODELS_VIEW) -> ModelVersion:
    model = _model(request, slug, perm)
    return selectors.version_get_for_user(user=request.user, model=model, version=version)


def _version_out(version: ModelVersion) -> dict:
    version.refresh_from_db()
    return VersionOutputSerializer(version).data


class ModelListApi(APIView):
    @extend_schema(responses=ModelOutputSerializer(many=True),
                   parameters=[OpenApiParameter("q", str), OpenApiParameter("task", str)])
    def get(self, request: Request) -> Response:
        _require(request, PlatformPerm.MODELS_VIEW)
        models = selectors.model_list_for_user(user=request.user, tenant=None,
                                               q=request.query_params.get("q", ""),
                                               task=request.query_params.get("task", ""))
        return Response(ModelOutputSerializer(models.prefetch_related("entitled_tenants"),
                                              many=True).data)

    @extend_schema(request=ModelCreateSerializer, responses={201: ModelOutputSerializer})
    def post(self, request: Request) -> Response:
        _require(request, PlatformPerm.MODELS_MANAGE)
        data = ModelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_create(actor=request.user, **data.validated_data)
        return Response(ModelOutputSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    @extend_schema(responses=ModelOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(ModelOutputSerializer(_model(request, slug)).data)


class ModelEntitlementsApi(APIView):
    @extend_schema(request=EntitlementsSerializer, responses=ModelOutputSerializer)
    def put(self, request: Request, slug: str) -> Response:
        model = _model(request, slug, PlatformPerm.MODELS_MANAGE)
        data = EntitlementsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wanted = data.validated_data["tenants"]
        tenants = selectors.tenants_with_slugs(slugs=wanted)
        unknown = sorted(set(wanted) - {t.slug for t in tenants})
        if unknown:
            raise ApplicationError("Unknown tenants.", field_errors={"tenants": unknown})
        model = services.model_set_entitlements(
            actor=request.user, model=model, all_tenants=data.validated_data["all_tenants"],
            tenants=tenants)
        return Response(ModelOutputSerializer(model).data)


class ModelPriceApi(APIView):
    @extend_schema(responses=PriceSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return Response(PriceSerializer(selectors.price_list(model=_model(request, slug)),
                                        many=True).data)

    @extend_schema(request=PriceCreateSerializer, responses={201: PriceSerializer})
    def post(self, request: Request, slug: str) -> Response:
        model = _model(request, slug, PlatformPerm.MODELS_MANAGE)
        data = PriceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        price = services.price_set(actor=request.user, model=model, **data.validated_data)
        return Response(PriceSerializer(price).data, status=status.HTTP_201_CREATED)


class ModelLifecycleApi(APIView):
    @extend_schema(request=ModelLifecycleSerializer, responses=ModelOutputSerializer)
    def post(self, request: Request, slug: str) -> Response:
        model = _model(request, slug, PlatformPerm.MODELS_MANAGE)
        data = ModelLifecycleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_set_lifecycle(actor=request.user, model=model,
                                             **data.validated_data)
        return Response(ModelOutputSerializer(model).data)


class VersionListApi(APIView):
    @extend_schema(responses=VersionOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        model = _model(request, slug)
        versions = selectors.version_list_for_user(user=request.user, model=model)
        return Response(VersionOutputSerializer(versions.prefetch_related("files"),
                                                many=True).data)

    @extend_schema(request=VersionCreateSerializer, responses={201: VersionOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        model = _model(request, slug, PlatformPerm.MODELS_MANAGE)
        data = VersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_create(actor=request.user, model=model, **data.validated_data)
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(APIView):
    @extend_schema(responses=VersionOutputSerializer)
    def get(self, request: Request, slug: str, version: str) -> Response:
        return Response(VersionOutputSerializer(_version(request, slug, version)).data)


def _act(request: Request, slug: str, version: str, serializer_class, action) -> Response:
    """Validate the body (if the action takes one), run the service, return the version."""
    mv = _version(request, slug, version, PlatformPerm.MODELS_MANAGE)
    data = {}
    if serializer_class is not None:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
    action(mv, data)
    return Response(_version_out(mv))


class VersionReferenceApi(APIView):
    """Pin an image already pushed to the landing repository; the scan starts."""

    @extend_schema(request=ReferenceSerializer, responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        return _act(request, slug, version, ReferenceSerializer,
                    lambda mv, data: services.version_register_reference(
                        actor=request.user, version=mv, **data))


class VersionSubmitApi(APIView):
    @extend_schema(request=SubmitSerializer, responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        return _act(request, slug, version, SubmitSerializer,
                    lambda mv, data: services.version_submit(actor=request.user, version=mv,
                                                             note=data["note"]))


class VersionApproveApi(APIView):
    """Four-eyes approval: sign, copy by digest to the trusted repository, publish."""

    @extend_schema(request=None, responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        return _act(request, slug, version, None,
                    lambda mv, data: services.version_approve(actor=request.user, version=mv))


class VersionRejectApi(APIView):
    @extend_schema(request=RejectSerializer, responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        return _act(request, slug, version, RejectSerializer,
                    lambda mv, data: services.version_reject(actor=request.user, version=mv,
                                                             reason=data["reason"]))


class VersionLifecycleApi(APIView):
    @extend_schema(request=VersionLifecycleSerializer, responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        return _act(request, slug, version, VersionLifecycleSerializer,
                    lambda mv, data: services.version_set_lifecycle(
                        actor=request.user, version=mv, **data))


class VersionVerifyApi(APIView):
    """Check the signature again — the statement, the database and the registry — and
    record the outcome (`signature_status`, `signature_checked_at`, `signature_detail`)."""

    @extend_schema(request=None, responses=VersionOutputSerializer)
    def post(self, request: Request, slug: str, version: str) -> Response:
        return _act(request, slug, version, None,
                    lambda mv, data: services.version_signature_verify(actor=request.user,
                                                                       version=mv))


class VersionSbomApi(APIView):
    @extend_schema(responses={(200, "application/vnd.cyclonedx+json"): OpenApiTypes.OBJECT})
    def get(self, request: Request, slug: str, version: str) -> HttpResponse:
        mv = _version(request, slug, version)
        if not mv.sbom:
            raise NotFound("This version has no SBOM yet.")
        return HttpResponse(mv.sbom, content_type="application/vnd.cyclonedx+json")


class VersionScanReportApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, slug: str, version: str) -> Response:
        mv = _version(request, slug, version)
        if mv.scan_report is None:
            raise NotFound("This version has not been scanned yet.")
        return Response(mv.scan_report)


class UploadCreateApi(APIView):
    """Start a resumable upload of a ModelCar archive — or resume the interrupted one, for
    the same file name and size (200 instead of 201) — then PUT its bytes in chunks to `url`
    with Content-Range, and POST `complete_url`."""

    @extend_schema(request=UploadCreateSerializer,
                   responses={201: UploadOutputSerializer, 200: UploadOutputSerializer})
    def post(self, request: Request, slug: str, version: str) -> Response:
        mv = _version(request, slug, version, PlatformPerm.MODELS_MANAGE)
        data = UploadCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        interrupted = getattr(mv, "upload", None)
        session = services.upload_session_create(actor=request.user, version=mv,
                                                 **data.validated_data)
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
    _require(request, PlatformPerm.MODELS_MANAGE)
    return selectors.upload_session_get(pk=pk)


class UploadChunkApi(APIView):
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


class UploadCompleteApi(APIView):
    @extend_schema(request=None, responses=UploadOutputSerializer)
    def post(self, request: Request, pk) -> Response:
        session = services.upload_complete(actor=request.user, session=_upload(request, pk))
        return Response(UploadOutputSerializer(session).data)


class TenantModelListApi(APIView):
    @extend_schema(responses=TenantModelOutputSerializer(many=True))
    def get(self, request: Request, tenant_slug: str) -> Response:
        tenant = tenant_for_api(request, tenant_slug, TenantPerm.TENANT_VIEW)
        models = selectors.model_search(selectors.model_list_for_tenant(tenant=tenant),
                                        q=request.query_params.get("q", ""),
                                        task=request.query_params.get("task", ""))
        return Response(TenantModelOutputSerializer(models, many=True).data)


class TenantModelDetailApi(APIView):
    @extend_schema(responses=TenantModelOutputSerializer)
    def get(self, request: Request, tenant_slug: str, slug: str) -> Response:
        tenant = tenant_for_api(request, tenant_slug, TenantPerm.TENANT_VIEW)
        model = selectors.model_get_for_tenant(tenant=tenant, slug=slug)
        data = TenantModelOutputSerializer(model).data
        data["versions"] = TenantVersionOutputSerializer(
            selectors.version_list_public(model=model).prefetch_related("files"),
            many=True).data
        return Response(data)
