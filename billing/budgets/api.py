"""REST endpoints for budgets and budget alerts, tenant-scoped like the keys API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing.budgets import selectors, services
from billing.budgets.counters import budget_consumption
from billing.budgets.serializers import (
    BudgetAlertSerializer,
    BudgetInputSerializer,
    BudgetOutputSerializer,
)
from models_catalog.selectors import model_list_for_tenant
from portal.api import ApplicationError
from tenants.api_access import TenantApi
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


class BudgetListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.BUDGETS_VIEW, "POST": TenantPerm.BUDGETS_MANAGE}

    @extend_schema(responses=BudgetOutputSerializer(many=True), operation_id="budgets_list")
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.budget_rows(tenant=self.tenant), BudgetOutputSerializer)

    @extend_schema(request=BudgetInputSerializer, responses={201: BudgetOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(BudgetInputSerializer)
        budget = services.budget_create(actor=request.user, tenant=self.tenant,
                                       **_values(self.tenant, data))
        return Response(BudgetOutputSerializer(_row(budget)).data,
                        status=status.HTTP_201_CREATED)


class BudgetDetailApi(TenantApi):
    # Another tenant's or a missing budget is a 404 before a viewer's write is a 403.
    tenant_perms = {"GET": TenantPerm.BUDGETS_VIEW, "PATCH": TenantPerm.BUDGETS_VIEW,
                    "DELETE": TenantPerm.BUDGETS_VIEW}
    object_tenant_perms = {"PATCH": TenantPerm.BUDGETS_MANAGE,
                           "DELETE": TenantPerm.BUDGETS_MANAGE}

    def budget(self, request: Request, pk: int):
        budget = selectors.budget_get(tenant=self.tenant, pk=pk)
        self.check_object_permissions(request, budget)
        return budget

    @extend_schema(responses=BudgetOutputSerializer)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(BudgetOutputSerializer(_row(self.budget(request, pk))).data)

    @extend_schema(request=BudgetInputSerializer(partial=True), responses=BudgetOutputSerializer)
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        tenant = self.tenant
        budget = self.budget(request, pk)
        data = self.validated(BudgetInputSerializer, partial=True)
        values = dict(data)
        if "model" in values:
            values = {**values, **{"model": _values(tenant, {"model": values["model"]})["model"]}}
        if "currency" in values:
            values["currency"] = values["currency"].upper()
        budget = services.budget_update(actor=request.user, budget=budget, **values)
        return Response(BudgetOutputSerializer(_row(budget)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        services.budget_delete(actor=request.user, budget=self.budget(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BudgetAlertListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.BUDGETS_VIEW}

    @extend_schema(responses=BudgetAlertSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.alert_list(tenant=self.tenant), BudgetAlertSerializer)
