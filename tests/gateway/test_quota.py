"""`GET /v1/quota` and the `x-budget-*` headers, through the real gateway (uvicorn, two
workers), the real Redis counters and billing's real usage drain."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from billing.budgets import services as budgets
from billing.models import UsageRecord
from gateway import selectors, services
from models_catalog.models import ModelPrice
from tenants import services as tenant_services
from tests.factories import TenantFactory
from tests.support.gateway_fixtures import drained

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hello there world"}]}
RELOAD = 0.8  # every worker polls the configuration version every 250 ms


def call(served, token):
    return requests.post(served.base + "/chat/completions", json=CHAT, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


def quota(served, token):
    return requests.get(served.base + "/quota", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def within_one_minute_window():
    """Rate-limit windows are calendar minutes: start a test early in one."""
    second = time.time() % 60
    if second > 45:
        time.sleep(60.5 - second)


@pytest.fixture
def limited(served):
    ModelPrice.objects.create(model=served.chat, input_per_million=Decimal("2"),
                              output_per_million=Decimal("6"), currency="EUR",
                              effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    tenant_services.tenant_update(actor=served.actor, tenant=served.tenant, rate_limit_rpm=100,
                                  rate_limit_tpm=5000)
    key, token = services.apikey_create(actor=served.actor, tenant=served.tenant, name="app",
                                        rpm_limit=10, tpm_limit=1000)
    tokens_budget = budgets.budget_create(actor=served.actor, tenant=served.tenant,
                                          name="Tenant tokens", unit="tokens",
                                          amount=Decimal(2000), action="notify")
    money_budget = budgets.budget_create(actor=served.actor, tenant=served.tenant,
                                         name="App spend", unit="currency", currency="EUR",
                                         amount=Decimal(5), api_key_id=key.pk, action="block")
    time.sleep(RELOAD)
    return key, token, tokens_budget, money_budget


def test_a_key_reads_exactly_what_it_and_its_tenant_have_left(served, limited):
    key, token, tokens_budget, money_budget = limited
    within_one_minute_window()
    for _ in range(3):
        assert call(served, token).status_code == 200
    assert call(served, served.token).status_code == 200  # the tenant's other key
    assert drained(4) == 4
    mine = list(UsageRecord.objects.filter(api_key_id=key.pk))
    assert len(mine) == 3
    my_tokens = sum(r.input_tokens + r.output_tokens for r in mine)
    all_tokens = sum(r.input_tokens + r.output_tokens for r in UsageRecord.objects.all())
    my_cost = sum(r.cost for r in mine)
    assert my_cost > 0

    answer = quota(served, token)
    assert answer.status_code == 200
    document = answer.json()
    assert document["object"] == "quota"
    assert document["key"]["id"] == key.pk
    assert document["key"]["rate_limits"]["requests"] == {
        "limit": 10, "used": 3, "remaining": 7,
        "reset_seconds": document["key"]["rate_limits"]["requests"]["reset_seconds"]}
    assert document["key"]["rate_limits"]["tokens"]["used"] == my_tokens
    assert document["key"]["rate_limits"]["tokens"]["remaining"] == 1000 - my_tokens
    tenant_windows = document["tenant"]["rate_limits"]
    assert document["tenant"]["slug"] == "acme"
    assert (tenant_windows["requests"]["used"], tenant_windows["requests"]["remaining"]) == (
        4, 96)
    assert tenant_windows["tokens"]["remaining"] == 5000 - all_tokens
    by_name = {b["name"]: b for b in document["budgets"]}
    assert by_name["Tenant tokens"] == {
        "id": tokens_budget.pk, "name": "Tenant tokens", "scope": "tenant", "model": None,
        "unit": "tokens", "currency": None, "limit": 2000, "used": all_tokens,
        "remaining": 2000 - all_tokens, "blocks": False,
        "resets_at": by_name["Tenant tokens"]["resets_at"]}
    spend = by_name["App spend"]
    assert (spend["scope"], spend["unit"], spend["currency"], spend["blocks"]) == (
        "key", "money", "EUR", True)
    assert Decimal(spend["used"]) == my_cost
    assert Decimal(spend["remaining"]) == Decimal(5) - my_cost
    assert document["budget"]["remaining_tokens"] == 2000 - all_tokens
    assert Decimal(document["budget"]["remaining_amount"]) == Decimal(5) - my_cost
    assert document["budget"]["currency"] == "EUR"
    # The next month starts at midnight UTC on its first day.
    assert spend["resets_at"].endswith("-01T00:00:00Z")
    # Reading the quota counts against nothing.
    assert quota(served, token).json()["key"]["rate_limits"]["requests"]["used"] == 3
    assert answer.headers["x-budget-remaining-tokens"] == str(2000 - all_tokens)

    # Every request answers the same figures in its headers (before its own usage).
    response = call(served, token)
    assert response.headers["x-ratelimit-remaining-requests"] == "6"
    assert response.headers["x-budget-remaining-tokens"] == str(2000 - all_tokens)
    assert response.headers["x-budget-limit-tokens"] == "2000"
    assert Decimal(response.headers["x-budget-remaining-amount"]) == Decimal(5) - my_cost
    assert response.headers["x-budget-limit-amount"] == "5"
    assert response.headers["x-budget-currency"] == "EUR"
    assert response.headers["x-budget-reset"] == spend["resets_at"]
    # The other key is not under the key's money budget: only the tenant's token budget.
    other = call(served, served.token)
    assert "x-budget-remaining-amount" not in other.headers
    assert other.headers["x-budget-remaining-tokens"] == str(2000 - all_tokens)

    # The portal's pages read the same figures.
    assert drained(2) == 2
    portal = selectors.apikey_quota(key=key)
    again = quota(served, token).json()
    for document in (portal, again):
        document["key"]["rate_limits"]["requests"].pop("reset_seconds")
        document["key"]["rate_limits"]["tokens"].pop("reset_seconds")
        document["tenant"]["rate_limits"]["requests"].pop("reset_seconds")
        document["tenant"]["rate_limits"]["tokens"].pop("reset_seconds")
    assert portal == again


def test_a_spent_blocking_budget_refuses_with_the_figures(served, limited):
    key, token, _tokens_budget, money_budget = limited
    budgets.budget_update(actor=served.actor, budget=money_budget, amount=Decimal("0.01"))
    UsageRecord.objects.all().delete()
    import redis
    from django.conf import settings

    from billing.budgets.counters import counter_key
    from billing.budgets.periods import period_of

    start = period_of(money_budget, datetime.now(UTC))[0]
    redis.Redis.from_url(settings.REDIS_URL).set(counter_key(money_budget.pk, start), 10**6)
    time.sleep(RELOAD)
    refused = call(served, token)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.headers["x-budget-remaining-amount"] == "0"
    assert quota(served, token).json()["budget"]["remaining_amount"] == "0"


def test_another_tenants_key_never_sees_these_figures(served, limited):
    key, token, _tokens_budget, _money_budget = limited
    for _ in range(2):
        assert call(served, token).status_code == 200
    assert drained(2) == 2
    other = TenantFactory(slug="globex", name="Globex")
    _other_key, other_token = services.apikey_create(actor=served.actor, tenant=other,
                                                     name="theirs", rpm_limit=5)
    time.sleep(RELOAD)
    document = quota(served, other_token).json()
    assert document["tenant"]["slug"] == "globex"
    assert document["budgets"] == []
    assert document["budget"] == {"remaining_tokens": None, "remaining_amount": None,
                                  "currency": None, "resets_at": None}
    assert document["key"]["rate_limits"]["requests"]["used"] == 0
    assert document["tenant"]["rate_limits"]["requests"] == {
        "limit": None, "used": None, "remaining": None,
        "reset_seconds": document["tenant"]["rate_limits"]["requests"]["reset_seconds"]}
    response = quota(served, other_token)
    assert not [h for h in response.headers if h.lower().startswith("x-budget")]


def test_rate_limit_refusals_and_model_lists_carry_the_budget_headers(served, limited):
    within_one_minute_window()
    _key, token = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                         name="one a minute", rpm_limit=1)
    time.sleep(RELOAD)
    assert call(served, token).status_code == 200
    refused = call(served, token)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-budget-limit-tokens"] == "2000"
    models = requests.get(served.base + "/models", timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert models.status_code == 200 and models.headers["x-budget-limit-tokens"] == "2000"
    # The key's money budget is another key's: not this one's.
    assert "x-budget-remaining-amount" not in models.headers


def test_quota_needs_a_key_and_a_get(served):
    assert quota(served, "smp_nope_nope").status_code == 401
    refused = requests.post(served.base + "/quota", timeout=10,
                            headers={"Authorization": f"Bearer {served.token}"})
    assert refused.status_code == 405
    assert refused.json()["error"]["message"] == "Use GET for /v1/quota."


def test_the_budget_read_shares_the_rate_limiters_write(settings):
    """BudgetCheck.begin queues its MGET before the rate limiter's EVALSHA: one write to Redis
    (the pipelined connection flushes once per loop turn), one round trip."""
    import asyncio
    import concurrent.futures
    from types import SimpleNamespace

    from billing.budgets.gateway import BudgetRule
    from gateway import ratelimit
    from gateway.quota import BudgetCheck
    from gateway.redis_pipe import PipelinedRedis

    async def scenario():
        redis = PipelinedRedis(settings.REDIS_URL)
        await redis.ensure()
        writes = []
        write = redis._writer.write
        redis._writer.write = lambda data: (writes.append(data), write(data))[1]
        sha = await redis.execute("SCRIPT", "LOAD", ratelimit.LUA)
        writes.clear()
        rule = BudgetRule(id=999_001, name="t", tenant_id=7, api_key_id=None, model_id=None,
                          monthly=True, start=0, end=0, limit=100, blocks=False)
        await redis.execute("SET", rule.counter_key(time.time()), 40)
        writes.clear()
        app = SimpleNamespace(redis=redis, directory=SimpleNamespace(budgets={7: [rule]}))
        key, tenant = SimpleNamespace(id=5), SimpleNamespace(id=7)
        route = SimpleNamespace(model_id=3)
        check = BudgetCheck()
        pending = check.begin(app, key, tenant, route)
        windows = ratelimit.window_keys(5, 7, time.time())
        await redis.execute("EVALSHA", sha, 4, *windows, 10, 0, 0, 0, 120)
        headers = dict(await check.finish(app, pending))
        await redis.close()
        return writes, headers

    # In a thread of its own: an earlier test (Playwright's sync API) may leave an event loop
    # running in this one, where asyncio.run refuses to start.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        writes, headers = pool.submit(asyncio.run, scenario()).result()
    assert len(writes) == 1 and b"MGET" in writes[0] and b"EVALSHA" in writes[0]
    assert headers[b"x-budget-remaining-tokens"] == b"60"
