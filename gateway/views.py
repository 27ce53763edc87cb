from __future__ import annotations

from datetime import timedelta
from functools import partial

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from gateway import selectors, services
from gateway.forms import ApiKeyForm, BulkRevokeForm, RotateForm
from portal.api import ApplicationError
from portal.forms import submit
from portal.htmx import page_after_service, render_page_or_partial
from tenants import permissions
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm


def _page(request: HttpRequest, *, form: ApiKeyForm | None = None, status: int = 200,
          **extra) -> HttpResponse:
    tenant = request.tenant
    keys = list(selectors.apikey_list(tenant=tenant))
    for key in keys:
        key.can_manage = permissions.can_manage_key(request.user, key)
    context = {
        "tenant": tenant,
        "keys": keys,
        "form": form or ApiKeyForm(tenant=tenant),
        "rotate_form": RotateForm(),
        "can_create": permissions.has_tenant_perm(request.user, tenant, TenantPerm.KEYS_CREATE),
        "can_manage_all": permissions.has_tenant_perm(request.user, tenant,
                                                      TenantPerm.KEYS_MANAGE_ALL),
        "active_count": sum(1 for k in keys if k.status == "active"),
        **extra,
    }
    return render_page_or_partial(request, "gateway/keys.html", "gateway/partials/_keys.html",
                                  context, status=status)


# The page; its forms post to the views below, which show it again with their outcome.
key_list = tenant_view(TenantPerm.KEYS_VIEW)(_page)


@require_POST
@tenant_view(TenantPerm.KEYS_CREATE)
def key_create(request: HttpRequest) -> HttpResponse:
    """Create a key owned by the caller: the page again, showing the token this once (or the
    form's errors, 422)."""
    form = ApiKeyForm(request.POST, tenant=request.tenant)
    created = submit(form, lambda: services.apikey_create(
        actor=request.user, tenant=request.tenant, owner=request.user, **form.service_values()))
    if created is None:
        return _page(request, form=form, status=422)
    key, token = created
    return _page(request, new_token=token, new_key=key)


def _managed_key(request: HttpRequest, pk: int):
    key = selectors.apikey_get(tenant=request.tenant, pk=pk)
    if not permissions.can_manage_key(request.user, key):
        raise PermissionDenied("Only the key's owner or a tenant admin may change it.")
    return key


@require_POST
@tenant_view(TenantPerm.KEYS_CREATE)
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = _managed_key(request, pk)
    return page_after_service(
        partial(_page, request), lambda: services.apikey_revoke(actor=request.user, key=key),
        f"Key “{key.name}” revoked. Requests with it now fail.")


@require_POST
@tenant_view(TenantPerm.KEYS_CREATE)
def key_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    key = _managed_key(request, pk)
    form = RotateForm(request.POST)
    if not form.is_valid():
        return _page(request, error="Choose how long the old secret keeps working.", status=422)
    try:
        key, token = services.apikey_rotate(
            actor=request.user, key=key, grace=timedelta(hours=form.cleaned_data["grace_hours"]))
    except ApplicationError as exc:
        return _page(request, error=exc.message, status=422)
    return _page(request, new_token=token, new_key=key, rotated=True)


@tenant_view(TenantPerm.KEYS_VIEW)
def key_quota(request: HttpRequest, pk: int) -> HttpResponse:
    """What the key has left: the figures `GET /v1/quota` answers for it."""
    key = selectors.apikey_get(tenant=request.tenant, pk=pk)
    context = {"tenant": request.tenant, "key": key,
               "quota": selectors.apikey_quota(key=key)}
    return render_page_or_partial(request, "gateway/key_quota.html",
                                  "gateway/partials/_quota.html", context)


@tenant_view(TenantPerm.PLAYGROUND_USE)
def playground_quota(request: HttpRequest) -> HttpResponse:
    """The playground's figures (a partial the page loads, and reloads after each message):
    those of the person's current playground key. Reading them creates no key."""
    key = selectors.playground_key(user=request.user, tenant=request.tenant)
    return render(request, "gateway/partials/_quota.html", {
        "tenant": request.tenant, "key": key,
        "quota": selectors.apikey_quota(key=key) if key else None,
        "refresh_url": request.path})


@tenant_view(TenantPerm.PLAYGROUND_USE)
def playground(request: HttpRequest) -> HttpResponse:
    """The chat page. It holds no secret and changes nothing: the page's script asks for its
    token (`playground_token`, a POST) when the first message is sent."""
    from deployments.selectors import served_models_for_tenant

    models = list(served_models_for_tenant(tenant=request.tenant, task="chat"))
    return render(request, "gateway/playground.html", {"tenant": request.tenant,
                                                       "models": models})


@require_POST
@tenant_view(TenantPerm.PLAYGROUND_USE)
def playground_token(request: HttpRequest) -> JsonResponse:
    try:
        token = services.playground_token(user=request.user, tenant=request.tenant)
    except ApplicationError as exc:
        return JsonResponse({"detail": exc.message}, status=409)
    return JsonResponse({"token": token})


def _bulk_revoke(request: HttpRequest, *, tenant, back_url: str) -> HttpResponse:
    """Choose the keys, see them (a dry run), then revoke exactly those."""
    form = BulkRevokeForm(request.POST or None, tenant=tenant,
                          initial={"model": request.GET.get("model")})
    context = {"tenant": tenant, "form": form, "back_url": back_url}
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            confirm = request.POST.get("action") == "revoke"
            try:
                keys, event = services.apikeys_bulk_revoke(
                    actor=request.user, tenant=tenant, owner=data.get("owner"),
                    model=data["model"], key_ids=data["key_ids"] if confirm else None,
                    dry_run=not confirm)
            except ApplicationError as exc:
                context["error"], status = exc.message, 422
            else:
                context.update(keys=keys, revoked=confirm, event=event,
                               key_ids=",".join(str(key.pk) for key in keys))
        else:
            status = 422
    return render_page_or_partial(request, "gateway/bulk_revoke.html",
                                  "gateway/partials/_bulk_revoke.html", context, status=status)


@tenant_view(TenantPerm.KEYS_MANAGE_ALL)
def key_bulk_revoke(request: HttpRequest) -> HttpResponse:
    return _bulk_revoke(request, tenant=request.tenant,
                        back_url=reverse("gateway:keys", args=[request.tenant.slug]))


@platform_view(PlatformPerm.MODELS_MANAGE)
def model_keys_bulk_revoke(request: HttpRequest) -> HttpResponse:
    return _bulk_revoke(request, tenant=None, back_url=reverse("models_catalog:catalog"))
