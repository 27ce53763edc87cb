"""Storing usage: gateway usage events become usage records, charged at the price in force
when each request was served (cached input tokens at the cached-input price), sealed in the
audit chain, and added to the rollups and the budget counters in the same transaction."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

import audit
from billing.budgets.counters import budgets_record_usage
from billing.usage.models import UsageRecord
from billing.usage.rollups import rollups_add
from billing.usage.seals import SEAL_ACTION, batch_digest
from models_catalog.selectors import prices_in_force
from tenants.models import Tenant

logger = logging.getLogger(__name__)

_MILLION = Decimal(1_000_000)


@transaction.atomic
def usage_records_ingest(*, events: list[dict]) -> int:
    """Store gateway usage events as records, charged at the price in force when served.

    Idempotent: an event delivered twice (at-least-once delivery) is stored once, by its
    request id. The new records are sealed by one audit event (billing.usage.seals). Returns
    how many records were new.
    """
    events = _storable(events)
    if not events:
        return 0
    price_at = prices_in_force(model_ids={e["model_id"] for e in events if e.get("model_id")})
    records = []
    for event in events:
        created = datetime.fromtimestamp(event["ts"], tz=UTC)
        price = price_at(event["model_id"], created) if event.get("model_id") else None
        # Events of gateway workers older than cached/reasoning metering lack these counts.
        cached = min(event.get("cached_input_tokens") or 0, event["input_tokens"])
        reasoning = min(event.get("reasoning_tokens") or 0, event["output_tokens"])
        cost = Decimal(0)
        if price is not None:
            cost = ((event["input_tokens"] - cached) * price.input_per_million
                    + cached * cached_input_price(price)
                    + event["output_tokens"] * price.output_per_million) / _MILLION
        records.append(UsageRecord(
            tenant_id=event["tenant_id"], request_id=event["request_id"], created_at=created,
            api_key_id=event.get("key_id"), model_id=event.get("model_id"),
            model_slug=event["model"], deployment_id=event.get("deployment_id"),
            endpoint=event["endpoint"], status_code=event["status"], streamed=event["streamed"],
            input_tokens=event["input_tokens"], output_tokens=event["output_tokens"],
            cached_input_tokens=cached, reasoning_tokens=reasoning,
            estimated=event["estimated"], latency_ms=event["latency_ms"],
            ttft_ms=event.get("ttft_ms"),
            input_price_per_million=price.input_per_million if price else None,
            output_price_per_million=price.output_per_million if price else None,
            cached_input_price_per_million=cached_input_price(price) if price else None,
            currency=price.currency if price else "", cost=cost))
    existing = set(UsageRecord.objects.filter(
        request_id__in=[r.request_id for r in records]).values_list("request_id", flat=True))
    records = [r for r in records if r.request_id not in existing]
    if not records:
        return 0
    _seal(records)
    # A concurrent drainer storing the same event makes this fail and roll back as a whole;
    # the batch stays unacknowledged and is retried, then finds those records already stored.
    UsageRecord.objects.bulk_create(records, batch_size=1000)

    # --- rollups for the dashboards (billing.usage.rollups) ---
    rollups_add(records=records)

    # --- budgets: counters and threshold alerts (billing.budgets.counters) ---
    budgets_record_usage(records=records)

    return len(records)


def cached_input_price(price) -> Decimal:
    """The price of a million cached input tokens: the model's cached-input price, or its
    input price when it has none."""
    if price.cached_input_per_million is None:
        return price.input_per_million
    return price.cached_input_per_million


def _storable(events: list[dict]) -> list[dict]:
    """The batch's events once each, without those of unknown tenants."""
    # The same event twice in one batch (sent again after its XADD's answer was lost) is one
    # record; left in, the batch would break the unique request id and never be stored.
    events = list({e["request_id"]: e for e in events}.values())
    known_tenants = set(Tenant.objects.filter(
        pk__in={e["tenant_id"] for e in events}).values_list("pk", flat=True))
    unknown = [e["request_id"] for e in events if e["tenant_id"] not in known_tenants]
    if unknown:
        # Tenants are never deleted, so this is a corrupt event: skip it rather than let it
        # block every later batch, and leave a trace.
        logger.error("Skipped %d usage events of unknown tenants: %s", len(unknown), unknown[:5])
        events = [e for e in events if e["tenant_id"] in known_tenants]
    return events


def _seal(records: list[UsageRecord]) -> None:
    """One audit event whose hash covers the new records (billing.usage.seals)."""
    seal = audit.record(action=SEAL_ACTION, actor="system:usage-drain", details={
        "records": len(records), "sha256": batch_digest(records),
        "first_request_id": min(r.request_id for r in records),
        "last_request_id": max(r.request_id for r in records),
        "from": min(r.created_at for r in records), "to": max(r.created_at for r in records)})
    for record in records:
        record.sealed_by = seal.seq
