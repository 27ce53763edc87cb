"""Blocking budgets through the real gateway (uvicorn, two workers) and the real drain."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
import requests
from django.conf import settings

from billing.budgets import services as budgets
from billing.budgets.counters import budget_consumption, budget_reconcile, counter_key
from billing.budgets.gateway import BudgetRule
from billing.models import UsageRecord
from portal import dates
from portal.dates import month_start
from tests.support.gateway_fixtures import drained

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hello there world"}]}
RELOAD = 0.8  # every worker polls the configuration version every 250 ms


def call(served, token=None):
    return requests.post(served.base + "/chat/completions", json=CHAT, timeout=10,
                         headers={"Authorization": f"Bearer {token or served.token}"})


def tokens_per_request(served) -> int:
    assert call(served).status_code == 200
    assert drained(1) == 1
    record = UsageRecord.objects.get()
    return record.input_tokens + record.output_tokens


def test_blocking_budget_answers_insufficient_quota_until_raised(served):
    per_request = tokens_per_request(served)
    budget = budgets.budget_create(actor=served.actor, tenant=served.tenant, name="Hard cap",
                                   unit="tokens", amount=Decimal(per_request * 3),
                                   action="block")
    time.sleep(RELOAD)
    statuses = []
    for _ in range(6):
        statuses.append(call(served).status_code)
        drained(1 if statuses[-1] == 200 else 0, timeout=0.5)
    # One request before the budget existed, then two more reach 100 %; the rest are refused.
    assert statuses == [200, 200, 429, 429, 429, 429]
    refused = call(served)
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "message": refused.json()["error"]["message"], "type": "insufficient_quota",
        "param": None, "code": "insufficient_quota"}
    assert "Hard cap" in refused.json()["error"]["message"]
    # Refused requests cost nothing and are not metered as usage.
    assert UsageRecord.objects.count() == 3

    budgets.budget_update(actor=served.actor, budget=budget, amount=Decimal(per_request * 10))
    time.sleep(RELOAD)
    assert [call(served).status_code for _ in range(4)] == [200] * 4


def test_a_new_period_starts_unblocked(served):
    budget = budgets.budget_create(actor=served.actor, tenant=served.tenant, name="Monthly cap",
                                   unit="tokens", amount=Decimal(10), action="block")
    client = redis.Redis.from_url(settings.REDIS_URL)
    now = datetime.now(UTC)
    last_month = month_start(month_start(now.date()) - timedelta(days=1))
    # Last month's counter is far over the limit; this month's is empty.
    client.set(counter_key(budget.pk, last_month), 10**6)
    time.sleep(RELOAD)
    assert call(served).status_code == 200
    client.set(counter_key(budget.pk, month_start(now.date())), 10)
    assert call(served).status_code == 429
    # The gateway's own period arithmetic: the first instant of next month uses a new counter.
    rule = BudgetRule(id=budget.pk, name="x", tenant_id=1, api_key_id=None, model_id=None,
                      monthly=True, start=0, end=0, limit=10)
    next_month = dates.next_month(month_start(now.date()))
    first_instant = datetime(next_month.year, next_month.month, 1, tzinfo=UTC).timestamp()
    assert rule.counter_key(first_instant) == counter_key(budget.pk, next_month)
    assert rule.counter_key(first_instant - 0.001) == counter_key(budget.pk,
                                                                  month_start(now.date()))


def test_a_budget_on_another_key_or_model_does_not_block(served):
    from gateway import services as gateway_services

    other_key, other_token = gateway_services.apikey_create(actor=served.actor,
                                                            tenant=served.tenant, name="other")
    budget = budgets.budget_create(actor=served.actor, tenant=served.tenant, name="Other key",
                                   unit="tokens", amount=Decimal(1), action="block",
                                   api_key_id=other_key.pk)
    redis.Redis.from_url(settings.REDIS_URL).set(
        counter_key(budget.pk, month_start(datetime.now(UTC).date())), 5)
    time.sleep(RELOAD)
    assert call(served).status_code == 200
    assert call(served, other_token).status_code == 429


def test_overshoot_is_bounded_by_the_requests_admitted_before_the_drain(served):
    """The documented bound: a request is admitted while the drained counter is below the
    limit, so the overshoot is at most the requests admitted since the last drain (here:
    `CONCURRENCY` simultaneous ones between drains) × the tokens of one request."""
    per_request = tokens_per_request(served)
    limit = per_request * 20
    budget = budgets.budget_create(actor=served.actor, tenant=served.tenant, name="Cap",
                                   unit="tokens", amount=Decimal(limit), action="block")
    budget_reconcile(budget=budget)
    time.sleep(RELOAD)
    concurrency = 8
    admitted_rounds = []
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(20):
            statuses = list(pool.map(lambda _: call(served).status_code, range(concurrency)))
            assert set(statuses) <= {200, 429}
            admitted = statuses.count(200)
            admitted_rounds.append(admitted)
            drained(admitted)
            if admitted == 0:
                break
    consumed = budget_consumption(budget)["consumed"]
    assert admitted_rounds[-1] == 0, "the budget never blocked"
    assert consumed >= limit
    assert consumed - limit < concurrency * per_request
    assert consumed == sum(r.input_tokens + r.output_tokens
                           for r in UsageRecord.objects.all())
