"""Statement pages: a tenant's months (HTML, CSV, PDF) and the MSP's closing of a month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.statements import exports, selectors, services
from portal.dates import month_start, next_month, parse_month
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm


@tenant_view(TenantPerm.STATEMENTS_VIEW)
def statement_list(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/statements.html", {
        "tenant": request.tenant,
        "statements": selectors.statement_list(tenant=request.tenant)})


@tenant_view(TenantPerm.STATEMENTS_VIEW)
def statement_detail(request: HttpRequest, month: str, fmt: str = "html") -> HttpResponse:
    data = selectors.statement_get(tenant=request.tenant,
                                  period_start=selectors.statement_month(month))
    filename = f"statement-{request.tenant.slug}-{month}"
    if fmt == "csv":
        response = HttpResponse(exports.statement_csv(data), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response
    if fmt == "pdf":
        response = HttpResponse(exports.statement_pdf(data), content_type="application/pdf")
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
        "pending": selectors.statements_pending(period_start=previous),
        "closable": [previous, month_start(previous - timedelta(days=1))]})


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
    closed = services.statements_close(actor=request.user, period_start=month)
    messages.success(request, f"{month:%B %Y} closed: {len(closed)} statement(s) stored. "
                              "Closed statements never change; later usage becomes "
                              "corrections in the next open month.")
    return redirect("billing_msp:statements")
