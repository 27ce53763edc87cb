"""The SBOM validates against CycloneDX 1.6 and names the image, the model and every file."""

import json
from types import SimpleNamespace

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from models_catalog import services
from models_catalog.models import Model
from models_catalog.sbom import build_sbom
from models_catalog.scanning import ScanPolicy, scan_oci_archive
from models_catalog.services.scan import sbom_build
from tests.factories import published_version
from tests.support.modelcar import build_modelcar_archive

DIGEST = "sha256:" + "ab" * 32


def test_sbom_is_valid_cyclonedx_with_model_card_and_hashes(tmp_path):
    report = scan_oci_archive(build_modelcar_archive(tmp_path / "i.tar"),
                              policy=ScanPolicy("safetensors_gguf_only"),
                              workdir=tmp_path / "w")
    model = SimpleNamespace(slug="acme-chat", name="Acme Chat", task="chat", license="apache-2.0",
                            provider="llama", description="A chat model.", model_card="# Card",
                            context_length=8192)
    version = SimpleNamespace(version="1.2", base_model="llama-3-8b",
                              training_data="s3://data/snap-2026-10", source_commit="abc123",
                              hyperparameters={"lr": 0.0002})
    text = build_sbom(model=model, image_reference=f"registry.test:5000/landing/acme-chat@{DIGEST}",
                      manifest_digest=DIGEST, report=report, version=version)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    assert sbom["specVersion"] == "1.6"
    image = sbom["metadata"]["component"]
    assert image["type"] == "container"
    from packageurl import PackageURL
    purl = PackageURL.from_string(image["purl"])
    assert (purl.type, purl.name, purl.version) == ("oci", "acme-chat", DIGEST)
    assert purl.qualifiers["repository_url"] == "registry.test:5000/landing/acme-chat"
    model_component = sbom["components"][0]
    assert model_component["type"] == "machine-learning-model"
    card = model_component["modelCard"]
    assert card["modelParameters"]["task"] == "chat"
    assert card["modelParameters"]["datasets"][0]["name"] == "s3://data/snap-2026-10"
    lineage = {p["name"]: p["value"] for p in card["properties"]}
    assert lineage["sovereign-portal:lineage:source_commit"] == "abc123"
    assert lineage["sovereign-portal:lineage:base_model"] == "llama-3-8b"
    assert model_component["pedigree"]["ancestors"] == [{
        "type": "machine-learning-model", "bom-ref": "base-model", "name": "llama-3-8b",
        "description": "External base model"}]
    files = {c["name"]: c for c in model_component["components"]}
    weights = files["model.safetensors"]
    assert weights["type"] == "machine-learning-model"
    entry = next(f for f in report.files if f.path == "model.safetensors")
    assert weights["hashes"] == [{"alg": "SHA-256", "content": entry.sha256}]
    assert files["config.json"]["type"] == "file"


def _scan(tmp_path):
    return scan_oci_archive(build_modelcar_archive(tmp_path / "i.tar"),
                            policy=ScanPolicy("safetensors_gguf_only"), workdir=tmp_path / "w")


def _valid(text: str) -> dict:
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    return json.loads(text)


@pytest.mark.django_db
def test_the_lineage_is_cyclonedx_data_a_base_version_and_two_datasets(
        tmp_path, msp_admin, settings):
    """The model card refers to each dataset (a `data` component with its identifier and
    digest); the base catalog version is the model's pedigree ancestor, with its digest."""
    settings.REGISTRY_URL = "https://registry.example.test"
    base = published_version(Model.objects.create(slug="med-base", name="Med base",
                                                  task="chat"), version="1.0")
    tuned = published_version(Model.objects.create(slug="med-tuned", name="Med tuned",
                                                   task="chat"), version="2.0")
    notes_digest = "sha256:" + "AB" * 32
    tuned = services.version_set_lineage(
        actor=msp_admin, version=tuned, base_version=base,
        datasets=[("s3://corpora/clinical-notes-2026", notes_digest),
                  ("hf.co/datasets/acme/instructions", "git:" + "c0ffee" * 6)])
    sbom = _valid(sbom_build(tuned, _scan(tmp_path)))

    components = {c["bom-ref"]: c for c in sbom["components"]}
    model = components["model"]
    card = model["modelCard"]
    refs = [d["ref"] for d in card["modelParameters"]["datasets"] if "ref" in d]
    datasets = {components[ref]["name"]: components[ref] for ref in refs}
    assert set(datasets) == {"s3://corpora/clinical-notes-2026",
                             "hf.co/datasets/acme/instructions"}
    notes = datasets["s3://corpora/clinical-notes-2026"]
    assert notes["type"] == "data"
    assert notes["data"] == [{"type": "dataset", "name": "s3://corpora/clinical-notes-2026"}]
    assert notes["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    # A digest CycloneDX has no algorithm for is kept verbatim.
    instructions = datasets["hf.co/datasets/acme/instructions"]
    assert "hashes" not in instructions
    assert instructions["properties"] == [{"name": "sovereign-portal:lineage:digest",
                                           "value": "git:" + "c0ffee" * 6}]

    (ancestor,) = model["pedigree"]["ancestors"]
    assert (ancestor["type"], ancestor["name"], ancestor["version"]) == (
        "machine-learning-model", "med-base", "1.0")
    assert ancestor["hashes"] == [{"alg": "SHA-256",
                                   "content": base.manifest_digest.removeprefix("sha256:")}]
    assert {"name": "sovereign-portal:lineage:base_version", "value": "med-base:1.0"} in \
        ancestor["properties"]
    assert not any(p["name"].startswith("sovereign-portal:lineage:base")
                   for p in card.get("properties", []))


def test_an_external_base_model_is_the_ancestor_with_its_digest(tmp_path):
    model = SimpleNamespace(slug="acme-chat", task="chat", provider="", description="",
                            license="", model_card="")
    version = SimpleNamespace(
        version="1.0", base_version=None, base_model="hf.co/mistralai/Mistral-7B-v0.3",
        base_model_digest="sha256:" + "cd" * 32, training_data="", source_commit="",
        hyperparameters={}, datasets=[])
    sbom = _valid(build_sbom(model=model, image_reference=f"registry.test/landing/a@{DIGEST}",
                             manifest_digest=DIGEST, report=_scan(tmp_path), version=version))
    model_component = sbom["components"][0]
    assert model_component["pedigree"]["ancestors"] == [{
        "type": "machine-learning-model", "bom-ref": "base-model",
        "name": "hf.co/mistralai/Mistral-7B-v0.3", "description": "External base model",
        "hashes": [{"alg": "SHA-256", "content": "cd" * 32}]}]
    assert "datasets" not in model_component["modelCard"]["modelParameters"]
    assert [c for c in sbom["components"] if c["type"] == "data"] == []
