"""The sections the audit trail itself can answer: security events, tenant lifecycle and the
integrity of the chain. Registered by `AuditConfig.ready()`."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate

from audit import selectors
from audit.integrity import PURGE_ACTION
from audit.models import AuditCheckpoint, AuditEvent
from audit.reports.sections import Chart, ReportScope, Section, Table, register_section

SAMPLE_ROWS = 50
SECURITY_SUFFIXES = (".rejected", ".refused", ".blocked")
PEOPLE_PREFIXES = ("membership.", "invitation.", "platform_role.", "user.")


def period_events(scope: ReportScope) -> QuerySet[AuditEvent]:
    low, high = selectors.seq_bounds(since=scope.period.start, until=scope.period.end)
    qs = AuditEvent.objects.filter(seq__gte=low, seq__lte=high,
                                   created_at__gte=scope.period.start,
                                   created_at__lt=scope.period.end)
    if scope.tenant_id is not None:
        qs = qs.filter(tenant_id=scope.tenant_id)
    return qs.order_by()


def _details_text(details: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(details.items()))[:160]


def _counts_by_action(qs: QuerySet[AuditEvent]) -> dict[str, int]:
    return {row["action"]: row["n"] for row in
            qs.values("action").annotate(n=Count("seq")).order_by("action")}


def security_events_queryset(scope: ReportScope) -> QuerySet[AuditEvent]:
    matches = Q(action="auth.login_failed")
    for suffix in SECURITY_SUFFIXES:
        matches |= Q(action__endswith=suffix)
    return period_events(scope).filter(matches)


@register_section("security_events", order=20)
def security_events(scope: ReportScope) -> Section:
    qs = security_events_queryset(scope)
    by_action = _counts_by_action(qs)
    total = sum(by_action.values())
    by_day = list(qs.annotate(day=TruncDate("created_at")).values("day")
                  .annotate(n=Count("seq")).order_by("day"))
    failed = qs.filter(action="auth.login_failed")
    top_accounts = list(failed.annotate(email=KeyTextTransform("email", "details"))
                        .values("email").annotate(n=Count("seq")).order_by("-n", "email")[:10])
    section = Section(
        key="security_events",
        title="Security events",
        intro=("Failed sign-ins and every refused, rejected or blocked action recorded in the "
               "audit trail during the period."
               + ("" if scope.is_platform else " Failed sign-ins are platform-wide and so "
                  "appear only in platform reports.")),
        figures={"Security events": total, **{f"· {a}": n for a, n in by_action.items()}},
    )
    if by_day:
        section.charts.append(Chart("Security events per day",
                                    [row["day"].isoformat() for row in by_day],
                                    [row["n"] for row in by_day], unit="events"))
    if top_accounts:
        section.tables.append(Table("Accounts with the most failed sign-ins", ["Account", "Failed"],
                                    [[row["email"] or "—", row["n"]] for row in top_accounts]))
        if top_accounts[0]["n"] >= 20:
            section.findings.append(
                f"{top_accounts[0]['email']} had {top_accounts[0]['n']} failed sign-ins: "
                "check for password guessing.")
    latest = qs.order_by("-seq")[:SAMPLE_ROWS]
    section.tables.append(Table(
        "Latest security events", ["#", "Time (UTC)", "Action", "Actor", "Details"],
        [[e.seq, e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.action, e.actor_label,
          _details_text(e.details)] for e in latest], total_rows=total))
    return section


@register_section("tenant_lifecycle", order=30)
def tenant_lifecycle(scope: ReportScope) -> Section:
    events = period_events(scope)
    tenant_changes = events.filter(action__startswith="tenant.")
    people = events.filter(
        Q(action__startswith=PEOPLE_PREFIXES[0]) | Q(action__startswith=PEOPLE_PREFIXES[1])
        | Q(action__startswith=PEOPLE_PREFIXES[2]) | Q(action__startswith=PEOPLE_PREFIXES[3]))
    tenant_counts = _counts_by_action(tenant_changes)
    people_counts = _counts_by_action(people)
    section = Section(
        key="tenant_lifecycle",
        title="Tenant lifecycle",
        intro="Tenants created, changed, suspended and reactivated, and changes to who "
              "belongs to them, during the period.",
        figures={"Tenant changes": sum(tenant_counts.values()),
                 **{f"· {a}": n for a, n in tenant_counts.items()},
                 "Membership and role changes": sum(people_counts.values()),
                 **{f"· {a}": n for a, n in people_counts.items()}},
    )
    rows = tenant_changes.order_by("seq")[:200]
    section.tables.append(Table(
        "Tenant changes", ["#", "Time (UTC)", "Tenant", "Action", "By", "Details"],
        [[e.seq, e.created_at.strftime("%Y-%m-%d %H:%M"), e.tenant_slug, e.action,
          e.actor_label, _details_text(e.details)] for e in rows],
        total_rows=sum(tenant_counts.values())))
    suspended = tenant_counts.get("tenant.suspended", 0)
    if suspended:
        section.findings.append(f"{suspended} tenant suspension(s) in the period.")
    return section


@register_section("audit_integrity", order=90)
def audit_integrity(scope: ReportScope) -> Section:
    result = selectors.chain_verify()
    signed_in_period = AuditCheckpoint.objects.filter(
        created_at__gte=scope.period.start, created_at__lt=scope.period.end).count()
    purges = list(AuditEvent.objects.filter(action=PURGE_ACTION, created_at__gte=scope.period.start,
                                            created_at__lt=scope.period.end).order_by("seq"))
    section = Section(
        key="audit_integrity",
        title="Audit-chain integrity",
        intro=("The whole chain was verified when this report was generated: every link, "
               "every hash, and the head hash at every checkpoint signed with the platform key."),
        figures={
            "Status": "intact" if result.ok else "BROKEN",
            "Range verified": (f"#{result.first_seq}–#{result.last_seq}" if result.count
                               else "empty"),
            "Events verified": result.count,
            "Head hash": result.head_hash,
            "Signed checkpoints matched": result.checkpoints_matched,
            "Signed checkpoints in all": result.checkpoints_total,
            "Checkpoints signed in the period": signed_in_period,
            "Purged through": (f"#{result.purged_through}" if result.purged_through
                               else "nothing purged"),
            "Break": result.error or "none",
        },
    )
    if not result.ok:
        section.findings.append(f"The audit chain is broken: {result.error}. Investigate before "
                                "relying on the trail; the event named is where it departs from "
                                "the signed record.")
    if purges:
        section.tables.append(Table(
            "Retention purges in the period", ["#", "Time (UTC)", "Purged events", "Through",
                                               "Range SHA-256"],
            [[e.seq, e.created_at.strftime("%Y-%m-%d %H:%M"), e.details.get("count"),
              f"#{e.details.get('through_seq')}", e.details.get("range_sha256")]
             for e in purges]))
    return section
