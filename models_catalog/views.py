"""Catalog pages: browse for tenants (entitled models only), the MSP admin's catalog, the
upload wizard (metadata → image → scan → findings → approval) and model settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from models_catalog import oms, selectors, services
from models_catalog.forms import (
    AnnexXIIForm,
    CatalogFilterForm,
    EntitlementsForm,
    LineageForm,
    ModelCardForm,
    ModelLifecycleForm,
    PriceForm,
    ProvenanceQueryForm,
    ReferenceForm,
    RejectForm,
    SubmitForm,
    UploadMetadataForm,
    VersionLifecycleForm,
)
from models_catalog.models import Model, ModelVersion, VersionStatus
from models_catalog.provenance import provenance_query
from models_catalog.registry import referrers_tag, registry_configured
from portal.api import ApplicationError
from portal.forms import add_service_errors
from portal.htmx import render_page_or_partial
from tenants import permissions
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm

# --- Browsing ------------------------------------------------------------------------------

def _catalog(request: HttpRequest, *, tenant, list_url: str, detail_name: str) -> HttpResponse:
    form = CatalogFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    models = selectors.model_list_for_user(user=request.user, tenant=tenant,
                                           q=filters.get("q", ""), task=filters.get("task", ""),
                                           lifecycle=filters.get("lifecycle", ""))
    context = {"tenant": tenant, "models": models, "form": form, "list_url": list_url,
               "detail_name": detail_name, "filtered": any(filters.values()),
               "can_manage": permissions.has_platform_perm(request.user,
                                                           PlatformPerm.MODELS_MANAGE)}
    if tenant is None:
        context["awaiting"] = selectors.versions_awaiting_approval()
        context["in_progress"] = selectors.versions_in_progress()
    return render_page_or_partial(request, "models_catalog/catalog.html",
                                  "models_catalog/partials/_model_table.html", context)


@tenant_view(TenantPerm.TENANT_VIEW)
def tenant_catalog(request: HttpRequest) -> HttpResponse:
    return _catalog(request, tenant=request.tenant,
                    list_url=reverse("models_catalog:tenant_catalog", args=[request.tenant.slug]),
                    detail_name="models_catalog:tenant_model")


@tenant_view(TenantPerm.TENANT_VIEW)
def tenant_model(request: HttpRequest, model_slug: str) -> HttpResponse:
    model = selectors.model_get_for_tenant(tenant=request.tenant, slug=model_slug)
    return render(request, "models_catalog/model_detail.html", {
        "tenant": request.tenant, "model": model,
        "versions": selectors.with_signature_states(selectors.version_list_public(model=model)),
        "prices": selectors.price_list(model=model)[:1],
        "annex": selectors.annex_xii_get(model=model)})


@tenant_view(TenantPerm.TENANT_VIEW)
def tenant_sbom(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
    model = selectors.model_get_for_tenant(tenant=request.tenant, slug=model_slug)
    return _sbom_response(selectors.version_get_public(model=model, version=version))


@tenant_view(TenantPerm.TENANT_VIEW)
def tenant_model_signature(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
    model = selectors.model_get_for_tenant(tenant=request.tenant, slug=model_slug)
    return _model_signature_response(selectors.version_get_public(model=model, version=version))


def _model_signature_response(version: ModelVersion) -> HttpResponse:
    """The version's OMS signature, for `model_signing verify key` with the public key."""
    if not version.model_signature:
        raise Http404("This version has no OpenSSF model signature.")
    response = HttpResponse(version.model_signature, content_type=oms.BUNDLE_MEDIA_TYPE)
    response["Content-Disposition"] = (f'attachment; filename="{version.model.slug}-'
                                       f'{version.version}.sigstore.json"')
    return response


def _sbom_response(version: ModelVersion) -> HttpResponse:
    if not version.sbom:
        raise Http404("This version has no SBOM yet.")
    response = HttpResponse(version.sbom, content_type="application/vnd.cyclonedx+json")
    response["Content-Disposition"] = (f'attachment; filename="{version.model.slug}-'
                                       f'{version.version}.cdx.json"')
    return response


