import os
import signal
import time
from datetime import timedelta
from io import StringIO

import pytest
import redis
import requests
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import UsageRecord
from billing.usage import drain
from gateway import services
from gateway.models import ApiKey
from gateway.usage import STREAM
from portal.api import ApplicationError
from tenants import services as tenant_services
from tests.support.gateway_fixtures import drained, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}


def call(served, token, body=CHAT):
    return requests.post(served.base + "/chat/completions", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


def test_revoked_key_is_refused_by_every_worker_within_a_second(served):
    assert call(served, served.token).status_code == 200
    services.apikey_revoke(actor=served.actor, key=served.key)
    revoked_at = time.monotonic()
    time.sleep(1.0)
    # Many connections, so both uvicorn worker processes answer some of them.
    statuses = [call(served, served.token).status_code for _ in range(20)]
    assert statuses == [401] * 20
    assert time.monotonic() - revoked_at < 3
    error = call(served, served.token).json()["error"]
    assert "revoked" in error["message"]


def test_expired_key_is_refused(served):
    key, token = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                        name="short", expires_at=timezone.now()
                                        + timedelta(seconds=2))
    assert call(served, token).status_code == 200
    time.sleep(2.1)
    response = call(served, token)
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_rotation_keeps_the_old_secret_for_the_grace_period(served):
    key, new_token = services.apikey_rotate(actor=served.actor, key=served.key,
                                            grace=timedelta(hours=1))
    assert new_token != served.token and new_token.startswith(f"smp_{key.prefix}_")
    time.sleep(0.6)
    assert call(served, new_token).status_code == 200
    assert call(served, served.token).status_code == 200
    _key, newest = services.apikey_rotate(actor=served.actor, key=key, grace=timedelta(0))
    time.sleep(0.6)
    assert call(served, newest).status_code == 200
    assert call(served, new_token).status_code == 401


def test_client_network_allow_list(served):
    _key, outside = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                           name="office", allowed_networks=["10.0.0.0/8"])
    _key, inside = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                          name="local", allowed_networks=["127.0.0.0/8"])
    response = call(served, outside)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ip_not_allowed"
    assert call(served, inside).status_code == 200


def test_key_limited_to_some_models(served):
    _key, token = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                         name="embed only", allowed_models=[served.embed])
    models = requests.get(served.base + "/models", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}).json()["data"]
    assert [m["id"] for m in models] == ["embed-small"]
    assert call(served, token).json()["error"]["code"] == "model_not_found"


def test_requests_per_minute_limit_answers_429_with_headers(served):
    _key, token = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                         name="limited", rpm_limit=2)
    first = call(served, token)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert call(served, token).status_code == 200
    refused = call(served, token)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert call(served, served.token).status_code == 200  # other keys are not affected


def test_tenant_tokens_per_minute_limit(served):
    tenant_services.tenant_update(actor=served.actor, tenant=served.tenant, rate_limit_tpm=15)
    time.sleep(0.6)
    assert call(served, served.token).status_code == 200  # 1 + 8 tokens
    assert call(served, served.token).status_code == 200  # 18 ≥ 15 once counted
    refused = wait_for(lambda: (r := call(served, served.token)).status_code == 429 and r)
    assert refused.json()["error"]["message"].startswith("Rate limit reached for your organis")
    assert refused.headers["x-ratelimit-limit-tokens"] == "15"


def test_key_quota_is_enforced(served):
    tenant_services.tenant_update(actor=served.actor, tenant=served.tenant, max_api_keys=2)
    services.apikey_create(actor=served.actor, tenant=served.tenant, name="second")
    with pytest.raises(ApplicationError, match="its quota"):
        services.apikey_create(actor=served.actor, tenant=served.tenant, name="third")


def test_expiry_policy(served, settings):
    settings.GATEWAY_KEY_EXPIRY_REQUIRED = True
    settings.GATEWAY_KEY_MAX_DAYS = 30
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="must expire"):
        services.apikey_create(actor=served.actor, tenant=served.tenant, name="forever")
    with pytest.raises(ValidationError, match="at most 30 days"):
        services.apikey_create(actor=served.actor, tenant=served.tenant, name="long",
                               expires_at=timezone.now() + timedelta(days=31))


def test_apikey_create_command_prints_a_working_secret(served):
    out = StringIO()
    call_command("apikey_create", "--tenant", "acme", "--name", "ci", "--models", "chat-small",
                 "--expires", "30d", "--rpm", "100", stdout=out)
    token = out.getvalue().strip()
    key = ApiKey.objects.get(name="ci")
    assert token.startswith(f"smp_{key.prefix}_") and key.secret_hash != token
    assert key.expires_at > timezone.now() + timedelta(days=29)
    assert call(served, token).status_code == 200
    with pytest.raises(CommandError, match="can't use: nope"):
        call_command("apikey_create", "--tenant", "acme", "--name", "x", "--models", "nope")


def test_last_used_is_recorded_from_usage(served):
    call(served, served.token)
    drained(1)
    served.key.refresh_from_db()
    assert served.key.last_used_at is not None


def test_usage_survives_killed_gateway_workers_and_a_crashed_drainer(served, gateway_server,
                                                                     monkeypatch):
    for _ in range(10):
        assert call(served, served.token).status_code == 200
    time.sleep(0.3)  # past the flush interval: the events are in Redis now
    workers = [int(pid) for pid in open(
        f"/proc/{gateway_server.process.pid}/task/{gateway_server.process.pid}/children"
    ).read().split()]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # uvicorn's supervisor starts new workers

    # A drainer claims the events and dies before acknowledging them.
    client = redis.Redis.from_url(settings.REDIS_URL)
    drain._client()
    claimed = client.xreadgroup(drain.GROUP, "crashed-drainer", {STREAM: ">"}, count=1000)
    assert len(claimed[0][1]) == 10
    assert drain.drain_usage_stream() == 0  # nothing new; the claimed ones are not yet stale
    monkeypatch.setattr(drain, "STALE_AFTER_MS", 0)
    assert drain.drain_usage_stream() == 10
    assert drain.drain_usage_stream() == 0
    assert UsageRecord.objects.count() == 10
    # A redelivered event is stored once.
    from billing.usage.services import usage_records_ingest

    event = {"request_id": UsageRecord.objects.first().request_id, "ts": time.time(),
             "tenant_id": served.tenant.pk, "key_id": served.key.pk,
             "model_id": served.chat.pk, "model": "chat-small", "deployment_id": None,
             "endpoint": "chat/completions", "status": 200, "streamed": False,
             "input_tokens": 1, "output_tokens": 8, "estimated": False, "latency_ms": 1,
             "ttft_ms": 1}
    assert usage_records_ingest(events=[event]) == 0
    assert UsageRecord.objects.count() == 10
    # uvicorn's supervisor replaces the killed workers; the gateway serves again.
    def serves_again():
        try:
            return call(served, served.token).status_code == 200
        except requests.RequestException:
            return False

    assert wait_for(serves_again, timeout=30)


def test_rate_limits_survive_redis_forgetting_the_script(served):
    """After a Redis restart the Lua script is gone (NOSCRIPT): the gateway reloads it."""
    _key, token = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                         name="limited", rpm_limit=100)
    assert call(served, token).status_code == 200
    redis.Redis.from_url(settings.REDIS_URL).script_flush()
    for _ in range(4):  # both workers meet the missing script
        response = call(served, token)
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit-requests"] == "100"
