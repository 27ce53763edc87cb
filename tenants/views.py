from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps

import requests
from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.socialaccount.providers.openid_connect import views as oidc_views
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

import audit
from portal.api import ApplicationError
from portal.forms import add_service_errors, submit, submit_edit
from portal.htmx import page_after_service, render_page_or_partial, wants_partial
from tenants import identity, permissions, selectors, services
from tenants.access import current_tenant, platform_view, tenant_view
from tenants.adapters import INVITATION_SESSION_KEY
from tenants.forms import InviteForm, RoleForm, SuspendForm, TenantForm
from tenants.models import TenantRole, TenantStatus
from tenants.permissions import PlatformPerm, TenantPerm
from tenants.social import OIDC_SESSION_KEY


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to where their work starts."""
    user = request.user
    if permissions.is_msp_admin(user):
        return redirect("tenants:list")
    tenant = current_tenant(request, selectors.tenants_for_switcher(user=user))
    if tenant is not None:
        return redirect("tenants:overview", tenant_slug=tenant.slug)
    if permissions.has_platform_perm(user, PlatformPerm.AUDIT_VIEW):
        return redirect("audit:list")
    return render(request, "tenants/no_access.html")


# --- MSP admin: tenants ----------------------------------------------------------------


@platform_view(PlatformPerm.TENANTS_MANAGE)
def tenant_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    context = {
        "tenants": selectors.tenant_list(user=request.user, search=search, status=status),
        "search": search,
        "status": status,
        "statuses": TenantStatus.choices,
    }
    return render_page_or_partial(request, "tenants/tenant_list.html",
                                  "tenants/partials/_tenant_table.html", context)


@platform_view(PlatformPerm.TENANTS_MANAGE)
def tenant_create(request: HttpRequest) -> HttpResponse:
    form = TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = services.tenant_create(actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Tenant {tenant.name} created. Invite its first admin.")
            return redirect("tenants:detail", tenant_slug=tenant.slug)
    return render(request, "tenants/tenant_form.html", {"form": form})


@platform_view(PlatformPerm.TENANTS_MANAGE)
def tenant_detail(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = selectors.tenant_get(user=request.user, slug=tenant_slug)
    return render(request, "tenants/tenant_detail.html", {
        "tenant": tenant,
        "suspend_form": SuspendForm(),
        **_members_context(request, tenant),
    })


def _changed_values(form: TenantForm) -> dict:
    """The fields the form changed, but the slug, which never changes."""
    return {name: form.cleaned_data[name] for name in form.changed_data if name != "slug"}


@platform_view(PlatformPerm.TENANTS_MANAGE)
def tenant_edit(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = selectors.tenant_get(user=request.user, slug=tenant_slug)
    form = TenantForm(request.POST or None, instance=tenant)
    if request.method == "POST" and submit_edit(form, lambda: services.tenant_update(
            actor=request.user, tenant=tenant, **_changed_values(form))) is not None:
        messages.success(request, f"Saved changes to {tenant.name}.")
        return redirect("tenants:detail", tenant_slug=tenant.slug)
    return render(request, "tenants/tenant_form.html", {"form": form, "tenant": tenant})


@require_POST
@platform_view(PlatformPerm.TENANTS_MANAGE)
def tenant_set_status(request: HttpRequest, tenant_slug: str, status: str) -> HttpResponse:
    tenant = selectors.tenant_get(user=request.user, slug=tenant_slug)
    form = SuspendForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        services.tenant_set_status(actor=request.user, tenant=tenant, status=status, reason=reason)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        verb = "suspended" if status == TenantStatus.SUSPENDED else "reactivated"
        messages.success(request, f"{tenant.name} is {verb}.")
    return redirect("tenants:detail", tenant_slug=tenant.slug)


@require_POST
@platform_view(PlatformPerm.TENANTS_MANAGE)
def member_second_factor_reset(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = selectors.tenant_get(user=request.user, slug=tenant_slug)
    person = selectors.membership_get(tenant=tenant, pk=pk).user
    try:
        removed = services.second_factor_reset(actor=request.user, user=person)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Removed the second factors of {person.email} "
                                  f"({', '.join(removed)}): they set up a new one under "
                                  "Two-factor authentication in their account.")
    return redirect("tenants:detail", tenant_slug=tenant.slug)


# --- Tenant pages ----------------------------------------------------------------------


@tenant_view(TenantPerm.TENANT_VIEW)
def tenant_overview(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    return render(request, "tenants/overview.html", {
        "tenant": tenant, **selectors.tenant_overview_counts(tenant=tenant)})


def _members_context(request: HttpRequest, tenant, **extra) -> dict:
    return {
        "tenant": tenant,
        "memberships": selectors.membership_list(tenant=tenant),
        "invitations": selectors.invitation_list_open(tenant=tenant),
        "can_manage": permissions.has_tenant_perm(request.user, tenant,
                                                  TenantPerm.MEMBERS_MANAGE),
        "invite_form": extra.pop("invite_form", None) or InviteForm(),
        "role_choices": RoleForm.base_fields["role"].choices,
        **extra,
    }


def _members_response(request: HttpRequest, *, status: int = 200, **extra) -> HttpResponse:
    """After a member action: the members section for HTMX, else back to the page."""
    if wants_partial(request):
        return render(request, "tenants/partials/_members.html",
                      _members_context(request, request.tenant, **extra), status=status)
    if extra.get("error"):
        messages.error(request, extra["error"])
    elif extra.get("notice"):
        messages.success(request, extra["notice"])
    invite_form = extra.get("invite_form")
    if invite_form is not None and invite_form.errors:
        return render(request, "tenants/members.html",
                      _members_context(request, request.tenant, **extra), status=status)
    return redirect(_members_page(request))


def _members_page(request: HttpRequest) -> str:
    if permissions.is_msp_admin(request.user) and request.POST.get("from") == "msp":
        return reverse("tenants:detail", kwargs={"tenant_slug": request.tenant.slug})
    return reverse("tenants:members", kwargs={"tenant_slug": request.tenant.slug})


@tenant_view(TenantPerm.MEMBERS_VIEW)
def member_list(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/members.html", _members_context(request, request.tenant))


@require_POST
@tenant_view(TenantPerm.MEMBERS_MANAGE)
def member_invite(request: HttpRequest) -> HttpResponse:
    """Invite an address with a role: the invitation is e-mailed; the members section (or
    page) shows it, or the form's errors (422)."""
    form = InviteForm(request.POST)
    created = submit(form, lambda: services.invitation_create(
        actor=request.user, tenant=request.tenant, **form.cleaned_data))
    if created is None:
        return _members_response(request, invite_form=form, status=422)
    invitation, _token = created
    return _members_response(request, notice=f"Invitation sent to {invitation.email}.")


