"""REST endpoints for budgets and budget alerts, tenant-scoped like the keys API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.budgets import selectors, services
from billing.budgets.counters import budget_consumption
from billing.budgets.serializers import (
    BudgetAlertSerializer,
    BudgetInputSerializer,
    BudgetOutputSerializer,
)
from models_catalog.selectors import model_list_for_tenant
from portal.api import ApplicationError
from tenants.api import tenant_for_api
from tenants.permissions import TenantPerm


def _row(budget) -> dict:
    return {"budget": budget, **budget_consumption(budget)}


def _values(tenant, data: dict) -> dict:
    values = dict(data)
    slug = values.pop("model", None)
    values["model"] = None
    if slug:
        values["model"] = model_list_for_tenant(tenant=tenant).filter(slug=slug).first()
        if values["model"] is None:
            raise ApplicationError("Unknown model.", field_errors={
                "model": [f"“{slug}” is not a model this tenant may use."]})
    values["currency"] = (values.get("currency") or "").upper()
    return values


class BudgetListApi(APIView):
    @extend_schema(responses=BudgetOutputSerializer(many=True), operation_id="budgets_list")
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.BUDGETS_VIEW)
        return Response(BudgetOutputSerializer(selectors.budget_rows(tenant=tenant),
                                               many=True).data)

    @extend_schema(request=BudgetInputSerializer, responses={201: BudgetOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.BUDGETS_MANAGE)
        data = BudgetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        budget = services.budget_create(actor=request.user, tenant=tenant,
                                       **_values(tenant, data.validated_data))
        return Response(BudgetOutputSerializer(_row(budget)).data,
                        status=status.HTTP_201_CREATED)


class BudgetDetailApi(APIView):
    @extend_schema(responses=BudgetOutputSerializer)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.BUDGETS_VIEW)
        return Response(BudgetOutputSerializer(_row(selectors.budget_get(tenant=tenant,
                                                                         pk=pk))).data)

    @extend_schema(request=BudgetInputSerializer(partial=True), responses=BudgetOutputSerializer)
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.BUDGETS_VIEW)
        budget = selectors.budget_get(tenant=tenant, pk=pk)
        tenant_for_api(request, slug, TenantPerm.BUDGETS_MANAGE)
        data = BudgetInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if "model" in values:
            values = {**values, **{"model": _values(tenant, {"model": values["model"]})["model"]}}
        if "currency" in values:
            values["currency"] = values["currency"].upper()
        budget = services.budget_update(actor=request.user, budget=budget, **values)
        return Response(BudgetOutputSerializer(_row(budget)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.BUDGETS_VIEW)
        budget = selectors.budget_get(tenant=tenant, pk=pk)
        tenant_for_api(request, slug, TenantPerm.BUDGETS_MANAGE)
        services.budget_delete(actor=request.user, budget=budget)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BudgetAlertListApi(APIView):
    @extend_schema(responses=BudgetAlertSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.BUDGETS_VIEW)
        return Response(BudgetAlertSerializer(selectors.alert_list(tenant=tenant)[:500],
                                              many=True).data)
