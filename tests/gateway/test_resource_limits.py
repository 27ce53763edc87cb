"""What the gateway and its server bound: request heads and bodies (size and time), what they
read from model servers (answer size, stream event size, silence), and garbage keys."""

import asyncio
import http.client
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import orjson
import pytest
import requests

from billing.models import UsageRecord
from deployments import services as deployment_services
from gateway import directory as directory_module
from gateway.app import GatewayApp
from models_catalog import services as catalog_services
from tests.support.gateway_fixtures import LIMITS, drained
from tests.support.processes import start_upstream, stop

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}


def address(served) -> tuple[str, int]:
    host, port = served.base.split("//")[1].split("/")[0].split(":")
    return host, int(port)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it did."""
    sock.settimeout(timeout)
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def error_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")  # the body may be chunked: take the JSON
    return int(head.split(b" ")[1]), orjson.loads(body[body.index(b"{"):body.rindex(b"}") + 1]
                                                  )["error"]


# --- request heads and bodies --------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(served):
    with socket.create_connection(address(served)) as sock:
        received, after = read_until_closed(sock, timeout=30)
    status, error = error_of(received)
    assert (status, error["code"]) == (408, "request_timeout")
    assert after < LIMITS["HTTP_HEADER_TIMEOUT"] + 10


def test_trickled_headers_are_cut_off(served):
    with socket.create_connection(address(served)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:  # one header line a second: each one would reset uvicorn's own keep-alive timer
            for number in range(30):
                time.sleep(1)
                sock.sendall(b"X-Slow-%d: y\r\n" % number)
        except (BrokenPipeError, ConnectionResetError):
            pass
        cut_after = time.monotonic() - started
        received, _ = read_until_closed(sock, timeout=5)
    assert cut_after < LIMITS["HTTP_HEADER_TIMEOUT"] + 10
    if received:  # the 408 may be lost to the reset the further lines caused
        assert error_of(received)[0] == 408


def test_oversized_request_head_is_431(served):
    response = requests.get(served.base + "/models", timeout=10, headers={
        "Authorization": f"Bearer {served.token}", "X-Padding": "p" * 70_000})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "request_headers_too_large"


def test_trickled_body_is_408(served):
    with socket.create_connection(address(served)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + served.token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                     b'{"model": "chat-')
        received, after = read_until_closed(sock, timeout=30)
    status, error = error_of(received)
    assert (status, error["code"]) == (408, "request_timeout")
    assert set(error) == {"message", "type", "param", "code"}
    assert after < LIMITS["GATEWAY_BODY_TIMEOUT"] + 10


def test_oversize_chunked_body_is_413_and_the_client_reads_it(served, settings):
    limit = settings.GATEWAY_MAX_BODY_BYTES

    def chunks():  # no Content-Length: the gateway must count
        yield b'{"model": "chat-small", "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}]}'

    response = requests.post(served.base + "/chat/completions", data=chunks(), timeout=30,
                             headers={"Authorization": f"Bearer {served.token}",
                                      "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    # The connection stays usable: the server discarded the rest of the body.
    assert requests.post(served.base + "/chat/completions", json=CHAT, timeout=10, headers={
        "Authorization": f"Bearer {served.token}"}).status_code == 200


def test_the_unread_rest_of_an_oversize_body_has_a_deadline_too(served, settings):
    with socket.create_connection(address(served)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + served.token.encode() + b"\r\n"
                     b"Content-Length: %d\r\n\r\n" % (settings.GATEWAY_MAX_BODY_BYTES + 1))
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")  # from Content-Length alone
        started = time.monotonic()
        try:
            for _ in range(30):
                time.sleep(1)
                sock.sendall(b"x")
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert time.monotonic() - started < LIMITS["HTTP_HEADER_TIMEOUT"] + 10


# --- what the gateway reads from model servers ----------------------------------------------


@pytest.fixture
def misbehaving(served):
    """Serve model `slug` from a test upstream started with `args`."""
    processes = []

    def serve(slug: str, *args: str) -> None:
        process, base = start_upstream("--models", slug, "--no-usage", *args)
        processes.append(process)
        model = catalog_services.model_create(actor=served.actor, slug=slug, name=slug,
                                              task="chat")
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        time.sleep(0.6)  # the workers reload on the configuration bump

    yield serve
    for process in processes:
        stop(process)


def api(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base, api_key=served.token, max_retries=0)


def ask(served, model: str, **extra):
    return api(served).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "tell me more"}], **extra)


@pytest.mark.parametrize("framing", ["--pad-bytes", "--chunked"])
def test_an_upstream_answer_over_the_cap_is_502(served, misbehaving, framing):
    padding = str(LIMITS["GATEWAY_MAX_UPSTREAM_BODY_BYTES"] + 1000)
    misbehaving("bloated", "--pad-bytes", padding, *(["--chunked"] if framing == "--chunked"
                                                      else []))
    with pytest.raises(openai.InternalServerError) as caught:
        ask(served, "bloated")
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_response_too_large"
    assert drained(1) == 1
    record = UsageRecord.objects.get(model_slug="bloated")
    assert (record.status_code, record.input_tokens, record.output_tokens) == (502, 0, 0)


def test_a_stream_event_that_never_ends_is_cut_off_and_what_went_out_is_charged(
        served, misbehaving):
    misbehaving("babbler", "--stream-fault", "endless-event", "--fault-after", "3")
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in ask(served, "babbler", stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["Sovereign", " models", " answer"]
    assert caught.value.body["code"] == "upstream_event_too_large"
    assert "larger than 65536 bytes" in caught.value.message
    assert drained(1) == 1
    record = UsageRecord.objects.get(model_slug="babbler")
    assert (record.status_code, record.output_tokens, record.estimated) == (502, 3, True)
    assert record.input_tokens >= 1


def test_an_endless_first_event_is_a_plain_502(served, misbehaving):
    misbehaving("mute", "--stream-fault", "endless-event", "--fault-after", "0")
    with pytest.raises(openai.InternalServerError) as caught:
        list(ask(served, "mute", stream=True))
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_event_too_large"
    assert drained(1) == 1
    record = UsageRecord.objects.get(model_slug="mute")
    assert (record.status_code, record.input_tokens, record.output_tokens) == (502, 0, 0)


def test_a_stream_that_falls_silent_is_cut_off(served, misbehaving):
    misbehaving("staller", "--stream-fault", "stall", "--fault-after", "2")
    received = []
    started = time.monotonic()
    with pytest.raises(openai.APIError) as caught:
        for chunk in ask(served, "staller", stream=True):
            received.append(chunk.choices[0].delta.content)
    assert time.monotonic() - started < LIMITS["GATEWAY_STREAM_IDLE_TIMEOUT"] + 10
    assert received == ["Sovereign", " models"]
    assert caught.value.body["code"] == "upstream_timeout"
    assert drained(1) == 1
    record = UsageRecord.objects.get(model_slug="staller")
    assert (record.status_code, record.output_tokens, record.estimated) == (504, 2, True)


# --- garbage keys ---------------------------------------------------------------------------


def run(coroutine):
    """asyncio.run in a thread of its own (a browser test may own this thread's loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def same_minute(needed: float) -> None:
    """Failures are counted per clock minute: start where `needed` seconds remain in it."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.1)


def garbage_key(number: int) -> str:
    return f"smp_{number:010d}_" + "g" * 43


async def answer(app: GatewayApp, token: str, client: str) -> tuple[int, dict]:
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "client": (client, 40000),
             "headers": [(b"authorization", f"Bearer {token}".encode())]}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


def test_garbage_keys_cause_a_bounded_number_of_database_lookups(settings, monkeypatch):
    settings.GATEWAY_AUTH_FAILURES_PER_MINUTE = 5
    lookups = []
    real = directory_module._load_key
    monkeypatch.setattr(directory_module, "_load_key",
                        lambda prefix: lookups.append(prefix) or real(prefix))
    app = GatewayApp()
    app.ready = True  # authentication needs neither Redis nor an upstream

    async def flood():
        attacker = [await answer(app, garbage_key(n), "198.51.100.20") for n in range(200)]
        # Another address is not held back, and a prefix seen before is answered from the
        # negative cache.
        bystander = [await answer(app, garbage_key(n), "198.51.100.21") for n in range(3)]
        counted = len(lookups)
        v6 = [await answer(app, garbage_key(1000 + n), f"2001:db8::{n + 1}") for n in range(8)]
        return attacker, bystander, counted, v6

    same_minute(needed=20)
    attacker, bystander, counted, v6 = run(flood())
    assert [status for status, _ in attacker] == [401] * 5 + [429] * 195
    assert attacker[-1][1][b"retry-after"].isdigit()
    assert [status for status, _ in bystander] == [401] * 3
    assert counted == 5  # 200 garbage keys, 5 lookups; the bystander's 3 were cached
    # An IPv6 host can't dodge the limit by changing addresses inside its /64.
    assert [status for status, _ in v6] == [401] * 5 + [429] * 3
    assert len(lookups) == 10


def test_garbage_keys_get_429_from_the_live_gateway(served):
    """From 127.0.0.5 (still loopback, another client address), so the other tests' client,
    127.0.0.1, is not held back."""
    host, port = address(served)
    statuses = []
    same_minute(needed=40)
    for number in range(100):  # each worker lets 30 through a minute
        connection = http.client.HTTPConnection(host, port, timeout=10,
                                                source_address=("127.0.0.5", 0))
        connection.request("GET", "/v1/models",
                           headers={"Authorization": f"Bearer {garbage_key(number)}"})
        response = connection.getresponse()
        statuses.append((response.status, orjson.loads(response.read())["error"]["code"]))
        connection.close()
    assert statuses[0] == (401, "invalid_api_key")
    assert (429, "too_many_invalid_keys") in statuses
    assert statuses.count((401, "invalid_api_key")) <= 60
    assert set(statuses) == {(401, "invalid_api_key"), (429, "too_many_invalid_keys")}
    assert requests.post(served.base + "/chat/completions", json=CHAT, timeout=10, headers={
        "Authorization": f"Bearer {served.token}"}).status_code == 200
