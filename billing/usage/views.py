"""The usage dashboards: a tenant's (developers see their own keys) and the platform's."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from billing.usage.forms import UsageRangeForm
from billing.usage.selectors import (
    Dashboard,
    UsageScope,
    dashboard_add_labels,
    own_key_ids,
    usage_dashboard,
)
from deployments.selectors import gpu_allocation
from portal.csvexport import csv_writer
from portal.htmx import render_page_or_partial
from tenants import permissions
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm

CSV_TABLES = ("series", "models", "keys", "tenants", "deployments")
DASHBOARD_PARTIAL = "billing/usage/_dashboard.html"


def _chart_data(dashboard: Dashboard, granularity: str) -> dict[str, Any]:
    fmt = "%Y-%m-%d %H:00" if granularity == "hour" else "%Y-%m-%d"
    series = dashboard.series
    return {
        "buckets": [row["bucket"].strftime(fmt) for row in series],
        "input_tokens": [row["input_tokens"] for row in series],
        "output_tokens": [row["output_tokens"] for row in series],
        "cached_input_tokens": [row["cached_input_tokens"] for row in series],
        "requests": [row["requests"] for row in series],
        "p50": [row["latency_p50_ms"] for row in series],
        "p95": [row["latency_p95_ms"] for row in series],
        "error_rate": [round(row["error_rate"] * 100, 2) for row in series],
        "cost_by_model": [{"label": f"{row['model_slug']} ({row['currency'] or 'unpriced'})",
                           "value": float(row["cost"])} for row in dashboard.cost_by_model],
        "cost_by_key": [{"label": f"{row['label']} ({row['currency'] or 'unpriced'})",
                         "value": float(row["cost"])} for row in dashboard.by_key],
        "by_tenant": [{"label": row["tenant"], "cost": float(row["cost"]),
                       "tokens": row["input_tokens"] + row["output_tokens"]}
                      for row in dashboard.by_tenant],
        "by_deployment": [{"label": f"{row['label']} · {row['model_slug']}",
                           "requests": row["requests"]} for row in dashboard.by_deployment],
    }


def _csv(dashboard: Dashboard, table: str, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}-{table}.csv"'
    writer = csv_writer(response)
    figures = ["requests", "errors", "input_tokens", "output_tokens", "latency_p50_ms",
               "latency_p95_ms", "cached_input_tokens", "reasoning_tokens"]
    if table == "series":
        writer.writerow(["bucket", *figures])
        for row in dashboard.series:
            writer.writerow([row["bucket"].isoformat(), *(row[f] for f in figures)])
    elif table == "models":
        writer.writerow(["model", "currency", "cost", *figures])
        for row in dashboard.cost_by_model:
            writer.writerow([row["model_slug"], row["currency"], row["cost"],
                             *(row[f] for f in figures)])
    elif table == "keys":
        writer.writerow(["key_id", "key", "currency", "cost", *figures])
        for row in dashboard.by_key:
            writer.writerow([row["api_key_id"], row["label"], row["currency"], row["cost"],
                             *(row[f] for f in figures)])
    elif table == "tenants":
        writer.writerow(["tenant", "currency", "cost", *figures])
        for row in dashboard.by_tenant:
            writer.writerow([row["tenant"], row["currency"], row["cost"],
                             *(row[f] for f in figures)])
    else:
        writer.writerow(["deployment_id", "deployment", "model", *figures])
        for row in dashboard.by_deployment:
            writer.writerow([row["deployment_id"], row["label"], row["model_slug"],
                             *(row[f] for f in figures)])
    return response


def _render(request: HttpRequest, *, scope_kwargs: dict, platform: bool, template: str,
            context: dict, filename: str) -> HttpResponse:
    form = UsageRangeForm(request.GET or None)
    if request.GET and not form.is_valid():
        context.update(form=form, dashboard=None)
        return render_page_or_partial(request, template, DASHBOARD_PARTIAL, context,
                                      status=422)
    if not form.is_bound:  # the default view: the last 7 days, daily
        form = UsageRangeForm({"range": "7", "granularity": "day"})
        form.is_valid()
    data = form.cleaned_data
    scope = UsageScope(since=data["start"], until=data["end"],
                       granularity=data["granularity"], **scope_kwargs)
    dashboard = usage_dashboard(scope, platform=platform)
    dashboard_add_labels(dashboard)
    table = request.GET.get("csv")
    if table in CSV_TABLES:
        return _csv(dashboard, table, filename)
    context.update(form=form, dashboard=dashboard, range=data,
                   chart_data=_chart_data(dashboard, data["granularity"]),
                   query=request.GET.urlencode())
    return render_page_or_partial(request, template, DASHBOARD_PARTIAL, context)


@tenant_view(TenantPerm.USAGE_VIEW)
def tenant_usage(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    whole = permissions.has_tenant_perm(request.user, tenant, TenantPerm.USAGE_VIEW_ALL)
    scope = {"tenant_id": tenant.pk}
    if not whole:
        scope["api_key_ids"] = own_key_ids(user=request.user, tenant=tenant)
    return _render(request, scope_kwargs=scope, platform=False,
                   template="billing/usage/tenant.html", filename=f"usage-{tenant.slug}",
                   context={"tenant": tenant, "whole_tenant": whole,
                            "can_use_playground": permissions.has_tenant_perm(
                                request.user, tenant, TenantPerm.PLAYGROUND_USE)})


@platform_view(PlatformPerm.USAGE_VIEW)
def platform_usage(request: HttpRequest) -> HttpResponse:
    return _render(request, scope_kwargs={}, platform=True,
                   template="billing/usage/platform.html", filename="usage-platform",
                   context={"platform": True, "gpu_allocation": gpu_allocation()})
