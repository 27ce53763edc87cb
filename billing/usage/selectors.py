"""Reads for the usage dashboards and the usage API — from rollups only, never raw records —
and the check of the usage records against their seals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import QuerySet, Sum

from audit.models import AuditEvent
from billing.usage.models import LATENCY_BOUNDS_MS, LATENCY_COLUMNS, UsageRecord, UsageRollup
from billing.usage.seals import (
    SEAL_ACTION,
    SealProblem,
    batch_digest,
    line_sql,
    seal_problem,
    verify_seals,
)
from deployments.models import Deployment
from tenants.models import Tenant

GROUPS = {"tenant": "tenant_id", "key": "api_key_id", "model": "model_id",
          "deployment": "deployment_id"}
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens",
         "reasoning_tokens", "cost", "latency_ms_sum", *LATENCY_COLUMNS)


def percentile_ms(histogram: list[int], fraction: float) -> int | None:
    """The upper bound of the latency bucket holding the given fraction of requests (the
    histogram's resolution: each bucket doubles the previous one)."""
    total = sum(histogram)
    if not total:
        return None
    threshold, running = fraction * total, 0
    for index, count in enumerate(histogram):
        running += count
        if running >= threshold:
            return LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)]
    return LATENCY_BOUNDS_MS[-1]


@dataclass
class UsageScope:
    since: datetime
    until: datetime
    granularity: str
    tenant_id: int | None = None  # None: the whole platform
    api_key_ids: list[int] | None = None  # a developer: their own keys only


def _rollups(scope: UsageScope) -> QuerySet[UsageRollup]:
    qs = UsageRollup.objects.filter(granularity=scope.granularity, bucket__gte=scope.since,
                                    bucket__lt=scope.until)
    if scope.tenant_id is not None:
        qs = qs.filter(tenant_id=scope.tenant_id)
    if scope.api_key_ids is not None:
        qs = qs.filter(api_key_id__in=scope.api_key_ids)
    return qs