@platform_view(PlatformPerm.MODELS_VIEW)
def catalog(request: HttpRequest) -> HttpResponse:
    return _catalog(request, tenant=None, list_url=reverse("models_catalog:catalog"),
                    detail_name="models_catalog:model")


def _model_page(request: HttpRequest, model, *, status: int = 200, **forms) -> HttpResponse:
    versions = selectors.with_signature_states(
        selectors.version_list_for_user(user=request.user, model=model))
    prices = list(selectors.price_list(model=model))
    entitled = list(model.entitled_tenants.all())
    context = {
        "model": model, "versions": versions, "prices": prices,
        "can_manage": permissions.has_platform_perm(request.user, PlatformPerm.MODELS_MANAGE),
        "entitlements_form": forms.get("entitlements_form") or EntitlementsForm(initial={
            "all_tenants": model.available_to_all_tenants,
            "tenants": [t.slug for t in entitled]}),
        "price_form": forms.get("price_form") or PriceForm(initial={
            "currency": prices[0].currency if prices else "EUR"}),
        "lifecycle_form": ModelLifecycleForm(initial={
            "lifecycle": model.lifecycle, "sunset_at": model.sunset_at,
            "successor": model.successor.slug if model.successor_id else None}),
        "card_form": forms.get("card_form") or ModelCardForm(instance=model),
        "annex": selectors.annex_xii_get(model=model),
        "annex_form": forms.get("annex_form") or AnnexXIIForm(
            instance=selectors.annex_xii_get(model=model), model=model),
        "entitled": entitled, "open_section": forms.get("open_section", ""),
    }
    return render(request, "models_catalog/model_detail.html", context, status=status)


@platform_view(PlatformPerm.MODELS_VIEW)
def model_detail(request: HttpRequest, model_slug: str) -> HttpResponse:
    model = selectors.model_get_for_user(user=request.user, tenant=None, slug=model_slug)
    return _model_page(request, model)


# --- Model settings (MSP) ------------------------------------------------------------------

def _managed_model(request: HttpRequest, model_slug: str):
    return selectors.model_get_for_user(user=request.user, tenant=None, slug=model_slug)


def _run_form(request: HttpRequest, form, action, success: str) -> bool:
    """Run `action(cleaned_data)` for a valid form and say `success`; a refusal goes onto the
    form, on the fields it names. True when it succeeded."""
    if not form.is_valid():
        return False
    try:
        action(form.cleaned_data)
    except ApplicationError as exc:
        add_service_errors(form, exc)
        return False
    messages.success(request, success)
    return True


# Which form of the model page each section shows.
SECTION_FORMS = {"entitlements": "entitlements_form", "prices": "price_form",
                 "card": "card_form", "annex_xii": "annex_form"}


def _model_step(step: Callable[[HttpRequest, Model], HttpResponse]):
    """A form of the model page, for MSP admins who manage models: a POST that runs
    `step(request, model)` on the URL's model."""

    @require_POST
    @platform_view(PlatformPerm.MODELS_MANAGE)
    @wraps(step)
    def view(request: HttpRequest, model_slug: str) -> HttpResponse:
        return step(request, _managed_model(request, model_slug))
    return view


def _model_form(form_for: Callable[[HttpRequest, Model], forms.Form], service, *, section: str,
                success: str):
    """The view of a settings form of the model page whose fields are the service's arguments
    (`form_for(request, model)` binds it): done, `success` and back to the page; invalid or
    refused, the page again (422) with the form's section open and the errors on its fields."""

    def step(request: HttpRequest, model: Model) -> HttpResponse:
        form = form_for(request, model)
        if _run_form(request, form, lambda data: service(actor=request.user, model=model,
                                                         **data), success):
            return redirect("models_catalog:model", model.slug)
        return _model_page(request, model, status=422, open_section=section,
                           **{SECTION_FORMS[section]: form})
    step.__name__ = step.__qualname__ = service.__name__
    return _model_step(step)


