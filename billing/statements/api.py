"""REST endpoints for statements: a tenant's months, one month's lines, its CSV."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from billing.statements import exports, selectors
from billing.statements.serializers import StatementDetailSerializer, StatementSerializer
from tenants.api_access import TenantApi
from tenants.permissions import TenantPerm


class StatementListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.STATEMENTS_VIEW}

    @extend_schema(responses=StatementSerializer(many=True), operation_id="statements_list")
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.statement_list(tenant=self.tenant), StatementSerializer)


class StatementDetailApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.STATEMENTS_VIEW}

    @extend_schema(responses=StatementDetailSerializer)
    def get(self, request: Request, slug: str, month: str) -> Response:
        tenant = self.tenant
        data = selectors.statement_get(tenant=tenant,
                                       period_start=selectors.statement_month(month))
        return Response(StatementDetailSerializer(data).data)


class StatementCsvApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.STATEMENTS_VIEW}

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, slug: str, month: str) -> HttpResponse:
        tenant = self.tenant
        data = selectors.statement_get(tenant=tenant,
                                       period_start=selectors.statement_month(month))
        response = HttpResponse(exports.statement_csv(data), content_type="text/csv")
        response["Content-Disposition"] = (f'attachment; filename="statement-{tenant.slug}-'
                                           f'{month}.csv"')
        return response
