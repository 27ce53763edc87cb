"""OpenAI's Responses API and Anthropic's Messages API through the live gateway, with the
official `openai` and `anthropic` clients, metered exactly from each API's own usage shape —
cached and reasoning tokens included — and refused in each API's own error shape."""

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import openai
import pytest
import requests

from billing.budgets import services as budgets
from billing.models import UsageRecord
from deployments import services as deployment_services
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from tests.factories import TenantFactory
from tests.support.gateway_fixtures import drained
from tests.support.processes import start_upstream, stop

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "Sovereign models answer from inside the boundary ."
REASONING = 5  # tests/support/openai_upstream.py: REASONING_TOKENS


def openai_client(served, token=None) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base, api_key=token or served.token, max_retries=0)


def anthropic_client(served, token=None) -> anthropic.Anthropic:
    # The Anthropic client appends /v1/messages to its base URL.
    return anthropic.Anthropic(base_url=served.base.removesuffix("/v1"),
                               api_key=token or served.token, max_retries=0)


def one_record(**filters) -> UsageRecord:
    assert drained(1) >= 1
    return UsageRecord.objects.get(**filters)


# --- OpenAI's Responses API ------------------------------------------------------------------


def test_responses_create_is_metered_with_cached_and_reasoning_tokens(served):
    catalog_services.price_set(actor=served.actor, model=served.chat,
                               input_per_million=Decimal("2"), output_per_million=Decimal("8"),
                               cached_input_per_million=Decimal("0.5"))
    api, cache_key = openai_client(served), f"conversation-{uuid.uuid4().hex}"
    first = api.responses.create(model="chat-small", input="You are terse. Say hello please",
                                 prompt_cache_key=cache_key)
    assert first.output_text == ANSWER and first.model == "chat-small"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (6, 8)
    assert one_record().cached_input_tokens == 0
    UsageRecord.objects.all().delete()

    second = api.responses.create(model="chat-small", input="You are terse. Say goodbye now",
                                  prompt_cache_key=cache_key, reasoning={"effort": "low"})
    assert second.usage.input_tokens_details.cached_tokens == 4
    assert second.usage.output_tokens_details.reasoning_tokens == REASONING
    record = one_record()
    assert (record.endpoint, record.streamed, record.status_code, record.estimated) == (
        "responses", False, 200, False)
    assert (record.input_tokens, record.cached_input_tokens) == (6, 4)
    assert (record.output_tokens, record.reasoning_tokens) == (8 + REASONING, REASONING)
    # 2 uncached input tokens at 2, 4 cached at 0.5, 13 output tokens at 8, per million.
    assert record.cost == (2 * Decimal(2) + 4 * Decimal("0.5") + 13 * Decimal(8)) / 1_000_000
    assert record.cached_input_price_per_million == Decimal("0.5")


def test_responses_stream_is_metered_from_response_completed(served):
    cache_key = f"stream-{uuid.uuid4().hex}"
    api = openai_client(served)
    api.responses.create(model="chat-small", input="one two three four",
                         prompt_cache_key=cache_key)
    drained(1)
    UsageRecord.objects.all().delete()
    stream = api.responses.create(model="chat-small", input="one two three five six",
                                  prompt_cache_key=cache_key, stream=True)
    events = list(stream)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == ANSWER
    completed = [e for e in events if e.type == "response.completed"]
    assert completed and completed[0].response.model == "chat-small"
    assert completed[0].response.usage.input_tokens == 5
    record = one_record()
    assert (record.endpoint, record.streamed, record.estimated) == ("responses", True, False)
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens) == (5, 3, 8)
    assert record.ttft_ms is not None


def test_responses_requests_are_checked(served):
    api = openai_client(served)
    with pytest.raises(openai.BadRequestError) as missing:
        api.responses.create(model="chat-small", input=[])
    assert missing.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as background:
        api.responses.create(model="chat-small", input="hi", background=True)
    assert background.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as wrong_kind:
        api.responses.create(model="embed-small", input="hi")
    assert "embeddings model" in wrong_kind.value.message
    with pytest.raises(openai.NotFoundError):
        api.responses.create(model="no-such-model", input="hi")
    assert drained(0, timeout=0.5) == 0


