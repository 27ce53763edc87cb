"""The SBOM validates against CycloneDX 1.6 and names the image, the model and every file."""

import json
from types import SimpleNamespace

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from models_catalog.sbom import build_sbom
from models_catalog.scanning import ScanPolicy, scan_oci_archive
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
    assert lineage["sovereign-portal:lineage:base_model"] == "llama-3-8b"
    files = {c["name"]: c for c in model_component["components"]}
    weights = files["model.safetensors"]
    assert weights["type"] == "machine-learning-model"
    entry = next(f for f in report.files if f.path == "model.safetensors")
    assert weights["hashes"] == [{"alg": "SHA-256", "content": entry.sha256}]
    assert files["config.json"]["type"] == "file"
