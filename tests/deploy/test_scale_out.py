"""Scale-out, proven: two gateway "pods" (one uvicorn process each, different ports), two
Celery workers and two beats against one PostgreSQL and one Redis.

- rate limits and budgets hold across both gateways (counted in the shared Redis);
- a revoked key is refused by both within a second;
- usage is exact: one record per request served, none lost, none counted twice (two drains);
- each periodic task is sent by one beat only, and run once.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from billing.budgets import services as budgets
from billing.models import UsageRecord
from deployments import services as deployment_services
from gateway import services as gateway_services
from gateway.models import ApiKey
from gateway.usage import STREAM
from models_catalog import services as catalog_services
from portal.beat_scheduler import LAST_RUN_KEY, LOCK_KEY
from tests.factories import TenantFactory
from tests.support.gateway_fixtures import start_portal_server
from tests.support.processes import start_celery, stop

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hello there world"}]}
SENDING = re.compile(r"Sending due task ([\w-]+) \(([\w.]+)\)")
SUCCEEDED = re.compile(r"Task ([\w.]+)\[([0-9a-f-]+)\] succeeded")


def messages(path) -> list[str]:
    """The `message` of every JSON log line in `path`."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line)["message"])
            except (ValueError, KeyError):
                continue
    return found


def post(base: str, token: str) -> requests.Response:
    return requests.post(base + "/v1/chat/completions", json=CHAT, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def cluster_of_processes(tmp_path, upstream):
    """The data first (the gateways load it at start), then every process; all stopped, by
    process group, however the test ends."""
    actor = "system:test"
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(STREAM, LOCK_KEY, LAST_RUN_KEY, "celery")
    tenant = TenantFactory(slug="acme", name="Acme Research")
    chat = catalog_services.model_create(actor=actor, slug="chat-small", name="Chat Small",
                                         task="chat")
    deployment_services.external_endpoint_register(actor=actor, model=chat, base_url=upstream)
    keys = {name: gateway_services.apikey_create(actor=actor, tenant=tenant, name=name, **extra)
            for name, extra in (("limited", {"rpm_limit": 10}), ("budgeted", {}),
                                ("revoked", {}), ("plain", {}))}
    database = dict(connection.settings_dict)
    # A lease long enough that a beat starved of CPU on a busy machine keeps it: this test is
    # about one sender, not about hand-overs (tests/portal/test_beat_leader.py is).
    env = {"BEAT_LEADER_LOCK_SECONDS": "10", "LOG_FORMAT": "json"}
    processes, gateways = [], []
    try:
        for _ in range(2):
            server = start_portal_server(database, settings.REDIS_URL, workers=1, **env)
            processes.append(server.process)
            gateways.append(server.url)
        logs = {}
        for name in ("worker-a", "worker-b"):
            logs[name] = tmp_path / f"{name}.log"
            processes.append(start_celery(
                "worker", database, settings.REDIS_URL, logs[name], "--pool", "solo",
                "--hostname", f"{name}@%h", "--without-heartbeat", "--without-gossip",
                "--without-mingle", **env))
        for name in ("beat-a", "beat-b"):
            logs[name] = tmp_path / f"{name}.log"
            processes.append(start_celery(
                "beat", database, settings.REDIS_URL, logs[name], "--schedule",
                str(tmp_path / f"{name}-schedule"), **env))
        yield {"tenant": tenant, "keys": keys, "gateways": gateways, "logs": logs,
               "actor": actor, "beats": processes[-2:]}
    finally:
        for process in processes:
            stop(process)
        client.delete(LOCK_KEY, LAST_RUN_KEY)


def wait_for_a_fresh_minute(needed: int = 15) -> None:
    """Rate limits count per clock minute: a burst must not straddle two."""
    second = datetime.now(UTC).second
    if second > 60 - needed:
        time.sleep(60 - second + 0.2)


def test_two_gateways_two_workers_two_beats(cluster_of_processes):
    c = cluster_of_processes
    a, b = c["gateways"]
    served: list[str] = []  # request ids answered 200

    def call(base, name):
        response = post(base, c["keys"][name][1])
        if response.status_code == 200:
            served.append(response.headers["x-request-id"])
        return response

    # --- a rate limit of 10 a minute holds across both gateways ------------------------
    wait_for_a_fresh_minute()
    statuses = [call(a if i % 2 else b, "limited").status_code for i in range(30)]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses

    # --- a budget consumed through one gateway blocks the other -------------------------
    assert call(a, "plain").status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not UsageRecord.objects.exists():
        time.sleep(0.2)  # beat → a worker drains it
    per_request = UsageRecord.objects.values_list("input_tokens", "output_tokens").first()
    assert per_request, "the beat-driven drain stored nothing"
    per_request = sum(per_request)
    budget_key = ApiKey.objects.get(name="budgeted")
    budgets.budget_create(actor=c["actor"], tenant=c["tenant"], name="Cap", unit="tokens",
                          amount=Decimal(per_request * 5), action="block",
                          api_key_id=budget_key.pk)
    time.sleep(1)  # both gateways reload the blocking budgets
    admitted = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = call(a, "budgeted")
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "insufficient_quota"
            break
        assert response.status_code == 200
        admitted += 1
        time.sleep(0.1)
    assert admitted >= 5, "the budget blocked before it was used up"
    # The budget's counter trails by the drain (beat every 2 s); at 10 requests a second the
    # overshoot stays within a few seconds' worth (README "Budgets and statements").
    assert admitted <= 5 + 40, admitted
    refused_by_b = call(b, "budgeted")
    assert refused_by_b.status_code == 429
    assert refused_by_b.json()["error"]["code"] == "insufficient_quota"

    # --- a revoked key is refused by both gateways within a second ----------------------
    assert call(a, "revoked").status_code == 200 and call(b, "revoked").status_code == 200
    gateway_services.apikey_revoke(actor=c["actor"], key=ApiKey.objects.get(name="revoked"))
    revoked_at = time.monotonic()
    refused_after = {}
    while len(refused_after) < 2 and time.monotonic() - revoked_at < 5:
        for base in (a, b):
            if base not in refused_after and call(base, "revoked").status_code == 401:
                refused_after[base] = time.monotonic() - revoked_at
        time.sleep(0.02)
    assert set(refused_after) == {a, b}, refused_after
    assert max(refused_after.values()) < 1.0, refused_after

    # --- more traffic on both, then usage is exact ---------------------------------------
    for i in range(40):
        assert call(a if i % 2 else b, "plain").status_code == 200
    deadline = time.monotonic() + 60
    client = redis.Redis.from_url(settings.REDIS_URL)
    while time.monotonic() < deadline and (
            UsageRecord.objects.count() < len(served) or client.xlen(STREAM)):
        time.sleep(0.5)
    records = list(UsageRecord.objects.values_list("request_id", flat=True))
    duplicates = [rid for rid, n in Counter(records).items() if n > 1]
    assert duplicates == []
    assert set(records) == set(served), (len(records), len(served))
    assert len(records) == len(served)

    # --- each periodic task was sent by one beat only, and run once ----------------------
    def drains_sent_so_far() -> int:
        return sum(1 for name in ("beat-a", "beat-b") for m in messages(c["logs"][name])
                   if "Sending due task gateway-drain-usage" in m)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and drains_sent_so_far() < 5:
        time.sleep(0.5)  # every 2 s: enough rounds for a second beat to have cut in
    for beat in c["beats"]:
        stop(beat)
    time.sleep(3)  # the workers finish what was queued
    sent = {name: [m for m in messages(c["logs"][name]) if SENDING.search(m)]
            for name in ("beat-a", "beat-b")}
    senders = [name for name, lines in sent.items() if lines]
    assert len(senders) == 1, {name: len(lines) for name, lines in sent.items()}
    leader_lines = messages(c["logs"][senders[0]])
    assert any("holding the leader lock" in m for m in leader_lines)
    drains_sent = sum(1 for m in sent[senders[0]] if "gateway-drain-usage" in m)
    assert drains_sent >= 5
    ran = [SUCCEEDED.search(m).groups() for name in ("worker-a", "worker-b")
           for m in messages(c["logs"][name]) if SUCCEEDED.search(m)]
    drain_ids = [task_id for task, task_id in ran if task == "gateway.tasks.drain_usage"]
    assert len(drain_ids) == len(set(drain_ids)), "a drain task ran twice"
    assert len(drain_ids) <= drains_sent
    assert drains_sent - len(drain_ids) <= 2  # at most the last ones, expired or in flight
