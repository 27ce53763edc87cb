"""Budget pages: the list with consumption and recent alerts, create, edit, delete."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.budgets import selectors, services
from billing.budgets.forms import BudgetForm
from portal.api import ApplicationError
from portal.forms import add_service_errors, submit
from portal.htmx import render_page_or_partial
from tenants import permissions
from tenants.access import tenant_view
from tenants.permissions import TenantPerm


def _can_manage(request: HttpRequest) -> bool:
    return permissions.has_tenant_perm(request.user, request.tenant, TenantPerm.BUDGETS_MANAGE)


def _budget_page(request: HttpRequest, *, form: BudgetForm | None = None,
                 status: int = 200) -> HttpResponse:
    tenant = request.tenant
    context = {"tenant": tenant, "rows": selectors.budget_rows(tenant=tenant),
               "form": form or BudgetForm(tenant=tenant), "can_manage": _can_manage(request),
               "alerts": selectors.alert_list(tenant=tenant)[:10]}
    return render_page_or_partial(request, "billing/budgets.html",
                                  "billing/partials/_budgets.html", context, status=status)


# The page; its forms post to the views below, which show it again with their outcome.
budget_list = tenant_view(TenantPerm.BUDGETS_VIEW)(_budget_page)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def budget_create(request: HttpRequest) -> HttpResponse:
    """Add a budget and go back to the budgets page; invalid or refused, the page again with
    the form's errors (422)."""
    form = BudgetForm(request.POST, tenant=request.tenant)
    budget = submit(form, lambda: services.budget_create(
        actor=request.user, tenant=request.tenant, **form.service_values()))
    if budget is None:
        return _budget_page(request, form=form, status=422)
    messages.success(request, f"Budget “{budget.name}” created.")
    return redirect("billing:budgets", request.tenant.slug)


@tenant_view(TenantPerm.BUDGETS_MANAGE)
def budget_edit(request: HttpRequest, pk: int) -> HttpResponse:
    budget = selectors.budget_get(tenant=request.tenant, pk=pk)
    if request.method == "POST":
        form = BudgetForm(request.POST, tenant=request.tenant)
        if form.is_valid():
            try:
                services.budget_update(actor=request.user, budget=budget, **form.service_values())
            except ApplicationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Budget “{budget.name}” saved.")
                return redirect("billing:budgets", request.tenant.slug)
        status = 422
    else:
        form = BudgetForm(initial=BudgetForm.initial_from(budget), tenant=request.tenant)
        status = 200
    return render(request, "billing/budget_edit.html",
                  {"tenant": request.tenant, "budget": budget, "form": form}, status=status)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def budget_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a budget with its alerts (the audit trail keeps the deletion) and go back to
    the budgets page; the gateway stops enforcing it at once."""
    budget = selectors.budget_get(tenant=request.tenant, pk=pk)
    services.budget_delete(actor=request.user, budget=budget)
    messages.success(request, f"Budget “{budget.name}” deleted.")
    return redirect("billing:budgets", request.tenant.slug)
