"""Faults lose nothing: Redis restarted under gateway load.

A private redis-server (its own port and directory, append-only file fsynced on every write, as
production should run it) behind a real gateway (uvicorn, two workers) under load from real
clients; the server is killed with SIGKILL and started again. Requests keep being served, or
get a clear 503, and every request served with 200 becomes exactly one usage record.
"""

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import hiredis
import orjson
import pytest
import redis
import requests
from django.db import connection

from billing.models import UsageRecord
from billing.usage.drain import drain_usage_stream
from billing.usage.services import usage_records_ingest
from deployments import services as deployment_services
from gateway import services as gateway_services
from gateway.redis_pipe import PipelinedRedis
from gateway.usage import STREAM, UsageRecorder
from models_catalog import services as catalog_services
from tests.factories import TenantFactory
from tests.support.gateway_fixtures import start_portal_server, wait_for
from tests.support.processes import free_port, stop

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}


class PrivateRedis:
    """A redis-server of this test's own: never the machine's (6379)."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.directory), "--save", "", "--appendonly", "yes", "--appendfsync",
             "always", "--logfile", str(self.directory / "redis.log")],
            start_new_session=True)
        client = redis.Redis.from_url(self.url)

        def ready():
            try:
                return client.ping()
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        assert wait_for(ready, timeout=20), "the private redis-server did not start"

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path, settings):
    server = PrivateRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url  # the portal's notifications and the drain use it too
    yield server
    stop(server.process)


@pytest.fixture
def gateway_on_private_redis(private_redis, upstream):
    actor = "system:test"
    tenant = TenantFactory(slug="acme", name="Acme Research")
    chat = catalog_services.model_create(actor=actor, slug="chat-small", name="Chat Small",
                                         task="chat")
    deployment_services.external_endpoint_register(actor=actor, model=chat, base_url=upstream)
    _key, steady = gateway_services.apikey_create(actor=actor, tenant=tenant, name="steady")
    # A key with a (generous) rate limit needs Redis for every request.
    _key, limited = gateway_services.apikey_create(actor=actor, tenant=tenant, name="limited",
                                                   rpm_limit=1_000_000)
    server = start_portal_server(dict(connection.settings_dict), private_redis.url)
    yield SimpleNamespace(base=server.url + "/v1", steady=steady, limited=limited)
    stop(server.process)


def test_redis_restarted_under_load_loses_and_doubles_nothing(private_redis,
                                                              gateway_on_private_redis):
    served = gateway_on_private_redis
    outcomes = []  # (key name, status, request id, error code, monotonic time)
    done = threading.Event()

    def client(name: str, token: str) -> None:
        session = requests.Session()
        while not done.is_set():
            response = session.post(served.base + "/chat/completions", json=CHAT, timeout=30,
                                    headers={"Authorization": f"Bearer {token}"})
            code = None if response.status_code == 200 else response.json()["error"]["code"]
            outcomes.append((name, response.status_code, response.headers.get("x-request-id"),
                             code, time.monotonic()))

    def warm_up():
        response = requests.post(served.base + "/chat/completions", json=CHAT, timeout=10,
                                 headers={"Authorization": f"Bearer {served.steady}"})
        outcomes.append(("steady", response.status_code, response.headers.get("x-request-id"),
                         None, time.monotonic()))
        return response.status_code == 200

    assert wait_for(warm_up, timeout=10)
    with ThreadPoolExecutor(max_workers=6) as pool:
        loads = [pool.submit(client, name, token) for name, token in
                 [("steady", served.steady)] * 3 + [("limited", served.limited)] * 3]
        time.sleep(3)
        private_redis.kill()
        killed_at = time.monotonic()
        time.sleep(3)
        private_redis.start()
        restarted_at = time.monotonic()
        time.sleep(3)
        done.set()
        for load in loads:
            load.result()

    statuses = Counter((name, status, code) for name, status, _, code, _ in outcomes)
    ok = {request_id for _, status, request_id, _, _ in outcomes if status == 200}
    during_outage = sum(1 for _, status, _, _, at in outcomes
                        if status == 200 and killed_at < at < restarted_at)
    # Every answer is a 200 or a clear 503; the key without limits never needed Redis.
    assert set(statuses) <= {("steady", 200, None), ("limited", 200, None),
                             ("limited", 503, "rate_limiter_unavailable")}, statuses
    assert statuses[("limited", 503, "rate_limiter_unavailable")] > 0
    assert during_outage > 0

    # What the workers buffered during the outage reaches the stream once Redis is back.
    stream = redis.Redis.from_url(private_redis.url)

    def streamed() -> list[str]:
        return [orjson.loads(fields[b"e"])["request_id"]
                for _id, fields in stream.xrange(STREAM)]

    assert wait_for(lambda: ok <= set(streamed()), timeout=30), "usage events are missing"
    in_stream = Counter(streamed())
    while drain_usage_stream():
        pass
    records = list(UsageRecord.objects.values_list("request_id", "status_code"))
    recorded = {request_id for request_id, _ in records}
    print(f"\nRedis restart under load: {len(outcomes)} requests, {len(ok)} served with 200 "
          f"({during_outage} while Redis was down), "
          f"{statuses[('limited', 503, 'rate_limiter_unavailable')]} answered 503; "
          f"{sum(in_stream.values())} stream entries for {len(in_stream)} requests "
          f"({sum(in_stream.values()) - len(in_stream)} sent twice, deduplicated); "
          f"{len(records)} usage records: {len(ok - recorded)} lost, "
          f"{len(records) - len(recorded)} counted twice, {len(recorded - ok)} unexplained.")
    assert recorded == ok
    assert len(records) == len(ok)
    assert {status for _, status in records} == {200}


# --- the flusher and the drain, one fault at a time ----------------------------------------


def run(coroutine):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def redis_that_dies_after(replies: int):
    """A Redis stand-in that answers the first `replies` commands, then drops the connection,
    as a Redis killed in the middle of a pipelined batch does."""
    received = []

    async def handle(reader, writer):
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                received.append(command)
                if len(received) > replies:
                    writer.close()
                    return
                writer.write(b"$3\r\n1-%d\r\n" % len(received))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, received


def test_only_what_redis_did_not_confirm_is_sent_again():
    async def scenario():
        server, received = await redis_that_dies_after(replies=4)
        port = server.sockets[0].getsockname()[1]
        recorder = UsageRecorder(PipelinedRedis(f"redis://127.0.0.1:{port}/0"))
        for number in range(10):
            recorder.record({"request_id": f"req_{number}"}, None, 0)
        sent_all = await recorder.flush()
        left = [orjson.loads(payload)["request_id"] for payload in recorder._events]
        server.close()
        return sent_all, len(received), left

    sent_all, received, left = run(scenario())
    assert not sent_all and received >= 5
    # The four confirmed events are not sent again (they would be counted twice in the stream);
    # the unconfirmed ones wait for the next flush.
    assert left == [f"req_{number}" for number in range(4, 10)]


def test_an_event_twice_in_one_drained_batch_is_one_record(tenant):
    event = {"request_id": "req_twice", "ts": time.time(), "tenant_id": tenant.pk,
             "key_id": None, "model_id": None, "model": "chat-small", "deployment_id": None,
             "endpoint": "chat/completions", "status": 200, "streamed": False,
             "input_tokens": 3, "output_tokens": 5, "estimated": False, "latency_ms": 4,
             "ttft_ms": 4}
    assert usage_records_ingest(events=[event, dict(event)]) == 1
    assert UsageRecord.objects.filter(request_id="req_twice").count() == 1
