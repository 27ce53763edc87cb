"""The audit explorer (platform-wide and tenant-scoped), exports, checkpoints, public key."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit import selectors, services
from audit.chain import canonical_time
from audit.filters import EventFilter, EventFilterForm
from audit.forms import ReportRequestForm
from audit.models import ReportStatus
from audit.reports import generate
from portal import signing
from portal.api import ApplicationError
from portal.csvexport import csv_writer
from portal.htmx import render_page_or_partial
from portal.streaming import file_download, streaming_download
from tenants import selectors as tenant_selectors
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm

PAGE_SIZE = 50
EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _filters(request: HttpRequest, *, scope_tenant) -> tuple[EventFilterForm, EventFilter | None]:
    """The request's filters; None when they are invalid (the form then carries the errors).

    On a tenant's pages the tenant comes from the URL, never from the query."""
    form = EventFilterForm(request.GET)
    if not form.is_valid():
        return form, None
    if scope_tenant is not None:
        return form, form.event_filter(tenant_id=scope_tenant.pk)
    slug = form.cleaned_data.get("tenant")
    tenant_id = tenant_selectors.tenant_id_for_slug(slug) if slug else None
    if slug and tenant_id is None:
        form.add_error("tenant", f"No tenant has the slug {slug!r}.")
        return form, None
    return form, form.event_filter(tenant_id=tenant_id)


def _explorer(request: HttpRequest, *, scope_tenant=None) -> HttpResponse:
    form, filters = _filters(request, scope_tenant=scope_tenant)
    page = None
    if filters is not None:
        page = selectors.event_page(filters=filters, before=form.cleaned_data.get("before"),
                                    after=form.cleaned_data.get("after"), limit=PAGE_SIZE)
    query = request.GET.copy()
    for cursor in ("before", "after"):
        query.pop(cursor, None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "scope_tenant": scope_tenant,
        "head": selectors.chain_head() if scope_tenant is None else None,
        "tenants": tenant_selectors.tenant_options() if scope_tenant is None else [],
    }
    return render_page_or_partial(request, "audit/event_list.html",
                                  "audit/partials/_event_table.html", context)


def _stored_record(event) -> dict:
    """The event's stored columns, as an export row has them (canonical time)."""
    record = {name: getattr(event, name) for name in selectors.EXPORT_FIELDS}
    record["created_at"] = canonical_time(event.created_at)
    return record


def _detail(request: HttpRequest, seq: int, *, scope_tenant=None) -> HttpResponse:
    tenant_id = scope_tenant.pk if scope_tenant is not None else None
    event = selectors.event_get(seq=seq, tenant_id=tenant_id)
    previous, following = selectors.event_neighbours(event=event, tenant_id=tenant_id)
    return render(request, "audit/event_detail.html", {
        "event": event,
        "details_json": json.dumps(event.details, indent=2, ensure_ascii=False, sort_keys=True),
        "record_json": json.dumps(_stored_record(event), indent=2, ensure_ascii=False,
                                  sort_keys=True),
        "previous_seq": previous,
        "next_seq": following,
        "head": selectors.chain_head(),
        "checkpoint": selectors.checkpoint_covering(event.seq),
        "scope_tenant": scope_tenant,
    })


def _csv_lines(rows) -> Iterator[str]:
    writer = csv_writer()
    yield writer.writerow(selectors.EXPORT_FIELDS)
    for row in rows:
        row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        yield writer.writerow([row[name] for name in selectors.EXPORT_FIELDS])


def _jsonl_lines(rows) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def _export(request: HttpRequest, fmt: str, *, scope_tenant=None) -> HttpResponse:
    if fmt not in EXPORT_FORMATS:
        raise Http404("Exports come as csv or jsonl.")
    form, filters = _filters(request, scope_tenant=scope_tenant)
    if filters is None:
        errors = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in form.errors.items())
        return HttpResponse(f"The filters are invalid — {errors}", status=400,
                            content_type="text/plain; charset=utf-8")
    rows = selectors.event_export_rows(filters)
    lines = _csv_lines(rows) if fmt == "csv" else _jsonl_lines(rows)
    scope = scope_tenant.slug if scope_tenant is not None else "platform"
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return streaming_download(request, lines, content_type=EXPORT_FORMATS[fmt],
                              filename=f"audit-{scope}-{stamp}.{fmt}")


