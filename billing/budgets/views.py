"""Pages for budgets, notifications, webhooks and statements."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.budgets import counters as budgets
from billing.budgets import selectors
from billing.budgets.counters import month_start, next_month
from billing.budgets.forms import BudgetForm, WebhookForm
from billing.notifications import webhooks
from billing.statements import selectors as statements
from portal.api import ApplicationError
from portal.dates import parse_month
from portal.forms import add_service_errors
from tenants import permissions
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm


def _can_manage(request: HttpRequest) -> bool:
    return permissions.has_tenant_perm(request.user, request.tenant, TenantPerm.BUDGETS_MANAGE)


def _budget_page(request: HttpRequest, *, form: BudgetForm | None = None,
                 status: int = 200) -> HttpResponse:
    tenant = request.tenant
    context = {"tenant": tenant, "rows": selectors.budget_rows(tenant=tenant),
               "form": form or BudgetForm(tenant=tenant), "can_manage": _can_manage(request),
               "alerts": selectors.alert_list(tenant=tenant)[:10]}
    template = ("billing/partials/_budgets.html" if request.htmx and not request.htmx.boosted
                else "billing/budgets.html")
    return render(request, template, context, status=status)


@tenant_view(TenantPerm.BUDGETS_VIEW)
def budget_list(request: HttpRequest) -> HttpResponse:
    return _budget_page(request)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def budget_create(request: HttpRequest) -> HttpResponse:
    form = BudgetForm(request.POST, tenant=request.tenant)
    if form.is_valid():
        try:
            budget = budgets.budget_create(actor=request.user, tenant=request.tenant,
                                           **form.service_values())
        except (ValidationError, ApplicationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Budget “{budget.name}” created.")
            return redirect("billing:budgets", request.tenant.slug)
    return _budget_page(request, form=form, status=422)


@tenant_view(TenantPerm.BUDGETS_MANAGE)
def budget_edit(request: HttpRequest, pk: int) -> HttpResponse:
    budget = selectors.budget_get(tenant=request.tenant, pk=pk)
    if request.method == "POST":
        form = BudgetForm(request.POST, tenant=request.tenant)
        if form.is_valid():
            try:
                budgets.budget_update(actor=request.user, budget=budget, **form.service_values())
            except (ValidationError, ApplicationError) as exc:
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
    budget = selectors.budget_get(tenant=request.tenant, pk=pk)
    budgets.budget_delete(actor=request.user, budget=budget)
    messages.success(request, f"Budget “{budget.name}” deleted.")
    return redirect("billing:budgets", request.tenant.slug)


@tenant_view(TenantPerm.BUDGETS_VIEW)
def notification_list(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/notifications.html", {
        "tenant": request.tenant,
        "notifications": selectors.notification_list(user=request.user, tenant=request.tenant),
        "alerts": selectors.alert_list(tenant=request.tenant)[:50]})


@require_POST
@tenant_view(TenantPerm.BUDGETS_VIEW)
def notifications_read(request: HttpRequest) -> HttpResponse:
    budgets.notifications_mark_read(user=request.user, tenant=request.tenant)
    return redirect("billing:notifications", request.tenant.slug)


def _webhook_page(request: HttpRequest, *, form: WebhookForm | None = None, status: int = 200,
                  **extra) -> HttpResponse:
    tenant = request.tenant
    return render(request, "billing/webhooks.html", {
        "tenant": tenant, "endpoints": selectors.webhook_endpoint_list(tenant=tenant),
        "deliveries": selectors.webhook_delivery_list(tenant=tenant)[:50],
        "form": form or WebhookForm(), "can_manage": _can_manage(request),
        "reveal_urls": permissions.can_see_webhook_urls(request.user, tenant), **extra},
        status=status)


@tenant_view(TenantPerm.BUDGETS_VIEW)
def webhook_list(request: HttpRequest) -> HttpResponse:
    return _webhook_page(request)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def webhook_create(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST)
    if form.is_valid():
        try:
            endpoint, secret = webhooks.webhook_endpoint_create(
                actor=request.user, tenant=request.tenant, **form.cleaned_data)
        except (ValidationError, ApplicationError) as exc:
            add_service_errors(form, exc)
        else:
            return _webhook_page(request, new_endpoint=endpoint, new_secret=secret)
    return _webhook_page(request, form=form, status=422)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def webhook_ping(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = selectors.webhook_endpoint_get(tenant=request.tenant, pk=pk)
    webhooks.webhook_endpoint_ping(actor=request.user, endpoint=endpoint)
    messages.success(request, f"Test event queued for “{endpoint.name}”: its result appears "
                              "in the delivery log within seconds.")
    return redirect("billing:webhooks", request.tenant.slug)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = selectors.webhook_endpoint_get(tenant=request.tenant, pk=pk)
    webhooks.webhook_endpoint_delete(actor=request.user, endpoint=endpoint)
    messages.success(request, f"Webhook “{endpoint.name}” deleted.")
    return redirect("billing:webhooks", request.tenant.slug)


# --- statements -----------------------------------------------------------------------

def _month(value: str) -> date:
    try:
        month = parse_month(value)
    except ValueError:
        raise Http404("No such month.") from None
    if month > month_start(datetime.now(UTC).date()):
        raise Http404("No statement for a future month.")
    return month


@tenant_view(TenantPerm.STATEMENTS_VIEW)
def statement_list(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/statements.html", {
        "tenant": request.tenant,
        "statements": statements.statement_list(tenant=request.tenant)})


@tenant_view(TenantPerm.STATEMENTS_VIEW)
def statement_detail(request: HttpRequest, month: str, fmt: str = "html") -> HttpResponse:
    data = statements.statement_get(tenant=request.tenant, period_start=_month(month))
    filename = f"statement-{request.tenant.slug}-{month}"
    if fmt == "csv":
        response = HttpResponse(statements.statement_csv(data), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response
    if fmt == "pdf":
        response = HttpResponse(statements.statement_pdf(data), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{filename}.pdf"'
        return response
    return render(request, "billing/statement_detail.html", {
        "tenant": request.tenant, "statement": data, "month": month})


@platform_view(PlatformPerm.STATEMENTS_CLOSE)
def msp_statements(request: HttpRequest) -> HttpResponse:
    current = month_start(datetime.now(UTC).date())
    previous = month_start(current - timedelta(days=1))
    return render(request, "billing/msp_statements.html", {
        "rows": selectors.statement_overview(), "previous": previous,
        "pending": statements.statements_pending(period_start=previous),
        "closable": [previous, month_start(previous - timedelta(days=1))],
        })


@require_POST
@platform_view(PlatformPerm.STATEMENTS_CLOSE)
def msp_statements_close(request: HttpRequest) -> HttpResponse:
    try:
        month = parse_month(request.POST.get("month", ""))
    except ValueError as exc:
        messages.error(request, f"Choose a month to close: {exc}")
        return redirect("billing_msp:statements")
    if next_month(month) > datetime.now(UTC).date():
        messages.error(request, f"{month:%B %Y} is not over yet; it can be closed from "
                                f"{next_month(month):%d %B %Y} on.")
        return redirect("billing_msp:statements")
    closed = statements.statements_close(actor=request.user, period_start=month)
    messages.success(request, f"{month:%B %Y} closed: {len(closed)} statement(s) stored. "
                              "Closed statements never change; later usage becomes "
                              "corrections in the next open month.")
    return redirect("billing_msp:statements")
