"""Keeping usage rollups up to date: additive upserts, correct under concurrent drainers.

`rollups_add(records)` runs in the ingest transaction on exactly the records that were new,
so a redelivered event is never counted twice. Each row is one `INSERT … ON CONFLICT DO
UPDATE SET x = x + excluded.x` (PostgreSQL and SQLite both speak it), so two drainers adding
to the same bucket both land. `rollups_rebuild` recomputes a range from raw records (repair).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from billing.usage.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_COLUMNS,
    Granularity,
    UsageRecord,
    UsageRollup,
)
from portal import locks

_KEY_COLUMNS = ("granularity", "bucket", "tenant_id", "api_key_id", "model_id",
                "deployment_id", "currency")
_SUM_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "cost",
                "latency_ms_sum", *LATENCY_COLUMNS, "cached_input_tokens", "reasoning_tokens")


def bucket_start(when: datetime, granularity: str) -> datetime:
    when = when.replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0) if granularity == Granularity.DAY else when


def latency_bucket(latency_ms: int) -> int:
    return bisect_left(LATENCY_BOUNDS_MS, latency_ms + 1) if latency_ms >= 0 else 0


def _aggregate(records) -> dict[tuple, dict]:
    rows: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(_SUM_COLUMNS, 0) | {
        "model_slug": ""})
    for record in records:
        for granularity in (Granularity.HOUR, Granularity.DAY):
            key = (granularity, bucket_start(record.created_at, granularity), record.tenant_id,
                   record.api_key_id or 0, record.model_id or 0, record.deployment_id or 0,
                   record.currency or "")
            row = rows[key]
            row["model_slug"] = record.model_slug
            row["requests"] += 1
            row["errors"] += 1 if record.status_code >= 400 else 0
            row["input_tokens"] += record.input_tokens
            row["output_tokens"] += record.output_tokens
            row["cached_input_tokens"] += record.cached_input_tokens
            row["reasoning_tokens"] += record.reasoning_tokens
            row["cost"] += Decimal(record.cost)
            row["latency_ms_sum"] += record.latency_ms
            row[LATENCY_COLUMNS[latency_bucket(record.latency_ms)]] += 1
    return rows


def _upsert(rows: dict[tuple, dict]) -> None:
    """Add aggregated rows (the SQLite path; PostgreSQL aggregates server-side)."""
    if not rows:
        return
    table = UsageRollup._meta.db_table
    columns = [*_KEY_COLUMNS, "model_slug", *_SUM_COLUMNS]
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _SUM_COLUMNS)
    adapt = connection.ops.adapt_datetimefield_value  # as the ORM stores it (SQLite: text)
    # The same order everywhere, so concurrent drainers lock rows in the same order.
    params = [[key[0], adapt(key[1]), *key[2:], row["model_slug"],
               *(row[c] for c in _SUM_COLUMNS)]
              for key, row in sorted(rows.items(), key=lambda item: item[0])]
    conflict = (f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET {updates}, "
                "model_slug = excluded.model_slug")
    placeholder = f"({', '.join(['%s'] * len(columns))})"
    chunk = 40  # SQLite caps the number of parameters of a statement
    with connection.cursor() as cursor:
        for start in range(0, len(params), chunk):
            part = params[start:start + chunk]
            cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                           f"{', '.join([placeholder] * len(part))} {conflict}",
                           [value for row in part for value in row])


def rollups_add(*, records: list[UsageRecord]) -> None:
    """Add newly stored records to the hourly and daily rollups (caller's transaction)."""
    # Drainers add under the shared lock and never wait for each other; a rebuild takes it
    # exclusively, so a row a drainer creates while a rebuild runs can't be counted twice.
    locks.hold(locks.ROLLUPS, shared=True)
    if connection.vendor == "postgresql":
        # The records are in the table already (this transaction): PostgreSQL sums them,
        # one statement per granularity, instead of rows travelling back and forth.
        with connection.cursor() as cursor:
            _aggregate_in_postgresql(cursor, "id = ANY(%s)",
                                     [[record.pk for record in records]], upsert=True)
        return
    _upsert(_aggregate(records))


@transaction.atomic
def rollups_rebuild(*, since: datetime, until: datetime) -> int:
    """Recompute the rollups of the whole UTC days from `since` through `until` from raw
    records. Returns how many records were read."""
    locks.hold(locks.ROLLUPS)
    since = bucket_start(since, Granularity.DAY)
    until = bucket_start(until, Granularity.DAY) + timedelta(days=1)
    UsageRollup.objects.filter(bucket__gte=since, bucket__lt=until).delete()
    if connection.vendor == "postgresql":
        return _rebuild_in_postgresql(since, until)
    records = (UsageRecord.objects.filter(created_at__gte=since, created_at__lt=until)
               .only("created_at", "tenant_id", "api_key_id", "model_id", "model_slug",
                     "deployment_id", "currency", "status_code", "input_tokens",
                     "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost",
                     "latency_ms").order_by().iterator(10_000))
    count, batch = 0, []
    rows: dict[tuple, dict] = {}
    for record in records:
        batch.append(record)
        count += 1
        if len(batch) == 50_000:
            _merge(rows, _aggregate(batch))
            batch = []
    _merge(rows, _aggregate(batch))
    _upsert(rows)
    return count


def _aggregate_in_postgresql(cursor, where: str, params: list, *, upsert: bool) -> None:
    """The same sums as `_aggregate`, computed by PostgreSQL: one GROUP BY per granularity
    over the records `where` selects, inserted (rebuild) or added (ingest) to the rollups."""
    table, source = UsageRollup._meta.db_table, UsageRecord._meta.db_table
    lows = (0, *LATENCY_BOUNDS_MS[:-1])
    histogram = ", ".join(
        f"COUNT(*) FILTER (WHERE latency_ms >= {low} AND latency_ms < {high})"
        for low, high in zip(lows, LATENCY_BOUNDS_MS, strict=True))
    histogram += f", COUNT(*) FILTER (WHERE latency_ms >= {LATENCY_BOUNDS_MS[-1]})"
    columns = ", ".join([*_KEY_COLUMNS, "model_slug", *_SUM_COLUMNS])
    conflict = ""
    if upsert:
        updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _SUM_COLUMNS)
        conflict = (f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET {updates}, "
                    "model_slug = excluded.model_slug")
    for granularity in Granularity.values:
        # ORDER BY: concurrent drainers touch rows in the same order, so they can't deadlock.
        cursor.execute(f"""
            INSERT INTO {table} ({columns})
            SELECT %s, date_trunc(%s, created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                   tenant_id, COALESCE(api_key_id, 0), COALESCE(model_id, 0),
                   COALESCE(deployment_id, 0), currency, MAX(model_slug), COUNT(*),
                   COUNT(*) FILTER (WHERE status_code >= 400), SUM(input_tokens),
                   SUM(output_tokens), SUM(cost), SUM(latency_ms), {histogram},
                   SUM(cached_input_tokens), SUM(reasoning_tokens)
            FROM {source} WHERE {where}
            GROUP BY 2, 3, 4, 5, 6, 7 ORDER BY 2, 3, 4, 5, 6, 7 {conflict}""",
                       [granularity, granularity, *params])


def _rebuild_in_postgresql(since: datetime, until: datetime) -> int:
    with connection.cursor() as cursor:
        _aggregate_in_postgresql(cursor, "created_at >= %s AND created_at < %s",
                                 [since, until], upsert=False)
        cursor.execute(f"SELECT COUNT(*) FROM {UsageRecord._meta.db_table} "
                       "WHERE created_at >= %s AND created_at < %s", [since, until])
        return cursor.fetchone()[0]


def _merge(into: dict[tuple, dict], rows: dict[tuple, dict]) -> None:
    for key, row in rows.items():
        target = into.get(key)
        if target is None:
            into[key] = row
            continue
        for column in _SUM_COLUMNS:
            target[column] += row[column]
