"""The official `openai` client against the live gateway, and the usage it meters."""

import openai
import pytest

from billing.models import UsageRecord
from tests.support.gateway_fixtures import drained

pytestmark = pytest.mark.django_db(transaction=True)


def client(served, token=None) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base, api_key=token or served.token, max_retries=0)


def test_operator_validation_script(served):
    """What an operator's validation script does: list, chat, read the usage."""
    api = client(served)
    assert {m.id for m in api.models.list()} == {"chat-small", "embed-small", "completion-small"}
    reply = api.chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "Hello there, portal"}])
    assert reply.model == "chat-small"
    assert reply.choices[0].message.content.startswith("Sovereign models answer")
    assert reply.usage.prompt_tokens == 3
    assert reply.usage.completion_tokens == 8
    assert reply.usage.total_tokens == 11

    assert drained(1) == 1
    record = UsageRecord.objects.get()
    assert (record.tenant_id, record.api_key_id, record.model_slug) == (
        served.tenant.pk, served.key.pk, "chat-small")
    assert (record.input_tokens, record.output_tokens, record.estimated) == (3, 8, False)
    assert (record.status_code, record.streamed, record.endpoint) == (200, False,
                                                                      "chat/completions")
    assert record.deployment_id is not None and record.latency_ms >= 0
    assert reply.id and record.request_id.startswith("req_")


def test_streaming_chat_without_usage_requested_hides_the_usage_chunk(served):
    stream = client(served).chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "one two"}], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Sovereign models answer from inside the boundary ."
    assert all(c.usage is None for c in chunks)  # the gateway asked for it, the client didn't
    assert drained(1) == 1
    record = UsageRecord.objects.get()
    assert (record.input_tokens, record.output_tokens, record.streamed, record.estimated) == (
        2, 8, True, False)
    assert record.ttft_ms is not None


def test_streaming_chat_with_usage_requested_passes_it_through(served):
    stream = client(served).chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "a b c d"}], stream=True,
        stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage is not None]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (4, 8)
    assert drained(1) == 1
    record = UsageRecord.objects.get()
    assert (record.input_tokens, record.output_tokens) == (4, 8)


def test_embeddings_and_completions(served):
    api = client(served)
    embedding = api.embeddings.create(model="embed-small", input=["alpha beta", "gamma"])
    assert len(embedding.data) == 2
    assert embedding.usage.prompt_tokens == 3
    completion = api.completions.create(model="completion-small", prompt="say it", max_tokens=2)
    assert completion.choices[0].text == "Sovereign models"
    assert drained(2) == 2
    by_endpoint = {r.endpoint: r for r in UsageRecord.objects.all()}
    assert (by_endpoint["embeddings"].input_tokens, by_endpoint["embeddings"].output_tokens) == (
        3, 0)
    assert (by_endpoint["completions"].input_tokens,
            by_endpoint["completions"].output_tokens) == (2, 2)


def test_usage_records_never_hold_content(served):
    secret_prompt = "the launch code is 7-3-1-9"
    client(served).chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": secret_prompt}])
    drained(1)
    record = UsageRecord.objects.values().get()
    flattened = " ".join(str(value) for value in record.values())
    assert "7-3-1-9" not in flattened and "Sovereign" not in flattened


def test_a_model_of_the_wrong_kind_is_a_clear_400(served):
    with pytest.raises(openai.BadRequestError) as exc:
        client(served).chat.completions.create(model="embed-small",
                                               messages=[{"role": "user", "content": "x"}])
    assert "embeddings model" in exc.value.message