@platform_view(PlatformPerm.AUDIT_VIEW)
def event_list(request: HttpRequest) -> HttpResponse:
    return _explorer(request)


@platform_view(PlatformPerm.AUDIT_VIEW)
def event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    return _detail(request, seq)


@platform_view(PlatformPerm.AUDIT_VIEW)
def event_export(request: HttpRequest, fmt: str) -> HttpResponse:
    return _export(request, fmt)


@tenant_view(TenantPerm.AUDIT_VIEW)
def tenant_event_list(request: HttpRequest) -> HttpResponse:
    return _explorer(request, scope_tenant=request.tenant)


@tenant_view(TenantPerm.AUDIT_VIEW)
def tenant_event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    return _detail(request, seq, scope_tenant=request.tenant)


@tenant_view(TenantPerm.AUDIT_VIEW)
def tenant_event_export(request: HttpRequest, fmt: str) -> HttpResponse:
    return _export(request, fmt, scope_tenant=request.tenant)


@platform_view(PlatformPerm.AUDIT_VIEW)
def checkpoint_list(request: HttpRequest) -> HttpResponse:
    return render(request, "audit/checkpoint_list.html", {
        "checkpoints": selectors.checkpoint_list(),
        "head": selectors.chain_head(),
        "key_id": signing.platform_key_id(),
        "tsa_url": settings.TSA_URL,
    })


@require_POST
@platform_view(PlatformPerm.AUDIT_CHECKPOINT)
def checkpoint_create(request: HttpRequest) -> HttpResponse:
    checkpoint = services.checkpoint_create(actor=request.user)
    if checkpoint is None:
        messages.info(request, "The chain's head is already covered by a checkpoint.")
    else:
        messages.success(request, f"Checkpoint signed at #{checkpoint.last_seq}.")
    return redirect("compliance:checkpoints")


def public_key(request: HttpRequest) -> HttpResponse:
    """The platform's public key, for anyone verifying a bundle or checkpoint offline."""
    pem = signing.public_key_pem(signing.platform_public_key())
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = (
        f'attachment; filename="platform-{signing.platform_key_id()}.pem"')
    return response


# --- Compliance reports -----------------------------------------------------------------


def _reports_context(form: ReportRequestForm) -> dict:
    reports = selectors.report_list()
    return {
        "form": form,
        "reports": reports,
        "in_progress": any(r.status in (ReportStatus.PENDING, ReportStatus.RUNNING)
                           for r in reports),
        "tenants": tenant_selectors.tenant_options(),
        "key_id": signing.platform_key_id(),
    }


@platform_view(PlatformPerm.REPORTS_VIEW)
def report_list(request: HttpRequest) -> HttpResponse:
    context = _reports_context(ReportRequestForm())
    return render_page_or_partial(request, "audit/report_list.html",
                                  "audit/partials/_report_table.html", context)


@require_POST
@platform_view(PlatformPerm.REPORTS_GENERATE)
def report_create(request: HttpRequest) -> HttpResponse:
    form = ReportRequestForm(request.POST)
    if form.is_valid():
        report = services.report_request(actor=request.user,
                                         period=form.cleaned_data["period"],
                                         tenant=form.cleaned_data["tenant"])
        messages.success(request, f"Report {report.period_label} ({report.scope_label}) is being "
                                  "generated; this page updates when it is ready.")
        return redirect("compliance:reports")
    return render(request, "audit/report_list.html", _reports_context(form), status=400)


@require_POST
@platform_view(PlatformPerm.REPORTS_GENERATE)
def report_retry(request: HttpRequest, pk: int) -> HttpResponse:
    report = selectors.report_get(pk=pk)
    try:
        services.report_retry(actor=request.user, report=report)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Report {report.period_label} is being generated again.")
    return redirect("compliance:reports")


@platform_view(PlatformPerm.REPORTS_VIEW)
def report_download(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    report = selectors.report_get(pk=pk)
    name = {"pdf": report.pdf_name, "bundle": report.bundle_name}.get(kind)
    path = generate.reports_dir() / name if name else None
    # Only a finished report's files are offered; a half-written one has no name yet.
    if not report.is_ready or path is None or not path.is_file():
        raise Http404("This report has no such file (yet).")
    content_type = "application/pdf" if kind == "pdf" else "application/zip"
    return file_download(request, path, content_type=content_type, filename=name)
