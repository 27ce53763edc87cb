import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from billing.usage.drain import drain_usage_stream
from deployments import services as deployment_services
from gateway import services as gateway_services
from gateway.usage import STREAM
from models_catalog import services as catalog_services
from tests.factories import TenantFactory
from tests.support.processes import free_port, portal_env, start_upstream, stop, wait_until_up

UPSTREAM_TIMEOUT = 3
# What `make run` and the README's production command pass to uvicorn.
SERVER_OPTIONS = ("--lifespan", "on", "--no-access-log", "--http", "portal.server:HttpProtocol",
                  "--no-proxy-headers")


@pytest.fixture(scope="session")
def upstream():
    process, base = start_upstream()
    yield base
    stop(process)


# Limits the session's gateway runs with, small enough to reach in a test.
LIMITS = {"HTTP_HEADER_TIMEOUT": 3, "GATEWAY_BODY_TIMEOUT": 3, "GATEWAY_STREAM_IDLE_TIMEOUT": 2,
          "GATEWAY_MAX_UPSTREAM_BODY_BYTES": 1024 * 1024, "GATEWAY_MAX_STREAM_EVENT_BYTES": 65536}


def start_portal_server(database: dict, redis_url: str, *, options=SERVER_OPTIONS,
                        output=None, workers: int = 2, **env: str) -> SimpleNamespace:
    """The portal's real ASGI server (uvicorn, two worker processes unless told otherwise)
    on loopback; its log goes to `output` (a file) when given."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), *options],
        env=portal_env(database, redis_url, **env), start_new_session=True, stdout=output,
        stderr=subprocess.STDOUT if output else None)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process)
    except BaseException:
        stop(process)
        raise
    return SimpleNamespace(url=url, process=process, port=port)


def start_gateway(database: dict, **extra_env: str) -> SimpleNamespace:
    """The gateway as the suite runs it (the test Redis, the small limits above), up and
    answering; stop it with `stop(server.process)`."""
    return start_portal_server(database, settings.REDIS_URL, **{
        "GATEWAY_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
        **{name: str(value) for name, value in LIMITS.items()}, **extra_env})


@pytest.fixture(scope="session")
def gateway_server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        database = dict(connection.settings_dict)
    server = start_gateway(database)
    yield server
    stop(server.process)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    """Poll until `predicate` returns something other than False/None (a falsy HTTP response
    such as a 503 counts as an answer)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if (result is not None and result is not False) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture
def served(transactional_db, upstream, gateway_server):
    """A tenant with a key, a chat and an embeddings model served by the test upstream."""
    actor = "system:test"
    # Start with an empty usage stream: the previous test's tenants are gone.
    redis.Redis.from_url(settings.REDIS_URL).delete(STREAM)
    tenant = TenantFactory(slug="acme", name="Acme Research")
    chat = catalog_services.model_create(actor=actor, slug="chat-small", name="Chat Small",
                                         task="chat", provider="test")
    embed = catalog_services.model_create(actor=actor, slug="embed-small", name="Embed Small",
                                          task="embeddings")
    completion = catalog_services.model_create(actor=actor, slug="completion-small",
                                               name="Completion Small", task="completion")
    for model in (chat, embed, completion):
        deployment = deployment_services.external_endpoint_register(actor=actor, model=model,
                                                                    base_url=upstream)
        assert deployment.status == "ready", deployment.status_reason
    key, token = gateway_services.apikey_create(actor=actor, tenant=tenant, name="test")
    base = gateway_server.url + "/v1"
    # The portal told the gateway workers; wait until both have reloaded.
    def all_workers_see_the_models():
        return all(len(requests.get(base + "/models", timeout=5, headers={
            "Authorization": f"Bearer {token}"}).json().get("data", [])) == 3 for _ in range(8))

    # Workers still holding the previous test's routes (same slugs, older ids) also list three
    # models: give every worker its reload window (it polls every 250 ms) before checking.
    time.sleep(0.6)
    assert wait_for(all_workers_see_the_models), "the gateway did not reload its configuration"
    return SimpleNamespace(tenant=tenant, chat=chat, embed=embed, completion=completion,
                           key=key, token=token, base=base, actor=actor, upstream=upstream)


def drained(expected: int, timeout: float = 5.0) -> int:
    """Drain the usage stream until `expected` records were created (or time runs out)."""
    total = 0

    def step():
        nonlocal total
        total += drain_usage_stream()
        return total >= expected

    wait_for(step, timeout=timeout, interval=0.05)
    return total
