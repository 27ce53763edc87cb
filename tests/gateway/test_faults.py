"""Bad input, missing rights and failing upstreams: always OpenAI's error shape, never a 500."""

import socket
import time

import pytest
import requests

from billing.models import UsageRecord
from deployments import services as deployment_services
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from tenants import services as tenant_services
from tests.factories import TenantFactory
from tests.support.gateway_fixtures import UPSTREAM_TIMEOUT, drained, wait_for
from tests.support.processes import start_upstream, stop

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}


def post(served, body, *, token=None, path="/chat/completions", raw=None, headers=None):
    return requests.post(
        served.base + path, json=None if raw is not None else body, data=raw,
        headers={"Authorization": f"Bearer {token or served.token}",
                 "Content-Type": "application/json", **(headers or {})}, timeout=30)


def assert_openai_error(response, status: int, *, code=None, param=None, contains=""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert contains in error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize("raw,param,contains", [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "JSON object"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "model parameter"),
    (b'{"model": 7, "messages": []}', "model", "model parameter"),
    (b'{"model": "chat-small", "messages": "hello"}', "messages", "Invalid type"),
    (b'{"model": "chat-small", "messages": [], "stream": "yes"}', "stream", "Invalid type"),
    (b'{"model": "chat-small", "messages": [{"role":"user","content":"x"}], "max_tokens": true}',
     "max_tokens", "Invalid type"),
    (b'{"model": "chat-small"}', "messages", "'messages' is required"),
    (b'{"model": "chat-small", "messages": [{"role":"user","content":"x"}], "max_tokens": 1e20}',
     "max_tokens", "expected an integer"),
    (b'{"model": "chat-small", "messages": [{"role":"user","content":"x"}], "max_tokens": 0}',
     "max_tokens", "out of range; use 1 to"),
    (b'{"model": "chat-small", "messages": [{"role":"user","content":"x"}], "n": 100000}',
     "n", "out of range; use 1 to 128"),
])
def test_malformed_requests_are_400(served, raw, param, contains):
    assert_openai_error(post(served, None, raw=raw), 400, param=param, contains=contains)


def test_oversize_body_is_413(served, settings):
    huge = b'{"model": "chat-small", "messages": [{"role": "user", "content": "' + (
        b"x" * (settings.GATEWAY_MAX_BODY_BYTES + 10)) + b'"}]}'
    assert_openai_error(post(served, None, raw=huge), 413, code="request_too_large")


def test_missing_and_wrong_keys_are_401(served):
    response = requests.post(served.base + "/chat/completions", json=CHAT, timeout=10)
    assert_openai_error(response, 401, contains="didn't provide an API key")
    assert_openai_error(post(served, CHAT, token="smp_aaaaaaaaaa_" + "x" * 43), 401,
                        code="invalid_api_key")
    forged = served.token[:-4] + ("AAAA" if not served.token.endswith("AAAA") else "BBBB")
    assert_openai_error(post(served, CHAT, token=forged), 401, code="invalid_api_key")
    assert_openai_error(post(served, CHAT, token="garbage"), 401, code="invalid_api_key")


def test_unknown_paths_and_methods(served):
    assert_openai_error(post(served, CHAT, path="/nope"), 404, code="unknown_url")
    response = requests.get(served.base + "/chat/completions",
                            headers={"Authorization": f"Bearer {served.token}"}, timeout=10)
    assert_openai_error(response, 405)


def test_another_tenants_dedicated_model_looks_like_no_model(served):
    other = TenantFactory(slug="globex")
    private = catalog_services.model_create(actor=served.actor, slug="globex-private",
                                            name="Private", task="chat")
    deployment_services.external_endpoint_register(
        actor=served.actor, model=private, base_url=served.upstream, tenant=other,
        upstream_model="chat-small")
    time.sleep(0.6)  # the workers reload on the configuration bump
    hidden = assert_openai_error(post(served, {**CHAT, "model": "globex-private"}), 404,
                                 code="model_not_found")
    missing = assert_openai_error(post(served, {**CHAT, "model": "no-such-model"}), 404,
                                  code="model_not_found")
    assert hidden["message"].replace("globex-private", "X") == missing["message"].replace(
        "no-such-model", "X")
    models = requests.get(served.base + "/models", timeout=10,
                          headers={"Authorization": f"Bearer {served.token}"}).json()
    assert "globex-private" not in {m["id"] for m in models["data"]}


