"""REST endpoints for statements: a tenant's months, one month's lines, its CSV."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.statements import exports, selectors
from billing.statements.serializers import StatementDetailSerializer, StatementSerializer
from tenants.api import tenant_for_api
from tenants.permissions import TenantPerm


class StatementListApi(APIView):
    @extend_schema(responses=StatementSerializer(many=True), operation_id="statements_list")
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.STATEMENTS_VIEW)
        return Response(StatementSerializer(selectors.statement_list(tenant=tenant),
                                            many=True).data)


class StatementDetailApi(APIView):
    @extend_schema(responses=StatementDetailSerializer)
    def get(self, request: Request, slug: str, month: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.STATEMENTS_VIEW)
        data = selectors.statement_get(tenant=tenant,
                                       period_start=selectors.statement_month(month))
        return Response(StatementDetailSerializer(data).data)


class StatementCsvApi(APIView):
    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, slug: str, month: str) -> HttpResponse:
        tenant = tenant_for_api(request, slug, TenantPerm.STATEMENTS_VIEW)
        data = selectors.statement_get(tenant=tenant,
                                       period_start=selectors.statement_month(month))
        response = HttpResponse(exports.statement_csv(data), content_type="text/csv")
        response["Content-Disposition"] = (f'attachment; filename="statement-{tenant.slug}-'
                                           f'{month}.csv"')
        return response