def _summed(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    histogram = [row.pop(c) or 0 for c in LATENCY_COLUMNS]
    requests = row["requests"] or 0
    row.update({
        "requests": requests, "errors": row["errors"] or 0,
        "input_tokens": row["input_tokens"] or 0, "output_tokens": row["output_tokens"] or 0,
        "cached_input_tokens": row["cached_input_tokens"] or 0,
        "reasoning_tokens": row["reasoning_tokens"] or 0,
        "cost": row["cost"] or Decimal(0),
        "latency_avg_ms": round((row.pop("latency_ms_sum") or 0) / requests) if requests else None,
        "latency_p50_ms": percentile_ms(histogram, 0.50),
        "latency_p95_ms": percentile_ms(histogram, 0.95),
        "error_rate": round((row["errors"] or 0) / requests, 4) if requests else 0.0,
    })
    return row


def usage_query(scope: UsageScope, *, group_by: list[str] = ()) -> list[dict[str, Any]]:
    """Sums per bucket (and per `group_by` dimension), oldest first. Costs stay per currency:
    a sum across currencies would mean nothing."""
    dimensions = ["bucket", *[GROUPS[g] for g in group_by], "currency"]
    if "model" in group_by:
        dimensions.append("model_slug")
    rows = (_rollups(scope).values(*dimensions)
            .annotate(**{name: Sum(name) for name in _SUMS}).order_by(*dimensions))
    return [_summed(dict(row)) for row in rows]


@dataclass
class Dashboard:
    series: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    cost_by_model: list[dict[str, Any]] = field(default_factory=list)
    by_key: list[dict[str, Any]] = field(default_factory=list)
    by_tenant: list[dict[str, Any]] = field(default_factory=list)
    by_deployment: list[dict[str, Any]] = field(default_factory=list)


# The groupings a dashboard shows: (name, grouped columns, sort key, limit, row filter).
_SECTIONS = (
    ("series", ("bucket",), "bucket", None, None),
    ("currencies", ("currency",), "currency", None, None),
    ("cost_by_model", ("model_slug", "currency"), "-cost", None, None),
    ("by_key", ("tenant_id", "api_key_id", "currency"), "-input_tokens", 20, "api_key_id"),
    ("by_tenant", ("tenant_id", "currency"), "-cost", 20, None),
    ("by_deployment", ("deployment_id", "model_slug"), "-requests", 20, "deployment_id"),
)
_PLATFORM_ONLY = {"by_tenant", "by_deployment"}
_DIMENSIONS = ("bucket", "tenant_id", "api_key_id", "model_slug", "deployment_id", "currency")


def _sorted(rows: list[dict], order: str, limit: int | None) -> list[dict]:
    field, reverse = order.lstrip("-"), order.startswith("-")
    rows.sort(key=lambda row: row[field], reverse=reverse)
    return rows[:limit] if limit else rows


def _sections_in_postgresql(scope: UsageScope, sections) -> dict[str, list[dict]]:
    """Every grouping in ONE pass over the rollups (GROUPING SETS): the MSP overview reads
    ~100,000 daily rows a month, and one scan instead of six keeps it well under a second."""
    where, params = ["granularity = %s", "bucket >= %s", "bucket < %s"], [
        scope.granularity, scope.since, scope.until]
    if scope.tenant_id is not None:
        where.append("tenant_id = %s")
        params.append(scope.tenant_id)
    if scope.api_key_ids is not None:
        where.append("api_key_id = ANY(%s)")
        params.append(list(scope.api_key_ids))
    dimensions = [d for d in _DIMENSIONS if any(d in columns for _, columns, *_ in sections)]
    sets = ", ".join(f"({', '.join(columns)})" for _, columns, *_ in sections)
    # SUM of bigint is numeric in PostgreSQL: back to integers, except money.
    sums = ", ".join(f"SUM({name})" if name == "cost" else f"SUM({name})::bigint"
                     for name in _SUMS)
    sql = (f"SELECT {', '.join(dimensions)}, GROUPING({', '.join(dimensions)}), {sums} "
           f"FROM {UsageRollup._meta.db_table} WHERE {' AND '.join(where)} "
           f"GROUP BY GROUPING SETS ({sets})")
    # GROUPING() has a bit per dimension, set when the row is summed across it.
    masks = {sum(1 << (len(dimensions) - 1 - i) for i, column in enumerate(dimensions)
                 if column not in columns): (name, columns)
             for name, columns, *_ in sections}
    found: dict[str, list[dict]] = {name: [] for name, *_ in sections}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for values in cursor.fetchall():
            name, columns = masks[values[len(dimensions)]]
            row = {column: values[dimensions.index(column)] for column in columns}
            row.update(zip(_SUMS, values[len(dimensions) + 1:], strict=True))
            found[name].append(row)
    return found


def _sections_with_the_orm(scope: UsageScope, sections) -> dict[str, list[dict]]:
    """The same groupings, one query each (SQLite has no GROUPING SETS)."""
    qs = _rollups(scope)
    return {name: [dict(row) for row in qs.values(*columns).annotate(
                **{field: Sum(field) for field in _SUMS}).order_by()]
            for name, columns, *_ in sections}


def usage_dashboard(scope: UsageScope, *, platform: bool = False) -> Dashboard:
    sections = [s for s in _SECTIONS if platform or s[0] not in _PLATFORM_ONLY]
    reader = (_sections_in_postgresql if connection.vendor == "postgresql"
              else _sections_with_the_orm)
    found = reader(scope, sections)
    results: dict[str, list[dict]] = {}
    for name, _columns, order, limit, nonzero in sections:
        rows = [_summed(row) for row in found[name] if not nonzero or row[nonzero]]
        results[name] = _sorted(rows, order, limit)
    totals = {name: sum((row[name] or 0) for row in found["currencies"]) for name in _SUMS}
    dashboard = Dashboard(series=results["series"], cost_by_model=results["cost_by_model"],
                          by_key=results["by_key"], by_tenant=results.get("by_tenant", []),
                          by_deployment=results.get("by_deployment", []))
    dashboard.totals = _summed(totals)
    dashboard.totals["cost_by_currency"] = {row["currency"]: row["cost"]
                                            for row in results["currencies"] if row["currency"]}
    return dashboard


def _api_keys():
    # Key names are the gateway's; billing stores only their ids (the gateway imports billing,
    # not the other way round), so the key model is looked up by name.
    return apps.get_model("gateway", "ApiKey").objects


def own_key_ids(*, user, tenant: Tenant) -> list[int]:
    """The keys a person, or a service account (a bearer token's principal), owns."""
    owned = ({"service_account": user.pk} if getattr(user, "is_service_account", False)
             else {"owner": user})
    return list(_api_keys().filter(tenant=tenant, **owned).values_list("pk", flat=True))


def dashboard_add_labels(dashboard: Dashboard) -> None:
    """Names for the ids in the dashboard's rows: keys, tenants, deployments (a gone one keeps
    its id)."""
    key_ids = {row["api_key_id"] for row in dashboard.by_key}
    names = dict(_api_keys().filter(pk__in=key_ids).values_list("pk", "name"))
    for row in dashboard.by_key:
        row["label"] = names.get(row["api_key_id"], f"deleted key #{row['api_key_id']}")
    tenant_ids = {row["tenant_id"] for row in dashboard.by_tenant + dashboard.by_key}
    tenants = dict(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", "name"))
    for row in dashboard.by_tenant + dashboard.by_key:
        row["tenant"] = tenants.get(row["tenant_id"], f"tenant #{row['tenant_id']}")
    deployments = dict(Deployment.objects.filter(
        pk__in={row["deployment_id"] for row in dashboard.by_deployment}
    ).values_list("pk", "name"))
    for row in dashboard.by_deployment:
        row["label"] = deployments.get(row["deployment_id"], f"#{row['deployment_id']}")


_SEALS_PER_QUERY = 500


def _batch_digests(seqs: list[int]) -> dict[int, tuple[int, bool, str | None]]:
    """Per seal: the number of records it covers, whether all are plain, and their digest,
    computed by PostgreSQL (one index scan per batch; only a row per batch comes back)."""
    line, plain = line_sql()
    sql = (f"SELECT s.seq, b.records, b.plain, b.sha256 FROM unnest(%s::bigint[]) AS s(seq) "
           f"CROSS JOIN LATERAL (SELECT count(*) AS records, bool_and({plain}) AS plain, "
           f"encode(sha256(string_agg(convert_to({line} || E'\\n', 'UTF8'), '' "
           f"ORDER BY request_id COLLATE \"C\")), 'hex') AS sha256 "
           f"FROM {UsageRecord._meta.db_table} WHERE sealed_by = s.seq) AS b")
    with connection.cursor() as cursor:
        cursor.execute(sql, [seqs])
        return {seq: (records, plain, digest) for seq, records, plain, digest in cursor}


def _chunks(rows, size: int):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def usage_seals_verify(*, start: datetime | None = None, end: datetime | None = None
                       ) -> tuple[int, list[SealProblem]]:
    """Every seal of the period (or of all time) against the records it covers."""
    seals = AuditEvent.objects.filter(action=SEAL_ACTION).order_by("seq")
    if start:
        seals = seals.filter(created_at__gte=start)
    if end:
        seals = seals.filter(created_at__lt=end)
    if connection.vendor != "postgresql":
        return verify_seals(seals=seals.iterator(chunk_size=500),
                            records_for=lambda seq: UsageRecord.objects.filter(sealed_by=seq))
    checked, problems = 0, []
    for chunk in _chunks(seals.values_list("seq", "details").iterator(
            chunk_size=_SEALS_PER_QUERY), _SEALS_PER_QUERY):
        found = _batch_digests([seq for seq, _ in chunk])
        for seq, details in chunk:
            checked += 1
            records, plain, digest = found[seq]
            if records and not plain:  # strings PostgreSQL does not escape as JSON does
                digest = batch_digest(UsageRecord.objects.filter(sealed_by=seq))
            problem = seal_problem(seq=seq, details=details, records=records, digest=digest)
            if problem:
                problems.append(problem)
    return checked, problems
