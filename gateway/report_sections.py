"""Compliance report section for API keys (registered by `GatewayConfig.ready()`)."""

from __future__ import annotations

from django.db.models import Count

from audit.models import AuditEvent
from audit.reports.sections import ReportScope, Section, Table, register_section
from gateway.models import ApiKey

KEY_ACTIONS = ("apikey.created", "apikey.rotated", "apikey.revoked")
BULK_REVOKE = "apikey.bulk_revoked"


@register_section("api_keys", order=50)
def api_keys(scope: ReportScope) -> Section:
    events = AuditEvent.objects.filter(action__in=KEY_ACTIONS,
                                       created_at__gte=scope.period.start,
                                       created_at__lt=scope.period.end)
    keys = ApiKey.objects.select_related("tenant", "owner")
    if scope.tenant_id is not None:
        events = events.filter(tenant_id=scope.tenant_id)
        keys = keys.filter(tenant_id=scope.tenant_id)
    counts = {row["action"]: row["n"] for row in
              events.values("action").annotate(n=Count("seq")).order_by()}
    # Keys revoked one by one or in bulk (one event for many keys): counted from the keys.
    revoked = keys.filter(revoked_at__gte=scope.period.start, revoked_at__lt=scope.period.end)
    bulk = AuditEvent.objects.filter(action=BULK_REVOKE, created_at__gte=scope.period.start,
                                     created_at__lt=scope.period.end)
    bulk_count = bulk.count()
    if scope.tenant_id is not None:
        # The MSP's revokes across tenants are platform events that name the tenants (read in
        # Python: SQLite has no JSON containment lookup).
        bulk_count = bulk.filter(tenant_id=scope.tenant_id).count() + sum(
            1 for details in bulk.filter(tenant_id__isnull=True).values_list("details", flat=True)
            if scope.tenant_slug in (details or {}).get("tenants", []))
    expired = keys.filter(expires_at__gte=scope.period.start, expires_at__lt=scope.period.end)
    # Keys alive at the end of the period that never expire.
    forever = keys.filter(expires_at__isnull=True, created_at__lt=scope.period.end).exclude(
        revoked_at__lt=scope.period.end)
    section = Section(
        key="api_keys",
        title="API keys",
        intro="Keys created, rotated, revoked (one by one or in bulk) and expired during the "
              "period, and the keys that never expire.",
        figures={"Created": counts.get("apikey.created", 0),
                 "Rotated": counts.get("apikey.rotated", 0),
                 "Revoked": revoked.count(), "Bulk revokes": bulk_count,
                 "Expired": expired.count(), "Active keys without expiry": forever.count()},
    )
    if forever.exists():
        section.findings.append(f"{forever.count()} active API key(s) never expire; consider "
                                "setting GATEWAY_KEY_EXPIRY_REQUIRED.")
    section.tables.append(Table(
        "Active keys without expiry", ["Tenant", "Key", "Name", "Owner", "Created"],
        [[k.tenant.slug, k.display_prefix, k.name, k.owner_label,
          k.created_at.strftime("%Y-%m-%d")] for k in forever.order_by("tenant__slug")[:200]],
        total_rows=forever.count()))
    return section
