"""Usage rollups, dashboards and budget counters on SQLite, where they take their own branch:
rollups summed in Python and upserted row by row, dashboards grouped with one ORM query per
section, budget locks a no-op and budget figures summed from the records when Redis is
absent."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from billing.budgets import counters, periods
from billing.budgets import services as budget_services
from billing.budgets.counters import counter_key
from billing.models import BudgetAlert, UsageRecord
from billing.usage.models import Granularity, UsageRollup
from billing.usage.rollups import rollups_rebuild
from billing.usage.selectors import UsageScope, usage_dashboard
from gateway import services as gateway_services
from portal.dates import month_start
from tests.billing.budget_helpers import event, ingest, make_model

ROLLUP_FIELDS = ["granularity", "bucket", "api_key_id", "model_slug", "requests", "errors",
                 "input_tokens", "output_tokens", "cost", "latency_ms_sum",
                 *[f"lat_{i}" for i in range(12)]]
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def chat(db):
    return make_model()  # 2 EUR / 6 EUR per million tokens: 1000+500 tokens cost 0.005 EUR


@pytest.fixture
def keys(tenant, tenant_admin, developer):
    mine, _ = gateway_services.apikey_create(actor=developer, tenant=tenant, name="dev-key",
                                             owner=developer)
    theirs, _ = gateway_services.apikey_create(actor=tenant_admin, tenant=tenant,
                                               name="admin-key", owner=tenant_admin)
    return mine, theirs


def _failed(record: dict) -> dict:
    return {**record, "status": 502, "latency_ms": 3000}


def test_batches_add_up_in_the_rollups_once_per_record(tenant, chat, keys):
    mine, theirs = keys
    first = [event(tenant, chat, key_id=mine.pk, when=HOUR + timedelta(minutes=n))
             for n in range(3)]
    second = [_failed(event(tenant, chat, key_id=theirs.pk, when=HOUR + timedelta(minutes=n)))
              for n in range(2)] + [event(tenant, chat, key_id=mine.pk, when=HOUR)]

    assert ingest(*first) == 3
    assert ingest(*second) == 3  # the same buckets: added to the rows of the first batch
    assert ingest(*first) == 0  # redelivered: stored once, counted once

    for granularity in Granularity.values:
        rows = {r.api_key_id: r for r in UsageRollup.objects.filter(granularity=granularity)}
        assert set(rows) == {mine.pk, theirs.pk}
        assert (rows[mine.pk].requests, rows[mine.pk].errors) == (4, 0)
        assert (rows[theirs.pk].requests, rows[theirs.pk].errors) == (2, 2)
        assert rows[mine.pk].input_tokens == 4000 and rows[mine.pk].output_tokens == 2000
        assert rows[mine.pk].cost == Decimal("0.02")  # 4 × 0.005 EUR, exactly
        assert rows[theirs.pk].lat_6 == 2  # 1.6–3.2 s
    day = UsageRollup.objects.get(granularity=Granularity.DAY, api_key_id=mine.pk)
    assert day.bucket == HOUR.replace(hour=0)


def test_a_rebuild_recomputes_what_the_drain_added(tenant, chat, keys):
    ingest(*[event(tenant, chat, key_id=keys[n % 2].pk, input_tokens=100 * n,
                   when=HOUR - timedelta(hours=n % 3)) for n in range(1, 10)])
    incremental = sorted(UsageRollup.objects.values_list(*ROLLUP_FIELDS))
    UsageRollup.objects.update(requests=999)  # drifted

    out = StringIO()
    day = HOUR.strftime("%Y-%m-%d")
    call_command("usage_rollups_rebuild", "--since", day, "--until", day, stdout=out)

    assert "from 9 usage records" in out.getvalue()
    assert sorted(UsageRollup.objects.values_list(*ROLLUP_FIELDS)) == incremental
    assert rollups_rebuild(since=HOUR - timedelta(days=5), until=HOUR - timedelta(days=4)) == 0


def test_the_dashboard_sums_the_rollups(tenant, chat, keys):
    mine, theirs = keys
    ingest(*[event(tenant, chat, key_id=mine.pk, when=HOUR) for _ in range(3)],
           _failed(event(tenant, chat, key_id=theirs.pk, when=HOUR)))
    scope = UsageScope(since=HOUR - timedelta(days=1), until=HOUR + timedelta(days=1),
                       granularity="hour", tenant_id=tenant.pk)

    dashboard = usage_dashboard(scope)

    assert dashboard.totals["requests"] == 4 and dashboard.totals["errors"] == 1
    assert dashboard.totals["cost_by_currency"] == {"EUR": Decimal("0.02")}
    assert [(row["bucket"], row["requests"]) for row in dashboard.series] == [(HOUR, 4)]
    assert {row["api_key_id"]: row["requests"] for row in dashboard.by_key} == {
        mine.pk: 3, theirs.pk: 1}
    scope.api_key_ids = [mine.pk]  # a developer: their own keys only
    assert usage_dashboard(scope).totals["requests"] == 3


def test_the_usage_page_renders(client, tenant, tenant_admin, chat, keys):
    ingest(event(tenant, chat, key_id=keys[1].pk))
    client.force_login(tenant_admin)

    page = client.get("/t/acme/usage/")

    assert page.status_code == 200 and "admin-key" in page.content.decode()


def test_budget_counters_follow_the_drain_and_the_reconcile_agrees(
        tenant, tenant_admin, chat, django_capture_on_commit_callbacks):
    assert settings.REDIS_URL  # the session's private Redis
    budget = budget_services.budget_create(actor=tenant_admin, tenant=tenant, name="Monthly",
                                   amount=Decimal("0.02"), currency="EUR")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat), event(tenant, chat))  # 0.010 EUR = 50 %
        ingest(*[event(tenant, chat) for _ in range(3)])  # 0.025 EUR = 125 %
    key = counter_key(budget.pk, month_start(datetime.now(UTC).date()))
    counted = int(redis.Redis.from_url(settings.REDIS_URL).get(key))

    assert counted == int(Decimal("0.025") * periods.MONEY_SCALE)
    assert counters.budget_reconcile(budget=budget) == counted  # summed from the records
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    consumption = counters.budget_consumption(budget)
    assert consumption["consumed"] == Decimal("0.025") and consumption["percent"] == 125


def test_without_redis_budgets_are_counted_from_the_records(tenant, tenant_admin, chat, keys,
                                                            settings):
    """The quickstart without redis-server: no counters; the pages sum the records."""
    settings.REDIS_URL = ""
    money = budget_services.budget_create(actor=tenant_admin, tenant=tenant, name="Monthly",
                                  amount=Decimal("0.04"), currency="EUR")
    tokens = budget_services.budget_create(actor=tenant_admin, tenant=tenant, name="CI tokens",
                                   unit="tokens", amount=Decimal(10000), api_key_id=keys[0].pk)
    ingest(*[event(tenant, chat, key_id=keys[n % 2].pk) for n in range(3)])

    assert UsageRecord.objects.count() == 3
    assert counters.budget_consumption(money)["consumed"] == Decimal("0.015")
    assert counters.budget_consumption(money)["percent"] == 37.5
    assert counters.budget_consumption(tokens)["consumed"] == 3000  # two of the key's requests
    assert counters.budget_reconcile(budget=money) is None  # nothing to reconcile


def test_cached_and_reasoning_tokens_add_up_on_sqlite(tenant, chat, keys):
    mine, _theirs = keys
    cached = {"cached_input_tokens": 600, "reasoning_tokens": 50}
    ingest(*[event(tenant, chat, key_id=mine.pk, when=HOUR) | cached for _ in range(2)])
    row = UsageRollup.objects.get(granularity=Granularity.HOUR, api_key_id=mine.pk)
    assert (row.cached_input_tokens, row.reasoning_tokens) == (1200, 100)
    dashboard = usage_dashboard(UsageScope(since=HOUR - timedelta(days=1),
                                           until=HOUR + timedelta(days=1), granularity="hour",
                                           tenant_id=tenant.pk))
    assert dashboard.totals["cached_input_tokens"] == 1200
    UsageRollup.objects.all().delete()
    rollups_rebuild(since=HOUR, until=HOUR)
    assert UsageRollup.objects.get(granularity=Granularity.HOUR).cached_input_tokens == 1200
