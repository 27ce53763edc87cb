"""Compliance report section for inference volume, from billing's usage records (registered
by `BillingConfig.ready()`; the report core never imports this app)."""

from __future__ import annotations

from django.db.models import Count, Q, Sum

from audit.reports.sections import Chart, ReportScope, Section, Table, register_section
from billing.usage.models import UsageRecord
from billing.usage.selectors import usage_seals_verify


@register_section("inference_volume", order=40)
def inference_volume(scope: ReportScope) -> Section:
    records = UsageRecord.objects.filter(created_at__gte=scope.period.start,
                                         created_at__lt=scope.period.end)
    if scope.tenant_id is not None:
        records = records.filter(tenant_id=scope.tenant_id)
    # One pass over the month's records: the totals are the sums of the groups.
    by_tenant_model = list(
        records.values("tenant__slug", "model_slug")
        .annotate(requests=Count("id"), input=Sum("input_tokens"), output=Sum("output_tokens"),
                  cached=Sum("cached_input_tokens"), reasoning=Sum("reasoning_tokens"),
                  failed=Count("id", filter=Q(status_code__gte=400)),
                  estimated=Count("id", filter=Q(estimated=True)))
        .order_by("tenant__slug", "model_slug"))
    totals = {name: sum(row[name] or 0 for row in by_tenant_model)
              for name in ("requests", "input", "output", "cached", "reasoning", "failed",
                           "estimated")}
    checked, problems = usage_seals_verify(start=scope.period.start, end=scope.period.end)
    section = Section(
        key="inference_volume",
        title="Inference volume",
        intro=("Requests served through the OpenAI-compatible gateway, per tenant and model, "
               "from the metered usage records (which never contain prompts or answers). "
               "Cached input tokens are part of the input tokens, reasoning tokens part of "
               "the output tokens. "
               "Each batch of records is sealed in the audit chain."),
        figures={"Requests": totals["requests"], "Input tokens": totals["input"],
                 "Cached input tokens": totals["cached"],
                 "Output tokens": totals["output"], "Reasoning tokens": totals["reasoning"],
                 "Failed requests": totals["failed"],
                 "Requests with estimated token counts": totals["estimated"],
                 "Usage batches sealed and verified": checked - len(problems),
                 "Usage batches failing their seal": len(problems)},
        findings=[f"Usage records tampered with: {p.message}." for p in problems[:20]],
    )
    section.tables.append(Table(
        "Requests per tenant and model",
        ["Tenant", "Model", "Requests", "Input tokens", "of them cached", "Output tokens",
         "of them reasoning", "Failed"],
        [[row["tenant__slug"], row["model_slug"], row["requests"], row["input"] or 0,
          row["cached"] or 0, row["output"] or 0, row["reasoning"] or 0, row["failed"]]
         for row in by_tenant_model]))
    per_model: dict[str, int] = {}
    for row in by_tenant_model:
        per_model[row["model_slug"]] = (per_model.get(row["model_slug"], 0) + (row["input"] or 0)
                                        + (row["output"] or 0))
    if per_model:
        section.charts.append(Chart("Tokens per model", list(per_model),
                                    list(per_model.values()), unit="tokens"))
    return section
