"""Reads for the usage dashboards and the usage API — from rollups only, never raw records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum

from billing.usage_models import LATENCY_BOUNDS_MS, LATENCY_COLUMNS, UsageRollup

GROUPS = {"tenant": "tenant_id", "key": "api_key_id", "model": "model_id",
          "deployment": "deployment_id"}
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cost", "latency_ms_sum",
         *LATENCY_COLUMNS)


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
    histogram = [row.pop(c) or 0 for c in LATENCY_COLUMNS]
    requests = row["requests"] or 0
    row.update({
        "requests": requests, "errors": row["errors"] or 0,
        "input_tokens": row["input_tokens"] or 0, "output_tokens": row["output_tokens"] or 0,
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


def _grouped(qs, *dimensions: str, order: str = "-requests", limit: int | None = None):
    rows = qs.values(*dimensions).annotate(**{name: Sum(name) for name in _SUMS}).order_by(order)
    return [_summed(dict(row)) for row in (rows[:limit] if limit else rows)]


def usage_dashboard(scope: UsageScope, *, platform: bool = False) -> Dashboard:
    qs = _rollups(scope)
    dashboard = Dashboard()
    dashboard.series = _grouped(qs, "bucket", order="bucket")
    totals = qs.aggregate(**{name: Sum(name) for name in _SUMS})
    dashboard.totals = _summed(totals)
    dashboard.totals["cost_by_currency"] = {
        row["currency"]: row["cost"] for row in
        qs.exclude(currency="").values("currency").annotate(cost=Sum("cost")).order_by("currency")}
    dashboard.cost_by_model = _grouped(qs, "model_slug", "currency", order="-cost")
    dashboard.by_key = _grouped(qs.filter(~Q(api_key_id=0)), "tenant_id", "api_key_id",
                                "currency", order="-input_tokens", limit=20)
    if platform:
        dashboard.by_tenant = _grouped(qs, "tenant_id", "currency", order="-cost", limit=20)
        dashboard.by_deployment = _grouped(qs.filter(~Q(deployment_id=0)), "deployment_id",
                                           "model_slug", order="-requests", limit=20)
    return dashboard
