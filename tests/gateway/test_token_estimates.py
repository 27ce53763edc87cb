"""When a model server reports no `usage`, the gateway counts tokens with the model's own
tokenizer — the tokenizer.json the catalog kept from its ModelCar — and flags the record
estimated; without a tokenizer it falls back to ~4 characters per token."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from tokenizers import Tokenizer, models, pre_tokenizers

from billing.models import UsageRecord
from deployments import services as deployment_services
from gateway.tokens import TokenCounter
from models_catalog import services as catalog_services
from models_catalog.models import ModelVersion
from tests.factories import published_version
from tests.support.gateway_fixtures import drained
from tests.support.processes import start_upstream, stop

pytestmark = pytest.mark.django_db(transaction=True)


def word_tokenizer() -> Tokenizer:
    """A real tokenizer.json (word level: one token per word or punctuation mark)."""
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def run(coroutine):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_the_counter_uses_the_models_tokenizer_and_falls_back(db):
    model = catalog_services.model_create(actor="system:test", slug="counted", name="Counted",
                                          task="chat")
    text = "Extraordinarily lengthy words, nevertheless few."
    counter = TokenCounter()
    assert run(counter.count(model.pk, text)) == -(-len(text) // 4)  # no tokenizer yet
    version = published_version(model)
    ModelVersion.objects.filter(pk=version.pk).update(tokenizer=word_tokenizer().to_str())
    assert run(TokenCounter().count(model.pk, text)) == 7  # five words, a comma and a dot
    assert run(TokenCounter().count(model.pk, text, messages=2)) == 7 + 2 * 3


def test_a_server_without_usage_is_counted_with_the_tokenizer(served):
    process, base = start_upstream("--models", "quiet", "--no-usage")
    try:
        model = catalog_services.model_create(actor=served.actor, slug="quiet", name="Quiet",
                                              task="chat")
        version = published_version(model)
        ModelVersion.objects.filter(pk=version.pk).update(tokenizer=word_tokenizer().to_str())
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        time.sleep(0.6)
        prompt = "Summarise the quarterly figures, please"
        response = requests.post(served.base + "/chat/completions", timeout=10, headers={
            "Authorization": f"Bearer {served.token}"}, json={
            "model": "quiet", "messages": [{"role": "user", "content": prompt}]})
        assert response.status_code == 200 and "usage" not in response.json()
        answer = response.json()["choices"][0]["message"]["content"]
        assert drained(1) == 1
    finally:
        stop(process)
    record = UsageRecord.objects.get(model_slug="quiet")
    tokenizer = word_tokenizer()
    assert record.estimated
    assert record.input_tokens == len(tokenizer.encode(prompt).ids) + 3
    assert record.output_tokens == len(tokenizer.encode(answer).ids) > 0
