"""The real demo model end to end: Gemma 3 270M packed as a ModelCar, uploaded, pushed,
scanned, approved by a second MSP admin, signed and published, served by llama-cpp-python's
server from var/engine, registered as an external endpoint and streamed through /v1 with the
official `openai` client — and the gateway's token counts equal the server's own.

One llama.cpp server for the module; small max_tokens. `scripts/test.sh` builds var/engine
first (scripts/ensure-engine.sh)."""

from __future__ import annotations

import json
import os

import openai
import pytest
import requests
from django.db import connection

from billing.models import Budget, UsageRecord
from gateway import services as gateway_services
from gateway.spm import SpmTokenizer
from gateway.tokens import counter_from_document
from models_catalog.models import ModelVersion, VersionStatus
from models_catalog.scanning import gguf_vocab
from portal.demo import prepare
from tenants.models import TenantRole
from tests.factories import MembershipFactory, TenantFactory, UserFactory, make_msp_admin
from tests.support.gateway_fixtures import drained, start_gateway, wait_for
from tests.support.processes import free_port, stop

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

# Plain, non-ASCII and whitespace-heavy texts, and one with the chat markers themselves.
TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. 1234567890",
    "Grüße aus München — naïve café, déjà vu; Ærøskøbing.",
    "東京は日本の首都です。한국어 문장도 있습니다. Привет, мир!",
    "emoji 🙂🚀 and symbols ∑∫√ ≠ ≤ ≥ €£¥",
    "  leading spaces, then\ttabs\t\tand\n\nnewlines\n\n\n   and trailing   ",
    "code:\n    def f(x):\n        return x  # indented\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The engine venv and the assembled GGUF; fails (not skips) when the venv is missing."""
    paths = prepare.Paths(root=tmp_path_factory.mktemp("demo-model"))
    assert paths.engine_python.exists(), (
        "No inference engine in var/engine: run scripts/ensure-engine.sh (scripts/test.sh "
        "does) before the engine tests.")
    gguf, terms = prepare.model_unpack(paths)
    return paths, gguf, terms


@pytest.fixture(scope="module")
def llama_server(engine):
    paths, gguf, _terms = engine
    port = free_port()
    # The portal's environment must not reach the server (it reads PORT, API_KEY … too).
    leaked = {"PORT": str(free_port()), "API_KEY": "not-for-the-model-server"}
    saved = {name: os.environ.get(name) for name in leaked}
    os.environ.update(leaked)
    try:
        process = prepare.server_start(paths, gguf, port, paths.work / "server.log")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield f"http://127.0.0.1:{port}"
    prepare.server_stop(process)


def server_tokens(base: str, text: str) -> list[int]:
    response = requests.post(base + "/extras/tokenize", json={"input": text}, timeout=30)
    response.raise_for_status()
    return response.json()["tokens"]


def test_the_gateways_tokenizer_tokenizes_like_the_llama_cpp_server(engine, llama_server):
    _paths, gguf, _terms = engine
    document = gguf_vocab.tokenizer_document(gguf)
    tokenizer = SpmTokenizer(json.loads(document))
    counter = counter_from_document(document)  # what the gateway loads
    for text in TEXTS:
        # The server's tokenize endpoint adds the BOS token and parses special tokens.
        expected = server_tokens(llama_server, text)
        assert tokenizer.encode(text, add_bos=True) == expected, text
        assert counter.text(text) + 1 == len(expected), text


@pytest.fixture(scope="module")
def patient_gateway(django_db_setup, django_db_blocker):
    """The portal's gateway with time for a CPU model to answer (the suite's gateway gives
    its fast test upstream 3 s)."""
    with django_db_blocker.unblock():
        database = dict(connection.settings_dict)
    # A CPU model on a busy machine may pause between tokens longer than the suite's small
    # stream idle limit.
    server = start_gateway(database, GATEWAY_UPSTREAM_TIMEOUT="180",
                           GATEWAY_STREAM_IDLE_TIMEOUT="120")
    yield server
    stop(server.process)


