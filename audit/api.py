"""REST endpoints for audit events: the explorer's filters and keyset pages, as JSON."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from audit import selectors
from audit.filters import EventFilterForm
from audit.serializers import (
    AuditEventOutputSerializer,
    AuditEventPageSerializer,
    CheckpointDetailSerializer,
    CheckpointPageSerializer,
)
from tenants import selectors as tenant_selectors
from tenants.api_access import PortalApi, TenantApi
from tenants.permissions import PlatformPerm, TenantPerm

PAGE_SIZE = 100
_FILTER_PARAMS = [
    OpenApiParameter(name, OpenApiTypes.STR, description=description) for name, description in [
        ("since", "ISO time; events at or after it"), ("until", "ISO time; events before it"),
        ("actor", "exact actor label (e-mail or system label)"),
        ("action", "exact action, or a prefix ending in '.'"),
        ("target", "type or type:id"), ("q", "text anywhere in the details"),
        ("before", "keyset cursor: events older than this seq"),
        ("after", "keyset cursor: events newer than this seq"),
    ]
]


def _page(request: Request, *, tenant_id: int | None, allow_tenant_param: bool) -> Response:
    form = EventFilterForm(request.query_params)
    if not form.is_valid():
        raise ValidationError({field: list(messages) for field, messages in form.errors.items()})
    if allow_tenant_param and form.cleaned_data.get("tenant"):
        tenant_id = tenant_selectors.tenant_id_for_slug(form.cleaned_data["tenant"])
        if tenant_id is None:
            raise ValidationError({"tenant": ["No tenant has this slug."]})
    page = selectors.event_page(filters=form.event_filter(tenant_id=tenant_id),
                                before=form.cleaned_data.get("before"),
                                after=form.cleaned_data.get("after"), limit=PAGE_SIZE)
    return Response(AuditEventPageSerializer({
        "results": page.events, "older_cursor": page.older_cursor,
        "newer_cursor": page.newer_cursor}).data)


class _TrailApi(PortalApi):
    """The whole trail and its checkpoints: the operator's staff only. (Their pages are
    keyset pages of their own: `older_cursor`/`newer_cursor`, not limit/offset.)"""

    platform_perms = {"GET": PlatformPerm.AUDIT_VIEW}
    platform_denied_message = "Only the platform operator's staff may read the whole trail."


class AuditEventListApi(_TrailApi):
    @extend_schema(parameters=[*_FILTER_PARAMS, OpenApiParameter("tenant", OpenApiTypes.STR)],
                   responses=AuditEventPageSerializer, operation_id="audit_events_list")
    def get(self, request: Request) -> Response:
        return _page(request, tenant_id=None, allow_tenant_param=True)


class AuditEventDetailApi(_TrailApi):
    @extend_schema(responses=AuditEventOutputSerializer, operation_id="audit_events_retrieve")
    def get(self, request: Request, seq: int) -> Response:
        return Response(AuditEventOutputSerializer(selectors.event_get(seq=seq)).data)


class TenantAuditEventListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.AUDIT_VIEW}

    @extend_schema(parameters=_FILTER_PARAMS, responses=AuditEventPageSerializer,
                   operation_id="tenant_audit_events_list")
    def get(self, request: Request, slug: str) -> Response:
        return _page(request, tenant_id=self.tenant.pk, allow_tenant_param=False)


class CheckpointListApi(_TrailApi):
    @extend_schema(
        parameters=[OpenApiParameter("before", OpenApiTypes.INT,
                                     description="keyset cursor: checkpoints before this seq")],
        responses=CheckpointPageSerializer, operation_id="audit_checkpoints_list")
    def get(self, request: Request) -> Response:
        """Signed checkpoints, newest first, each with its timestamp status."""
        raw = request.query_params.get("before", "")
        if raw and not raw.isdigit():
            raise ValidationError({"before": ["A sequence number (a whole number)."]})
        checkpoints = selectors.checkpoint_list(limit=PAGE_SIZE + 1,
                                                before=int(raw) if raw else None)
        page = checkpoints[:PAGE_SIZE]
        return Response(CheckpointPageSerializer({
            "results": page,
            "older_cursor": page[-1].last_seq if len(checkpoints) > PAGE_SIZE else None}).data)


class CheckpointDetailApi(_TrailApi):
    @extend_schema(responses=CheckpointDetailSerializer, operation_id="audit_checkpoints_retrieve")
    def get(self, request: Request, seq: int) -> Response:
        """The checkpoint at `seq`, with the bytes it signs and its RFC 3161 timestamp."""
        return Response(CheckpointDetailSerializer(selectors.checkpoint_get(last_seq=seq)).data)
