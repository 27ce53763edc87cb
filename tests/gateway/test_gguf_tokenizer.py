"""The tokenizer a GGUF carries, read with bounds by the scanner and counted by the gateway as
llama.cpp counts (its SentencePiece merge by score, special tokens, byte fallback). The real
Gemma vocabulary is checked against the llama.cpp server in tests/demo."""

import json
import struct

import pytest

from gateway.spm import SpmTokenizer
from gateway.tokens import GgufCounter, counter_from_document
from models_catalog.scanning import gguf_vocab, policy_from_settings, scan_layers
from tests.support.modelcar import layer_tar

NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 3, 4, 6


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_with_vocab(tokens, scores, types, *, extra=(), model="llama", space_prefix=False):
    """A GGUF header with a SentencePiece vocabulary (no tensors)."""
    kvs = [("general.architecture", 8, _string("gemma3")),
           ("tokenizer.ggml.model", 8, _string(model)),
           ("tokenizer.ggml.tokens", 9,
            struct.pack("<IQ", 8, len(tokens)) + b"".join(_string(t) for t in tokens)),
           ("tokenizer.ggml.scores", 9,
            struct.pack("<IQ", 6, len(scores)) + struct.pack(f"<{len(scores)}f", *scores)),
           ("tokenizer.ggml.token_type", 9,
            struct.pack("<IQ", 5, len(types)) + struct.pack(f"<{len(types)}i", *types)),
           ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
           ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
           ("tokenizer.ggml.add_space_prefix", 7, struct.pack("<?", space_prefix)),
           *extra]
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, value in kvs:
        body += _string(key) + struct.pack("<I", kind) + value
    return body


# A toy vocabulary: merges prefer the higher score; "<turn>" is a control token, "  " (two
# spaces) a user-defined one; bytes 0x00-0xFF exist as <0xNN>.
VOCAB = ["<unk>", "<bos>", "<eos>", "<turn>", "  ", "\n", "a", "b", "c", "ab", "bc", "abc",
         "▁", "▁a", "h", "é"]
SCORES = [0, 0, 0, 0, 0, 0, -1, -1, -1, -5, -2, -3, -1, -4, -1, -1]
TYPES = [2, CONTROL, CONTROL, CONTROL, USER_DEFINED, USER_DEFINED] + [NORMAL] * 10
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def toy_gguf(tmp_path, **kwargs):
    path = tmp_path / "toy.gguf"
    path.write_bytes(gguf_with_vocab(VOCAB + BYTES, SCORES + [0] * 256,
                                     TYPES + [BYTE] * 256, **kwargs))
    return path


def ids(*texts):
    index = {t: i for i, t in enumerate(VOCAB + BYTES)}
    return [index[t] for t in texts]


def test_the_vocabulary_is_read_from_the_gguf_header(tmp_path):
    document = json.loads(gguf_vocab.tokenizer_document(toy_gguf(tmp_path)))
    assert document["format"] == "gguf-spm"
    assert document["tokens"][:4] == ["<unk>", "<bos>", "<eos>", "<turn>"]
    assert document["scores"][9] == -5 and document["types"][3] == CONTROL
    assert (document["bos_id"], document["eos_id"], document["add_space_prefix"]) == (1, 2,
                                                                                     False)


def test_merges_follow_the_scores_then_the_leftmost_pair(tmp_path):
    tokenizer = SpmTokenizer(json.loads(gguf_vocab.tokenizer_document(toy_gguf(tmp_path))))
    # "bc" (-2) beats "ab" (-5); then "a"+"bc" makes "abc" (-3).
    assert tokenizer.encode("abc") == ids("abc")
    # Without "c", "ab" is the only merge.
    assert tokenizer.encode("ab") == ids("ab")
    # Spaces become "▁" and merge like any character: " a" is "▁a".
    assert tokenizer.encode("b a") == ids("b", "▁a")


def test_special_tokens_split_the_text_and_unknown_characters_fall_back_to_bytes(tmp_path):
    tokenizer = SpmTokenizer(json.loads(gguf_vocab.tokenizer_document(toy_gguf(tmp_path))))
    assert tokenizer.encode("ab<turn>c") == ids("ab", "<turn>", "c")
    assert tokenizer.encode("a  b\nc") == ids("a", "  ", "b", "\n", "c")  # user-defined runs
    assert tokenizer.encode("hé") == ids("h", "é")
    assert tokenizer.encode("h€") == ids("h", "<0xE2>", "<0x82>", "<0xAC>")
    assert tokenizer.encode("a", add_bos=True) == ids("<bos>", "a")


def test_a_space_prefix_is_added_after_a_special_token_when_the_vocabulary_asks(tmp_path):
    tokenizer = SpmTokenizer(json.loads(gguf_vocab.tokenizer_document(
        toy_gguf(tmp_path, space_prefix=True))))
    assert tokenizer.encode("a<turn>a") == ids("▁a", "<turn>", "▁a")