model_entitlements = _model_form(
    lambda request, model: EntitlementsForm(request.POST), services.model_set_entitlements,
    section="entitlements", success="Entitlements saved; the gateway applies them at once.")
model_price = _model_form(lambda request, model: PriceForm(request.POST), services.price_set,
                          section="prices", success="Price saved.")
# The card's form gets a copy of the model: a refused edit must not show on the page's header.
model_card = _model_form(
    lambda request, model: ModelCardForm(request.POST,
                                         instance=_managed_model(request, model.slug)),
    services.model_update_card, section="card", success="Model card saved.")
model_annex_xii = _model_form(
    lambda request, model: AnnexXIIForm(
        request.POST, instance=selectors.annex_xii_get(model=model), model=model),
    services.model_update_annex_xii, section="annex_xii",
    success="Annex XII information saved; the next SBOM of each version carries it.")


@_model_step
def model_lifecycle(request: HttpRequest, model: Model) -> HttpResponse:
    form = ModelLifecycleForm(request.POST)
    if form.is_valid():
        try:
            services.model_set_lifecycle(actor=request.user, model=model,
                                         lifecycle=form.cleaned_data["lifecycle"],
                                         **form.service_values())
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request,
                             f"{model.name} is now {model.get_lifecycle_display().lower()}.")
    else:
        messages.error(request, "Choose active, deprecated or retired, and a valid sunset "
                                "date and successor.")
    return redirect("models_catalog:model", model.slug)


# --- Upload wizard -------------------------------------------------------------------------

@require_http_methods(["GET", "POST"])
@platform_view(PlatformPerm.MODELS_MANAGE)
def upload_start(request: HttpRequest) -> HttpResponse:
    """Step 1: metadata."""
    initial = {}
    if request.GET.get("model"):
        initial["existing_model"] = selectors.model_find_for_user(user=request.user,
                                                                  slug=request.GET["model"])
    form = UploadMetadataForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                model = form.cleaned_data["existing_model"]
                if model is None:
                    model = services.model_create(actor=request.user, **form.model_values())
                version = services.version_create(actor=request.user, model=model,
                                                  **form.version_values())
        except ApplicationError as exc:
            add_service_errors(form, exc)
        else:
            return redirect("models_catalog:version", model.slug, version.version)
    return render(request, "models_catalog/upload_start.html", {
        "form": form, "registry_configured": registry_configured()},
        status=422 if form.is_bound else 200)


def _version(request: HttpRequest, model_slug: str, version: str) -> ModelVersion:
    model = selectors.model_get_for_user(user=request.user, tenant=None, slug=model_slug)
    return selectors.version_get_for_user(user=request.user, model=model, version=version)


def _version_context(request: HttpRequest, version: ModelVersion, **extra) -> dict:
    upload = getattr(version, "upload", None)
    report = version.scan_report or {}
    version.signature_state = selectors.signature_state(version)
    return {
        "model": version.model, "version": version, "upload": upload,
        "report": report, "findings": report.get("findings") or [],
        "files": list(version.files.all()),  # prefetched by the selector
        "can_manage": permissions.has_platform_perm(request.user, PlatformPerm.MODELS_MANAGE),
        "is_uploader": request.user.pk in (version.uploaded_by_id, version.submitted_by_id),
        "registry_configured": registry_configured(),
        "show_progress": not version.work_error and (
            version.status in (VersionStatus.QUARANTINED, VersionStatus.SCANNING)
            or (upload is not None and upload.status == "received")),
        "can_reject": version.status in (VersionStatus.UPLOADING, VersionStatus.QUARANTINED,
                                         VersionStatus.AWAITING_APPROVAL)
        and permissions.has_platform_perm(request.user, PlatformPerm.MODELS_MANAGE),
        "reference_form": extra.pop("reference_form", None) or ReferenceForm(initial={
            "repository": version.landing_repository, "reference": version.version}),
        "submit_form": extra.pop("submit_form", None) or SubmitForm(),
        "reject_form": extra.pop("reject_form", None) or RejectForm(),
        "lifecycle_form": VersionLifecycleForm(initial={
            "status": version.status, "sunset_at": version.sunset_at,
            "successor": version.successor.slug if version.successor_id else None}),
        "lineage_form": extra.pop("lineage_form", None) or LineageForm.for_version(version),
        "datasets": list(version.datasets.all()),
        "derived_versions": list(selectors.versions_derived_from(version=version)),
        "referrers_tag": referrers_tag(version.manifest_digest) if version.manifest_digest else "",
        "chunk_bytes": settings.MODEL_UPLOAD_CHUNK_BYTES,
        "max_bytes": settings.MODEL_UPLOAD_MAX_BYTES,
        "wizard_step": _wizard_step(version),
        **extra,
    }