# --- Anthropic's Messages API ----------------------------------------------------------------


SYSTEM = [{"type": "text", "text": "You answer questions about the sovereign platform.",
           "cache_control": {"type": "ephemeral"}}]


def test_messages_create_with_x_api_key_is_metered_with_cache_reads(served):
    catalog_services.price_set(actor=served.actor, model=served.chat,
                               input_per_million=Decimal("3"), output_per_million=Decimal("15"),
                               cached_input_per_million=Decimal("0.3"))
    client = anthropic_client(served)
    system = [{**SYSTEM[0], "text": SYSTEM[0]["text"] + f" Session {uuid.uuid4().hex}."}]
    question = [{"role": "user", "content": "Where do answers come from?"}]
    first = client.messages.create(model="chat-small", max_tokens=64, system=system,
                                   messages=question)
    assert first.content[0].text == ANSWER and first.model == "chat-small"
    assert first.usage.cache_creation_input_tokens == 9
    record = one_record()
    # Cache writes are input tokens (charged at the input price), not cached ones.
    assert (record.input_tokens, record.cached_input_tokens) == (9 + 5, 0)
    UsageRecord.objects.all().delete()

    second = client.messages.create(model="chat-small", max_tokens=64, system=system,
                                    messages=question)
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (5, 9)
    record = one_record()
    assert (record.endpoint, record.streamed, record.status_code, record.estimated) == (
        "messages", False, 200, False)
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens) == (14, 9, 8)
    assert record.cost == (5 * Decimal(3) + 9 * Decimal("0.3") + 8 * Decimal(15)) / 1_000_000


