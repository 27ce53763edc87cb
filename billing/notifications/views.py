"""Pages for in-portal notifications and webhooks (endpoints, test events, delivery log)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.budgets import selectors as budget_selectors
from billing.notifications import selectors, services
from billing.notifications.forms import WebhookForm
from billing.notifications.models import WebhookEndpoint
from portal.forms import submit
from tenants import permissions
from tenants.access import tenant_view
from tenants.permissions import TenantPerm


def _can_manage(request: HttpRequest) -> bool:
    return permissions.has_tenant_perm(request.user, request.tenant, TenantPerm.BUDGETS_MANAGE)


@tenant_view(TenantPerm.BUDGETS_VIEW)
def notification_list(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/notifications.html", {
        "tenant": request.tenant,
        "notifications": selectors.notification_list(user=request.user, tenant=request.tenant),
        "alerts": budget_selectors.alert_list(tenant=request.tenant)[:50]})


@require_POST
@tenant_view(TenantPerm.BUDGETS_VIEW)
def notifications_read(request: HttpRequest) -> HttpResponse:
    services.notifications_mark_read(user=request.user, tenant=request.tenant)
    return redirect("billing:notifications", request.tenant.slug)


def _webhook_page(request: HttpRequest, *, form: WebhookForm | None = None, status: int = 200,
                  created: tuple[WebhookEndpoint, str] | None = None) -> HttpResponse:
    """The webhooks page; `created`, the endpoint just added and its signing secret, shown
    this once."""
    tenant = request.tenant
    new_endpoint, new_secret = created or (None, None)
    return render(request, "billing/webhooks.html", {
        "tenant": tenant, "endpoints": selectors.webhook_endpoint_list(tenant=tenant),
        "deliveries": selectors.webhook_delivery_list(tenant=tenant)[:50],
        "form": form or WebhookForm(), "can_manage": _can_manage(request),
        "reveal_urls": permissions.can_see_webhook_urls(request.user, tenant),
        "new_endpoint": new_endpoint, "new_secret": new_secret}, status=status)


# The page; its forms post to the views below, which show it again with their outcome.
webhook_list = tenant_view(TenantPerm.BUDGETS_VIEW)(_webhook_page)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def webhook_create(request: HttpRequest) -> HttpResponse:
    """Add an endpoint: the page again, showing its signing secret this once (or the form's
    errors, 422)."""
    form = WebhookForm(request.POST)
    created = submit(form, lambda: services.webhook_endpoint_create(
        actor=request.user, tenant=request.tenant, **form.cleaned_data))
    if created is None:
        return _webhook_page(request, form=form, status=422)
    return _webhook_page(request, created=created)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def webhook_ping(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = selectors.webhook_endpoint_get(tenant=request.tenant, pk=pk)
    services.webhook_endpoint_ping(actor=request.user, endpoint=endpoint)
    messages.success(request, f"Test event queued for “{endpoint.name}”: its result appears "
                              "in the delivery log within seconds.")
    return redirect("billing:webhooks", request.tenant.slug)


@require_POST
@tenant_view(TenantPerm.BUDGETS_MANAGE)
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete an endpoint with its delivery log (the audit trail keeps the deletion) and go
    back to the webhooks page."""
    endpoint = selectors.webhook_endpoint_get(tenant=request.tenant, pk=pk)
    services.webhook_endpoint_delete(actor=request.user, endpoint=endpoint)
    messages.success(request, f"Webhook “{endpoint.name}” deleted.")
    return redirect("billing:webhooks", request.tenant.slug)