def test_suspended_tenant_is_refused(served):
    tenant_services.tenant_set_status(actor=served.actor, tenant=served.tenant,
                                      status="suspended")
    response = wait_for(lambda: (r := post(served, CHAT)).status_code == 403 and r)
    assert_openai_error(response, 403, code="tenant_suspended")


def test_retired_and_deprecated_models(served):
    catalog_services.model_set_lifecycle(actor=served.actor, model=served.chat,
                                         lifecycle="deprecated")
    response = wait_for(lambda: "warning" in (r := post(served, CHAT)).headers and r)
    assert response.status_code == 200
    assert "deprecated" in response.headers["warning"]
    catalog_services.model_set_lifecycle(actor=served.actor, model=served.chat,
                                         lifecycle="retired")
    response = wait_for(lambda: (r := post(served, CHAT)).status_code == 404 and r)
    assert_openai_error(response, 404, code="model_not_found")


def test_a_retired_model_names_its_successor_to_the_tenants_it_served(served):
    """OpenAI answers a shut-down model with 404 model_not_found and says what to use; so does
    the gateway, to the tenants that were entitled to it. To others it does not exist."""
    successor = catalog_services.model_create(actor=served.actor, slug="chat-next",
                                              name="Chat Next", task="chat")
    catalog_services.model_set_entitlements(actor=served.actor, model=served.chat,
                                            all_tenants=False, tenants=[served.tenant])
    catalog_services.model_set_lifecycle(actor=served.actor, model=served.chat,
                                         lifecycle="retired", successor=successor)
    response = wait_for(lambda: "retired" in (r := post(served, CHAT)).text and r)
    assert_openai_error(response, 404, code="model_not_found", param="model",
                        contains="`chat-small` was retired and is no longer served; use "
                                 "`chat-next` instead")
    other = TenantFactory(slug="globex")
    _key, token = gateway_services.apikey_create(actor=served.actor, tenant=other,
                                                 name="outsider")
    outsider = wait_for(lambda: (r := post(served, CHAT, token=token)).status_code != 401 and r)
    assert_openai_error(outsider, 404, code="model_not_found")
    assert "retired" not in outsider.text and "chat-next" not in outsider.text


def test_upstream_down_is_503_and_recorded_as_failed(served):
    process, base = start_upstream("--models", "flaky")
    model = catalog_services.model_create(actor=served.actor, slug="flaky", name="Flaky",
                                          task="chat")
    deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                   base_url=base)
    stop(process)
    response = wait_for(lambda: (r := post(served, {**CHAT, "model": "flaky"})).status_code
                        == 503 and r)
    assert_openai_error(response, 503, code="upstream_unavailable")
    drained(1)
    record = UsageRecord.objects.get(model_slug="flaky")
    assert (record.status_code, record.input_tokens, record.output_tokens) == (503, 0, 0)


def test_connect_failure_is_retried_on_another_deployment(served):
    process, base = start_upstream("--models", "chat-small")
    dead = deployment_services.external_endpoint_register(
        actor=served.actor, model=served.chat, base_url=base, name="dies")
    assert dead.status == "ready"
    stop(process)
    time.sleep(0.6)
    for _ in range(4):  # round robin reaches the dead one; every request still succeeds
        assert post(served, CHAT).status_code == 200


def test_upstream_timeout_is_504(served):
    process, base = start_upstream("--models", "slow", "--delay", str(UPSTREAM_TIMEOUT + 2))
    try:
        model = catalog_services.model_create(actor=served.actor, slug="slow", name="Slow",
                                              task="chat")
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        time.sleep(0.6)
        assert_openai_error(post(served, {**CHAT, "model": "slow"}), 504,
                            code="upstream_timeout")
    finally:
        stop(process)


def test_client_disconnect_mid_stream_is_still_charged(served):
    process, base = start_upstream("--models", "chatty", "--chunk-delay", "0.3")
    try:
        model = catalog_services.model_create(actor=served.actor, slug="chatty", name="Chatty",
                                              task="chat")
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        time.sleep(0.6)
        host, port = served.base.split("//")[1].split("/")[0].split(":")
        body = (b'{"model": "chatty", "stream": true, '
                b'"messages": [{"role": "user", "content": "tell me more"}]}')
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + served.token.encode() + b"\r\n"
                         b"Content-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            received = b""
            while b"Sovereign" not in received or b"models" not in received:
                received += sock.recv(4096)
        # Closed after two words of eight.
        assert drained(1, timeout=10) == 1
    finally:
        stop(process)
    record = UsageRecord.objects.get(model_slug="chatty")
    assert record.status_code == 499
    assert 2 <= record.output_tokens < 8
    assert record.input_tokens >= 1 and record.estimated