def test_messages_stream_is_metered_across_message_start_and_message_delta(served):
    client = anthropic_client(served)
    system = [{**SYSTEM[0], "text": SYSTEM[0]["text"] + f" Stream {uuid.uuid4().hex}."}]
    with client.messages.stream(model="chat-small", max_tokens=64, system=system,
                                messages=[{"role": "user", "content": "Tell me more"}],
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert final.usage.output_tokens == 8 + REASONING
    record = one_record()
    assert (record.endpoint, record.streamed, record.estimated) == ("messages", True, False)
    assert (record.input_tokens, record.output_tokens) == (9 + 3, 8 + REASONING)


def test_either_key_header_works_on_every_endpoint(served):
    answer = requests.post(served.base + "/messages", timeout=10, json={
        "model": "chat-small", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {served.token}"})
    assert answer.status_code == 200 and answer.json()["type"] == "message"
    chat = requests.post(served.base + "/chat/completions", timeout=10, json={
        "model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": served.token})
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"


def test_messages_errors_have_anthropics_shape(served):
    with pytest.raises(anthropic.AuthenticationError) as wrong_key:
        anthropic_client(served, token="smp_nope_nope").messages.create(
            model="chat-small", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert wrong_key.value.body == {"type": "error", "error": {
        "type": "authentication_error", "message": "Incorrect API key provided."}}
    missing = requests.post(served.base + "/messages", timeout=10, json={})
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in missing.json()["error"]["message"]
    no_max_tokens = requests.post(served.base + "/messages", timeout=10, json={
        "model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": served.token})
    assert no_max_tokens.status_code == 400
    assert no_max_tokens.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required."}}
    with pytest.raises(anthropic.NotFoundError) as unknown:
        anthropic_client(served).messages.create(
            model="claude-elsewhere", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["error"]["type"] == "not_found_error"
    # The OpenAI endpoints keep OpenAI's shape.
    openai_shape = requests.post(served.base + "/chat/completions", timeout=10, json={},
                                 headers={"x-api-key": "smp_nope_nope"})
    assert openai_shape.status_code == 401 and "code" in openai_shape.json()["error"]


def test_another_tenants_model_is_no_model_on_responses_and_messages(served):
    other = TenantFactory(slug="globex")
    private = catalog_services.model_create(actor=served.actor, slug="globex-private",
                                            name="Private", task="chat")
    deployment_services.external_endpoint_register(
        actor=served.actor, model=private, base_url=served.upstream, tenant=other,
        upstream_model="chat-small")
    _key, other_token = gateway_services.apikey_create(actor=served.actor, tenant=other,
                                                       name="globex")
    time.sleep(0.6)
    with pytest.raises(anthropic.NotFoundError) as hidden:
        anthropic_client(served).messages.create(
            model="globex-private", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert hidden.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        openai_client(served).responses.create(model="globex-private", input="x")
    # Its own tenant's key reaches it, and the usage is that tenant's.
    answer = anthropic_client(served, token=other_token).messages.create(
        model="globex-private", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert answer.model == "globex-private"
    assert one_record().tenant_id == other.pk


def test_rate_limits_apply_to_responses_and_messages(served):
    _key, token = gateway_services.apikey_create(actor=served.actor, tenant=served.tenant,
                                                 name="one-a-minute", rpm_limit=1)
    time.sleep(0.6)
    messages = anthropic_client(served, token=token)
    messages.messages.create(model="chat-small", max_tokens=8,
                             messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as limited:
        messages.messages.create(model="chat-small", max_tokens=8,
                                 messages=[{"role": "user", "content": "hi"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert limited.value.response.headers["retry-after"]
    with pytest.raises(openai.RateLimitError):
        openai_client(served, token=token).responses.create(model="chat-small", input="hi")


def test_messages_answers_carry_anthropics_rate_limit_headers(served):
    """Anthropic's clients read `anthropic-ratelimit-*` (reset as an RFC 3339 time); the
    OpenAI-style `x-ratelimit-*` headers stay, and the other APIs get only those."""
    _key, token = gateway_services.apikey_create(actor=served.actor, tenant=served.tenant,
                                                 name="two-a-minute", rpm_limit=2)
    time.sleep(0.6)
    client = anthropic_client(served, token=token)
    before = datetime.now(UTC).replace(microsecond=0)
    raw = client.messages.with_raw_response.create(
        model="chat-small", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    headers = raw.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "1"
    reset = datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"])
    assert before < reset <= before + timedelta(seconds=61)
    assert raw.parse().usage.output_tokens > 0
    client.messages.create(model="chat-small", max_tokens=8,
                           messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="chat-small", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    chat = openai_client(served, token=token).chat.completions.with_raw_response
    with pytest.raises(openai.RateLimitError) as chat_limited:
        chat.create(model="chat-small", messages=[{"role": "user", "content": "hi"}])
    assert "anthropic-ratelimit-requests-limit" not in chat_limited.value.response.headers
    assert chat_limited.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_blocking_budgets_refuse_responses_and_messages(served):
    openai_client(served).responses.create(model="chat-small", input="spend some tokens")
    assert drained(1) == 1
    budgets.budget_create(actor=served.actor, tenant=served.tenant, name="Hard cap",
                          unit="tokens", amount=Decimal(5), action="block")
    time.sleep(0.8)
    with pytest.raises(openai.RateLimitError) as responses_refused:
        openai_client(served).responses.create(model="chat-small", input="more")
    assert responses_refused.value.body["code"] == "insufficient_quota"
    with pytest.raises(anthropic.RateLimitError) as messages_refused:
        anthropic_client(served).messages.create(
            model="chat-small", max_tokens=8, messages=[{"role": "user", "content": "more"}])
    assert messages_refused.value.body["error"]["type"] == "billing_error"
    assert "Hard cap" in messages_refused.value.body["error"]["message"]
    assert drained(0, timeout=0.5) == 0 and UsageRecord.objects.count() == 1


# --- chat completions: cached and reasoning tokens -------------------------------------------


def test_chat_cached_and_reasoning_tokens_streamed_and_not(served):
    api, cache_key = openai_client(served), f"chat-{uuid.uuid4().hex}"
    api.chat.completions.create(model="chat-small", prompt_cache_key=cache_key,
                                messages=[{"role": "user", "content": "a b c d e"}])
    reply = api.chat.completions.create(model="chat-small", prompt_cache_key=cache_key,
                                        reasoning_effort="high",
                                        messages=[{"role": "user", "content": "a b c x"}])
    assert reply.usage.prompt_tokens_details.cached_tokens == 3
    stream = api.chat.completions.create(model="chat-small", prompt_cache_key=cache_key,
                                         reasoning_effort="low", stream=True,
                                         stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "a b c x y"}])
    assert [c.usage.prompt_tokens for c in stream if c.usage] == [5]
    assert drained(3) == 3
    records = list(UsageRecord.objects.order_by("created_at"))
    assert [(r.input_tokens, r.cached_input_tokens, r.reasoning_tokens, r.streamed)
            for r in records] == [(5, 0, 0, False), (4, 3, REASONING, False),
                                  (5, 4, REASONING, True)]
    assert records[2].output_tokens == 8 + REASONING


# --- abandoned streams -----------------------------------------------------------------------


def _abandon(served, path: str, body: bytes, until: bytes) -> None:
    """Send a streamed request and hang up once `until` has arrived."""
    host, port = served.base.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST /v1/{path} HTTP/1.1\r\nHost: x\r\n".encode()
                     + b"x-api-key: " + served.token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while until not in received:
            received += sock.recv(4096)


@pytest.fixture
def slow_model(served):
    process, base = start_upstream("--models", "chatty", "--chunk-delay", "0.3")
    model = catalog_services.model_create(actor=served.actor, slug="chatty", name="Chatty",
                                          task="chat")
    deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                   base_url=base)
    time.sleep(0.6)
    yield model
    stop(process)


def test_abandoned_messages_stream_keeps_its_exact_input_and_counts_what_was_sent(served,
                                                                                 slow_model):
    _abandon(served, "messages", b'{"model": "chatty", "stream": true, "max_tokens": 64, '
                                 b'"messages": [{"role": "user", "content": "tell me more"}]}',
             until=b"models")
    assert drained(1, timeout=10) == 1
    record = UsageRecord.objects.get(model_slug="chatty")
    assert (record.status_code, record.endpoint, record.estimated) == (499, "messages", True)
    assert record.input_tokens == 3  # from message_start: exact
    assert 2 <= record.output_tokens < 8  # what reached the client


def test_abandoned_responses_stream_is_estimated(served, slow_model):
    _abandon(served, "responses", b'{"model": "chatty", "stream": true, '
                                  b'"input": "tell me more"}', until=b"models")
    assert drained(1, timeout=10) == 1
    record = UsageRecord.objects.get(model_slug="chatty")
    assert (record.status_code, record.endpoint, record.estimated) == (499, "responses", True)
    assert record.input_tokens >= 1 and 2 <= record.output_tokens < 8


def test_a_stalled_messages_stream_ends_with_anthropics_error_event(served):
    process, base = start_upstream("--models", "stalling", "--stream-fault", "stall",
                                   "--fault-after", "2")
    try:
        model = catalog_services.model_create(actor=served.actor, slug="stalling",
                                              name="Stalling", task="chat")
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        time.sleep(0.6)
        received = []
        with pytest.raises(anthropic.APIStatusError) as cut_off:
            with anthropic_client(served).messages.stream(
                    model="stalling", max_tokens=64,
                    messages=[{"role": "user", "content": "go on"}]) as stream:
                received.extend(stream.text_stream)
        assert received == ["Sovereign", " models"]
        assert cut_off.value.body["error"]["type"] == "timeout_error"
        assert drained(1, timeout=10) == 1
    finally:
        stop(process)
    record = UsageRecord.objects.get(model_slug="stalling")
    # Charged for its exact input and the two chunks that reached the client.
    assert (record.status_code, record.input_tokens, record.output_tokens) == (504, 2, 2)
    assert record.estimated