@pytest.fixture
def demo_people(transactional_db):
    return make_msp_admin(email=prepare.UPLOADER), make_msp_admin(email=prepare.APPROVER)


def test_from_upload_to_a_streamed_answer_with_the_servers_token_counts(
        engine, llama_server, demo_people, catalog_worker, patient_gateway):
    paths, gguf, terms = engine
    tenant = TenantFactory(slug="acme", name="Acme Research")
    MembershipFactory(tenant=tenant, user=UserFactory(email=prepare.BUDGET_ADMIN),
                      role=TenantRole.TENANT_ADMIN)
    # The front door: pack, upload as the first MSP admin, push and scan in the worker.
    model = prepare.demo_model()
    assert Budget.objects.get(tenant=tenant, model=model).unit == "tokens"
    archive = prepare.modelcar_pack(paths, gguf, terms)
    version = prepare.version_upload(model, archive, lambda done, total: None)
    version = prepare.version_wait(version, lambda current: None, timeout=600)
    assert version.status == VersionStatus.AWAITING_APPROVAL
    assert version.scan_verdict == "clean", version.scan_report
    assert version.sbom and '"machine-learning-model"' in version.sbom
    assert json.loads(version.tokenizer)["format"] == "gguf-spm"
    assert json.loads(version.tokenizer)["chat_template"] == prepare.CHAT_TEMPLATE
    # Four-eyes: submitted by the uploader, approved (signed, published) by the other admin.
    version = prepare.version_approve(version)
    version = ModelVersion.objects.get(pk=version.pk)
    assert version.status == VersionStatus.PUBLISHED and version.signature
    assert (version.uploaded_by, version.approved_by) == demo_people
    # The server runs exactly the published bytes.
    served = prepare.served_file(version, prepare.Paths(root=paths.work / "pulled"))
    assert served.read_bytes() == gguf.read_bytes()
    deployment = prepare.endpoint_register(model, llama_server + "/v1")
    assert deployment.status == "ready", deployment.status_reason

    _key, token = gateway_services.apikey_create(actor="system:test", tenant=tenant,
                                                 name="real-model")
    base = patient_gateway.url + "/v1"
    client = openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=120)
    assert wait_for(lambda: prepare.SLUG in {m.id for m in client.models.list()}, timeout=10)
    messages = [{"role": "user", "content": "Name a river in Europe. Ünïcödé too, please."}]

    stream = client.chat.completions.create(model=prepare.SLUG, messages=messages, stream=True,
                                            max_tokens=12, temperature=0)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip()
    # The server's own counts for the same (greedy, so identical) answer.
    direct = requests.post(llama_server + "/v1/chat/completions", timeout=120, json={
        "model": prepare.SLUG, "messages": messages, "max_tokens": 12,
        "temperature": 0}).json()
    assert direct["choices"][0]["message"]["content"] == text
    usage = direct["usage"]

    assert drained(1, timeout=20) == 1
    record = UsageRecord.objects.get()
    # llama-cpp-python's server sends no usage in streams: the gateway counted with the
    # model's own tokenizer and chat template — and got the server's numbers.
    assert record.streamed and record.estimated and record.status_code == 200
    assert (record.input_tokens, record.output_tokens) == (usage["prompt_tokens"],
                                                           usage["completion_tokens"])
    assert record.model_slug == prepare.SLUG and record.deployment_id == deployment.pk
    assert record.cost > 0 and record.ttft_ms is not None

    reply = client.chat.completions.create(model=prepare.SLUG, messages=messages,
                                           max_tokens=12, temperature=0)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        usage["prompt_tokens"], usage["completion_tokens"])
    assert drained(1, timeout=20) == 1
    exact = UsageRecord.objects.exclude(pk=record.pk).get()
    assert not exact.estimated
    assert (exact.input_tokens, exact.output_tokens) == (record.input_tokens,
                                                         record.output_tokens)