@pytest.mark.parametrize("damage", ["truncated", "huge_count", "huge_string"])
def test_a_crafted_header_fails_cleanly(tmp_path, damage):
    data = gguf_with_vocab(VOCAB, SCORES, TYPES)
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "huge_count":
        data = data.replace(struct.pack("<IQ", 8, len(VOCAB)), struct.pack("<IQ", 8, 2**40))
    else:
        data = data.replace(_string("<turn>"), struct.pack("<Q", 2**33) + b"<turn>")
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(gguf_vocab.GgufError):
        gguf_vocab.tokenizer_document(path)


def test_a_gguf_without_a_sentencepiece_vocabulary_has_no_document(tmp_path):
    path = tmp_path / "bpe.gguf"
    path.write_bytes(gguf_with_vocab(VOCAB, SCORES, TYPES, model="gpt2"))
    assert gguf_vocab.tokenizer_document(path) is None


TEMPLATE = ("{{ bos_token }}{% for m in messages %}<turn>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<turn>{% endif %}")


def test_the_scan_keeps_the_ggufs_tokenizer_with_the_images_chat_template(tmp_path):
    gguf = toy_gguf(tmp_path).read_bytes()
    config = json.dumps({"chat_template": TEMPLATE, "bos_token": "<bos>"}).encode()
    layer = tmp_path / "layer.tar"
    layer.write_bytes(layer_tar({"toy.gguf": gguf, "tokenizer_config.json": config}))
    with layer.open("rb") as stream:
        report = scan_layers([("application/vnd.oci.image.layer.v1.tar", stream)],
                             policy=policy_from_settings(), limits=None,
                             workdir=tmp_path / "work", keep=("tokenizer.json",))
    assert report.verdict == "clean", report.findings
    counter = counter_from_document(report.kept["tokenizer.json"].decode())
    assert isinstance(counter, GgufCounter)
    # <bos> <turn> ab \n <turn> c \n <turn>: the template rendered, specials parsed.
    request = {"messages": [{"role": "user", "content": "ab"},
                            {"role": "user", "content": "c"}]}
    assert counter.prompt(request) == 8
    assert counter.prompt({"prompt": "abc"}) == 2  # BOS and "abc"
    assert counter.text("abc") == 1


def test_without_a_template_the_chat_prompt_is_not_claimed_exact(tmp_path):
    counter = counter_from_document(gguf_vocab.tokenizer_document(toy_gguf(tmp_path)))
    assert counter.prompt({"messages": [{"role": "user", "content": "ab"}]}) is None


def test_the_gateway_counts_a_streamed_answer_with_the_ggufs_tokenizer(served, tmp_path):
    """A server that reports no usage in streams (llama-cpp-python's): the gateway renders
    the chat template for the prompt and re-tokenizes the streamed text — not one token per
    chunk."""
    import time

    import requests

    from billing.models import UsageRecord
    from deployments import services as deployment_services
    from models_catalog import services as catalog_services
    from models_catalog.models import ModelVersion
    from tests.factories import published_version
    from tests.support.gateway_fixtures import drained
    from tests.support.processes import start_upstream, stop

    # Every letter of the upstream's answer is in the vocabulary, so each word is counted
    # letter by letter (no merges exist for them): far more tokens than chunks.
    letters = sorted(set("Sovereignmodelsanswerfrominsidetheboundary."))
    vocab = ["<unk>", "<bos>", "<eos>", "<turn>", "▁", *letters]
    types = [2, CONTROL, CONTROL, CONTROL] + [NORMAL] * (len(vocab) - 4) + [BYTE] * 256
    document = json.loads(gguf_vocab.tokenizer_document(_write(
        tmp_path, gguf_with_vocab(vocab + BYTES, [0.0] * len(types), types))))
    document["chat_template"] = TEMPLATE
    process, base = start_upstream("--models", "spm", "--no-usage")
    try:
        model = catalog_services.model_create(actor=served.actor, slug="spm", name="SPM",
                                              task="chat")
        version = published_version(model)
        ModelVersion.objects.filter(pk=version.pk).update(tokenizer=json.dumps(
            document, ensure_ascii=False, separators=(",", ":")))
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        time.sleep(0.6)
        response = requests.post(served.base + "/chat/completions", timeout=10, stream=True,
                                 headers={"Authorization": f"Bearer {served.token}"}, json={
                                     "model": "spm", "stream": True,
                                     "messages": [{"role": "user", "content": "a"}]})
        text = "".join(
            json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
            for line in response.iter_lines() if line.startswith(b"data: {")
            and json.loads(line[5:])["choices"])
        assert drained(1) == 1
    finally:
        stop(process)
    record = UsageRecord.objects.get(model_slug="spm")
    tokenizer = SpmTokenizer(document)
    assert record.estimated and record.streamed
    assert record.output_tokens == tokenizer.count(text) > 8  # eight chunks
    # <bos> <turn> "a" "\n" (a byte token) <turn>
    assert record.input_tokens == tokenizer.count("<bos><turn>a\n<turn>") == 5


def _write(tmp_path, data: bytes):
    path = tmp_path / "spm.gguf"
    path.write_bytes(data)
    return path
