"""Closing a month: its statement's lines are stored and never change again (audited)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import transaction

import audit
from billing.statements.models import LineKind, Statement, StatementLine
from billing.statements.selectors import statement_get, statements_pending
from portal.api import ApplicationError
from portal.dates import month_start, next_month
from tenants.models import Tenant


@transaction.atomic
def statement_close(*, actor, tenant: Tenant, period_start: date) -> Statement:
    period_start = month_start(period_start)
    if next_month(period_start) > datetime.now(UTC).date():
        raise ApplicationError(f"{period_start:%B %Y} is not over yet; close it from "
                               f"{next_month(period_start):%d %B %Y} on.")
    # One closer at a time per tenant (a second one then finds the statement closed).
    Tenant.objects.select_for_update().get(pk=tenant.pk)
    if Statement.objects.filter(tenant=tenant, period_start=period_start).exists():
        raise ApplicationError(f"{tenant.name}'s statement for {period_start:%B %Y} is "
                               "already closed; it never changes.")
    data = statement_get(tenant=tenant, period_start=period_start)
    statement = Statement.objects.create(
        tenant=tenant, period_start=period_start, closed_at=datetime.now(UTC),
        closed_by=getattr(actor, "audit_label", str(actor)))
    StatementLine.objects.bulk_create([StatementLine(
        statement=statement, kind=line.kind, source_period=line.source_period,
        model_slug=line.model_slug, currency=line.currency,
        input_price_per_million=line.input_price_per_million,
        output_price_per_million=line.output_price_per_million, requests=line.requests,
        input_tokens=line.input_tokens, output_tokens=line.output_tokens, amount=line.amount,
        cached_input_price_per_million=line.cached_input_price_per_million,
        cached_input_tokens=line.cached_input_tokens, reasoning_tokens=line.reasoning_tokens)
        for line in data.lines])
    audit.record(action="billing.statement_close", actor=actor, tenant=tenant, target=statement,
                 details={"period": f"{period_start:%Y-%m}", "lines": len(data.lines),
                          "corrections": sum(1 for line in data.lines
                                             if line.kind == LineKind.CORRECTION),
                          "totals": {t["currency"] or "unpriced": str(t["amount"])
                                     for t in data.totals}})
    return statement


def statements_close(*, actor, period_start: date) -> list[Statement]:
    """Close the month for every tenant that has usage in it or corrections due."""
    return [statement_close(actor=actor, tenant=data.tenant, period_start=data.period_start)
            for data in statements_pending(period_start=period_start)]