def _wizard_step(version: ModelVersion) -> int:
    if version.status == VersionStatus.UPLOADING:
        return 2
    if version.status in (VersionStatus.QUARANTINED, VersionStatus.SCANNING):
        return 3
    if version.status == VersionStatus.AWAITING_APPROVAL:
        return 5 if version.submitted_at else 4
    return 6


@platform_view(PlatformPerm.MODELS_VIEW)
def version_detail(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
    mv = _version(request, model_slug, version)
    return render(request, "models_catalog/version_detail.html", _version_context(request, mv))


@platform_view(PlatformPerm.MODELS_VIEW)
def version_progress(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
    """The live progress panel, polled by HTMX while the version is being worked on. When
    the work is over it asks the browser to reload the page (HX-Refresh)."""
    mv = _version(request, model_slug, version)
    context = _version_context(request, mv)
    response = render(request, "models_catalog/partials/_progress.html", context)
    if request.GET.get("status", mv.status) != mv.status or not context["show_progress"]:
        response["HX-Refresh"] = "true"  # the step is over: show the next one
    return response


def _version_step(step: Callable[[HttpRequest, ModelVersion], HttpResponse]):
    """A form or button of the version page, for MSP admins who manage models: a POST that
    runs `step(request, version)` on the URL's version."""

    @require_POST
    @platform_view(PlatformPerm.MODELS_MANAGE)
    @wraps(step)
    def view(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
        return step(request, _version(request, model_slug, version))
    return view


def _back_to_version(mv: ModelVersion) -> HttpResponse:
    return redirect("models_catalog:version", mv.model.slug, mv.version)


def _version_form(form_class, service, *, key: str, success: str, for_version: bool = False):
    """The view of a form of the version page whose fields are the service's arguments: done,
    `success` and back to the page; invalid or refused, the page again (422) with the errors on
    the form's fields (the form is `key` in the page's context)."""

    def step(request: HttpRequest, mv: ModelVersion) -> HttpResponse:
        form = form_class(request.POST, **({"version": mv} if for_version else {}))
        if _run_form(request, form, lambda data: service(actor=request.user, version=mv,
                                                         **data), success):
            return _back_to_version(mv)
        return render(request, "models_catalog/version_detail.html",
                      _version_context(request, mv, **{key: form}), status=422)
    step.__name__ = step.__qualname__ = service.__name__
    return _version_step(step)


def _version_button(service, success: str):
    """The view of a button of the version page: the service, then `success` (or its refusal)
    as a message, and back to the page."""

    def step(request: HttpRequest, mv: ModelVersion) -> HttpResponse:
        return _version_action(request, mv, lambda: service(actor=request.user, version=mv),
                               success)
    step.__name__ = step.__qualname__ = service.__name__
    return _version_step(step)


def _version_action(request: HttpRequest, mv: ModelVersion, action,
                    success: str) -> HttpResponse:
    try:
        action()
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return _back_to_version(mv)


version_reference = _version_form(
    ReferenceForm, services.version_register_reference, key="reference_form",
    success="Image found and pinned by digest; the scan starts now.")
version_lineage = _version_form(LineageForm, services.version_set_lineage, key="lineage_form",
                                success="Lineage saved.", for_version=True)
version_submit = _version_form(SubmitForm, services.version_submit, key="submit_form",
                               success="Submitted. Another MSP admin must now approve it.")
version_approve = _version_button(
    services.version_approve,
    "Approved: signed, copied by digest to the trusted repository and published.")
version_retry = _version_button(services.version_retry, "Retrying.")


@_version_step
def version_reject(request: HttpRequest, mv: ModelVersion) -> HttpResponse:
    form = RejectForm(request.POST)
    if not form.is_valid():
        return render(request, "models_catalog/version_detail.html",
                      _version_context(request, mv, reject_form=form), status=422)
    return _version_action(
        request, mv, lambda: services.version_reject(actor=request.user, version=mv,
                                                     reason=form.cleaned_data["reason"]),
        "Rejected. It can never be deployed.")


@_version_step
def version_lifecycle(request: HttpRequest, mv: ModelVersion) -> HttpResponse:
    form = VersionLifecycleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose published, deprecated or retired, and a valid sunset "
                                "date and successor.")
        return _back_to_version(mv)
    return _version_action(
        request, mv, lambda: services.version_set_lifecycle(
            actor=request.user, version=mv, status=form.cleaned_data["status"],
            **form.service_values()),
        "Lifecycle changed.")


@_version_step
def version_verify(request: HttpRequest, mv: ModelVersion) -> HttpResponse:
    """"Verify now": check the signature, the database and the registry again."""
    try:
        check = services.version_signature_verify(actor=request.user, version=mv)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        (messages.success if check.ok else messages.error)(
            request, f"{'Verified' if check.ok else 'Does not verify'}: {check.reason}.")
    return _back_to_version(mv)


@platform_view(PlatformPerm.MODELS_VIEW)
def version_sbom(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
    return _sbom_response(_version(request, model_slug, version))


@platform_view(PlatformPerm.MODELS_VIEW)
def version_model_signature(request: HttpRequest, model_slug: str, version: str
                            ) -> HttpResponse:
    return _model_signature_response(_version(request, model_slug, version))


def model_signing_key(request: HttpRequest) -> HttpResponse:
    """The public half of the model-signing key, for anyone verifying an OMS signature (like
    the platform key at /audit/public-key.pem)."""
    response = HttpResponse(oms.platform_public_key_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="model-signing-key.pub.pem"'
    return response


@platform_view(PlatformPerm.MODELS_VIEW)
def version_scan_report(request: HttpRequest, model_slug: str, version: str) -> HttpResponse:
    mv = _version(request, model_slug, version)
    if mv.scan_report is None:
        raise Http404("This version has not been scanned yet.")
    response = JsonResponse(mv.scan_report, json_dumps_params={"indent": 1})
    response["Content-Disposition"] = (f'attachment; filename="{mv.model.slug}-{mv.version}'
                                       '-scan.json"')
    return response


# --- Provenance (MSP admins, compliance officers) ------------------------------------------

@platform_view(PlatformPerm.MODELS_VIEW)
def provenance(request: HttpRequest) -> HttpResponse:
    """Which versions, deployments and tenants derive from a dataset, an external base model
    or a catalog version."""
    form = ProvenanceQueryForm(request.GET or None)
    answer = None
    if form.is_bound and form.is_valid():
        try:
            answer = provenance_query(**form.cleaned_data)
        except ApplicationError as exc:
            add_service_errors(form, exc)
    return render(request, "models_catalog/provenance.html", {"form": form, "answer": answer},
                  status=422 if form.is_bound and form.errors else 200)


@require_POST
@platform_view(PlatformPerm.MODELS_VIEW)
def provenance_export(request: HttpRequest) -> HttpResponse:
    """The answer, signed with the platform key (a DSSE envelope); audited."""
    form = ProvenanceQueryForm(request.POST)
    if form.is_valid():
        try:
            data = services.provenance_export(actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            add_service_errors(form, exc)
        else:
            response = HttpResponse(data, content_type="application/json")
            response["Content-Disposition"] = 'attachment; filename="provenance.dsse.json"'
            return response
    return render(request, "models_catalog/provenance.html", {"form": form, "answer": None},
                  status=422)
