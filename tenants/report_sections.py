"""The access review section of compliance reports: who holds which role, with their
second factor and the assurance level (`acr`) of their last sign-in."""

from __future__ import annotations

from collections import defaultdict

from allauth.mfa.models import Authenticator

from audit import selectors as audit_selectors
from audit.reports.sections import Chart, ReportScope, Section, Table, register_section
from tenants.models import Membership, PlatformRole, PlatformRoleGrant, TenantRole

_ADMIN_ROLES = {PlatformRole.MSP_ADMIN, PlatformRole.COMPLIANCE_OFFICER, TenantRole.TENANT_ADMIN}
_MFA_NAMES = {"totp": "authenticator app", "webauthn": "security key",
              "recovery_codes": "recovery codes"}


def _mfa_by_user(user_ids: set[int]) -> dict[int, list[str]]:
    kinds: dict[int, list[str]] = defaultdict(list)
    for user_id, kind in (Authenticator.objects.filter(user_id__in=user_ids)
                          .values_list("user_id", "type").order_by("user_id", "type")):
        kinds[user_id].append(_MFA_NAMES.get(kind, kind))
    return kinds


def _last_sign_in(user_ids: set[int]) -> dict[str, tuple[str, str]]:
    """user id → (time, acr) of the last recorded sign-in. The `acr` (authentication context
    class, e.g. an eID's level of assurance) is whatever the sign-in event recorded under
    `details.acr`; local password sign-ins record none."""
    events = audit_selectors.latest_event_by_actor(
        action="auth.login_succeeded", actor_ids=[str(pk) for pk in user_ids])
    return {actor_id: (e.created_at.strftime("%Y-%m-%d %H:%M"), str(e.details.get("acr") or "—"))
            for actor_id, e in events.items()}


@register_section("access_review", order=10)
def access_review(scope: ReportScope) -> Section:
    grants = list(PlatformRoleGrant.objects.select_related("user").order_by("role", "user__email"))
    memberships = Membership.objects.select_related("user", "tenant").order_by(
        "tenant__slug", "role", "user__email")
    if scope.tenant_id is not None:
        memberships = memberships.filter(tenant_id=scope.tenant_id)
        # Only MSP admins reach into tenants; compliance officers read the audit trail only.
        grants = [g for g in grants if g.role == PlatformRole.MSP_ADMIN]
    memberships = list(memberships)
    user_ids = {g.user_id for g in grants} | {m.user_id for m in memberships}
    mfa = _mfa_by_user(user_ids)
    last = _last_sign_in(user_ids)

    def person(user) -> list[str]:
        when, acr = last.get(str(user.pk), ("never", "—"))
        return [", ".join(mfa.get(user.pk, [])) or "none", when, acr]

    platform_rows = [[g.user.email, g.get_role_display(), g.source, *person(g.user)]
                     for g in grants]
    tenant_rows = [[m.tenant.slug, m.user.email, m.get_role_display(), *person(m.user)]
                   for m in memberships]
    admins_without_mfa = sorted(
        {g.user.email for g in grants if g.role in _ADMIN_ROLES and not mfa.get(g.user_id)}
        | {m.user.email for m in memberships
           if m.role in _ADMIN_ROLES and not mfa.get(m.user_id)})
    role_counts: dict[str, int] = defaultdict(int)
    for g in grants:
        role_counts[g.get_role_display()] += 1
    for m in memberships:
        role_counts[m.get_role_display()] += 1

    section = Section(
        key="access_review",
        title="Access review",
        intro=("Who holds which role, as of the report's generation, with each person's second "
               "factor and the time and assurance level (acr) of their last recorded sign-in."),
        figures={"People with access": len(user_ids),
                 **{f"· {role}": n for role, n in sorted(role_counts.items())},
                 "Admins without a second factor": len(admins_without_mfa)},
    )
    if admins_without_mfa:
        section.findings.append("Admins without a second factor: " + ", ".join(admins_without_mfa))
    if role_counts:
        section.charts.append(Chart("People per role", list(sorted(role_counts)),
                                    [role_counts[r] for r in sorted(role_counts)], unit="people"))
    section.tables.append(Table(
        "Platform roles" if scope.is_platform else "Platform staff with access to the tenant",
        ["Person", "Role", "Source", "Second factor", "Last sign-in (UTC)", "acr"],
        platform_rows))
    section.tables.append(Table(
        "Tenant roles", ["Tenant", "Person", "Role", "Second factor", "Last sign-in (UTC)",
                         "acr"], tenant_rows))
    return section
