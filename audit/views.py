from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit import selectors
from tenants import selectors as tenant_selectors
from tenants.access import platform_view
from tenants.permissions import PlatformPerm

PAGE_SIZE = 50


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@platform_view(PlatformPerm.AUDIT_VIEW)
def event_list(request: HttpRequest) -> HttpResponse:
    tenant_slug = request.GET.get("tenant", "").strip()
    tenant_id = tenant_selectors.tenant_id_for_slug(tenant_slug) if tenant_slug else None
    filters = selectors.EventFilter(
        # An unknown slug matches no event rather than silently showing all of them.
        tenant_id=tenant_id if tenant_id is not None else (-1 if tenant_slug else None),
        action=request.GET.get("action", "").strip(),
        actor=request.GET.get("actor", "").strip(),
        before_seq=_int_or_none(request.GET.get("before")),
    )
    events = selectors.event_list(filters=filters, limit=PAGE_SIZE + 1)
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "events": events[:PAGE_SIZE],
        "next_before": events[PAGE_SIZE - 1].seq if len(events) > PAGE_SIZE else None,
        "filters": filters,
        "tenant_slug": tenant_slug,
        "query": query.urlencode(),
        "head": selectors.chain_head(),
        "tenants": tenant_selectors.tenant_options(),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "audit/partials/_event_table.html", context)
    return render(request, "audit/event_list.html", context)