def _members_action(view: Callable[[HttpRequest, int], tuple[Callable[[], object], str]]):
    """A button of the members page, for tenant admins: `view(request, pk)` names the service
    call and what to say once it is done; the members section (or page) shows the outcome,
    the service's refusal included."""

    @require_POST
    @tenant_view(TenantPerm.MEMBERS_MANAGE)
    @wraps(view)
    def wrapper(request: HttpRequest, pk: int) -> HttpResponse:
        call, notice = view(request, pk)
        return page_after_service(partial(_members_response, request), call, notice)
    return wrapper


@require_POST
@tenant_view(TenantPerm.MEMBERS_MANAGE)
def member_change_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = selectors.membership_get(tenant=request.tenant, pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _members_response(request, error="Choose a valid role.", status=422)
    role = form.cleaned_data["role"]
    return page_after_service(
        partial(_members_response, request),
        lambda: services.membership_change_role(actor=request.user, membership=membership,
                                                role=role),
        f"{membership.user.email} is now {TenantRole(role).label}.")


@_members_action
def member_remove(request: HttpRequest, pk: int):
    membership = selectors.membership_get(tenant=request.tenant, pk=pk)
    notice = f"Removed {membership.user.email}."
    return lambda: services.membership_remove(actor=request.user, membership=membership), notice


@_members_action
def invitation_revoke(request: HttpRequest, pk: int):
    invitation = selectors.invitation_get(tenant=request.tenant, pk=pk)
    return (lambda: services.invitation_revoke(actor=request.user, invitation=invitation),
            f"Invitation for {invitation.email} revoked.")


# --- Invitations -----------------------------------------------------------------------


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Landing page of the e-mailed link: sign in (or sign up) as the invited address, accept."""
    invitation = services.invitation_for_token(token)
    if invitation is None or not invitation.is_open:
        return render(request, "tenants/invitation_invalid.html", status=404)
    if not request.user.is_authenticated:
        request.session[INVITATION_SESSION_KEY] = token
        # The link arrived by e-mail, so signing up with that address needs no second check.
        get_account_adapter(request).stash_verified_email(request, invitation.email)
        return render(request, "tenants/invitation_accept.html", {"invitation": invitation})
    if request.method == "POST":
        try:
            membership = services.invitation_accept(user=request.user, token=token)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            request.session.pop(INVITATION_SESSION_KEY, None)
            messages.success(request, f"Welcome to {membership.tenant.name}.")
            return redirect("tenants:overview", tenant_slug=membership.tenant.slug)
    return render(request, "tenants/invitation_accept.html", {"invitation": invitation})


# --- Single sign-on ----------------------------------------------------------------------


@login_not_required
def provider_login(request: HttpRequest, provider_id: str) -> HttpResponse:
    """allauth's start of an OIDC sign-in, with a clear page when the provider can't be
    reached (allauth lets that error through as a 500)."""
    try:
        return oidc_views.login(request, provider_id)
    except requests.RequestException as exc:
        provider = identity.provider_get(provider_id)
        audit.record(action="auth.login_failed", actor="anonymous",
                     details={"provider": provider_id, "error": "provider unreachable",
                              "exception": type(exc).__name__})
        return render(request, "tenants/identity/provider_error.html",
                      {"provider_name": provider.name if provider else provider_id,
                       "unreachable": True}, status=502)


@login_required
def identity_page(request: HttpRequest) -> HttpResponse:
    facts = request.session.get(OIDC_SESSION_KEY) or {}
    return render(request, "tenants/identity/page.html", {
        "overview": selectors.identity_overview(user=request.user),
        "session_facts": facts,
        "session_provider": identity.provider_get(facts.get("provider", "")),
        "step_up_params": identity.step_up_params(facts.get("step_up_acr", "")),
    })
