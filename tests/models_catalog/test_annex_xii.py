"""EU AI Act Annex XII information: MSP admins edit it (page and API), tenants read it, it
fills the ML-BOM's model card (valid CycloneDX 1.6) and goes into the evidence bundle."""

import json
import zipfile
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from django.utils import timezone

from audit.models import AuditEvent
from models_catalog import oms, services
from models_catalog.models import AnnexXIIInformation, Model, ModelVersion
from models_catalog.sbom import build_sbom
from models_catalog.scanning import ScanPolicy, scan_oci_archive
from tests.factories import published_version
from tests.support.modelcar import build_modelcar_archive

pytestmark = pytest.mark.django_db

ANNEX = {
    "intended_tasks": "Chat assistants for public-administration staff; RAG over case files.",
    "acceptable_use": "No profiling of citizens; no decisions without human review.",
    "architecture": "Decoder-only transformer, 26 layers",
    "parameter_count": "268000000",
    "training_approach": "self-supervised",
    "input_modalities": "text",
    "output_modalities": "text",
    "license": "Gemma terms of use",
    "context_length": "32768",
    "training_data_summary": "Public web text and code, filtered for quality and PII.",
    "limitations": "Weak at arithmetic; English-centric.",
    "training_energy_kwh": "1234.5",
}


@pytest.fixture
def catalog(msp_admin, other_tenant):
    shared = services.model_create(actor=msp_admin, slug="shared-chat", name="Shared chat",
                                   task="chat", provider="Gemma")
    private = services.model_create(actor=msp_admin, slug="globex-only", name="Globex only",
                                    task="chat", available_to_all_tenants=False)
    services.model_set_entitlements(actor=msp_admin, model=private, all_tenants=False,
                                    tenants=[other_tenant])
    return shared, private


def test_msp_admin_edits_the_annex_xii_information_on_the_model_page(client, msp_admin,
                                                                      catalog):
    client.force_login(msp_admin)
    page = client.get("/catalog/shared-chat/").content.decode()
    assert "Edit the Annex XII information" in page and "has not given" in page
    response = client.post("/catalog/shared-chat/annex-xii/", ANNEX)
    assert response.status_code == 302
    info = AnnexXIIInformation.objects.get(model__slug="shared-chat")
    assert info.parameter_count == 268_000_000 and info.training_energy_kwh == Decimal("1234.5")
    assert info.updated_by == msp_admin
    model = Model.objects.get(slug="shared-chat")
    assert model.license == "Gemma terms of use" and model.context_length == 32768
    event = AuditEvent.objects.filter(action="model.annex_xii_updated").latest("seq")
    assert "acceptable_use" in event.details["fields"]
    page = client.get("/catalog/shared-chat/").content.decode()
    assert "No profiling of citizens" in page and "1234.5 kWh" in page


def test_the_form_shows_each_error_on_its_field(client, msp_admin, catalog):
    client.force_login(msp_admin)
    response = client.post("/catalog/shared-chat/annex-xii/", {
        **ANNEX, "parameter_count": "-3", "training_energy_kwh": "lots",
        "training_approach": "magic", "context_length": "0"})
    assert response.status_code == 422
    form = response.context["annex_form"]
    assert set(form.errors) >= {"parameter_count", "training_energy_kwh", "training_approach",
                                "context_length"}
    page = response.content.decode()
    assert '<details open>' in page.replace("\n", "") or "details open" in page
    assert not AnnexXIIInformation.objects.filter(model__slug="shared-chat").exists()


def test_tenants_read_it_but_cannot_write_it(client, developer, tenant_admin,
                                             compliance_officer, catalog, msp_admin):
    services.model_update_annex_xii(actor=msp_admin, model=catalog[0],
                                    acceptable_use="Human review of every decision.",
                                    parameter_count=7_000_000_000)
    client.force_login(developer)
    page = client.get("/t/acme/models/shared-chat/").content.decode()
    assert "EU AI Act Annex XII information" in page
    assert "Human review of every decision." in page
    assert "Edit the Annex XII information" not in page
    detail = client.get("/api/tenants/acme/models/shared-chat/").json()
    assert detail["annex_xii"]["acceptable_use"] == "Human review of every decision."
    assert detail["annex_xii"]["parameter_count"] == 7_000_000_000
    # Another tenant's model is a 404, with its Annex XII information.
    assert client.get("/t/acme/models/globex-only/").status_code == 404
    assert client.get("/api/tenants/acme/models/globex-only/").status_code == 404
    for user in (developer, tenant_admin, compliance_officer):
        client.force_login(user)
        response = client.post("/catalog/shared-chat/annex-xii/", ANNEX)
        assert response.status_code in (403, 404), user
        response = client.patch("/api/models/shared-chat/annex-xii/",
                                {"acceptable_use": "Anything goes."},
                                content_type="application/json")
        assert response.status_code in (403, 404), user
    assert AnnexXIIInformation.objects.get(model__slug="shared-chat").acceptable_use == \
        "Human review of every decision."


def test_the_api_reads_and_writes_it(client, msp_admin, compliance_officer, catalog):
    client.force_login(msp_admin)
    document = client.get("/api/models/shared-chat/annex-xii/").json()
    assert document["acceptable_use"] == "" and document["updated_at"] is None
    body = {**ANNEX, "parameter_count": 268_000_000, "context_length": 32768}
    response = client.put("/api/models/shared-chat/annex-xii/", body,
                          content_type="application/json")
    assert response.status_code == 200, response.json()
    assert response.json()["context_window"] == 32768
    assert response.json()["training_energy_kwh"] == "1234.500"
    response = client.put("/api/models/shared-chat/annex-xii/", {"acceptable_use": "x"},
                          content_type="application/json")
    assert response.status_code == 400 and "intended_tasks" in response.json()["errors"]
    response = client.patch("/api/models/shared-chat/annex-xii/",
                            {"training_energy_kwh": None, "parameter_count": -1},
                            content_type="application/json")
    assert response.status_code == 400 and "parameter_count" in response.json()["errors"]
    response = client.patch("/api/models/shared-chat/annex-xii/", {"training_energy_kwh": None},
                            content_type="application/json")
    assert response.status_code == 200 and response.json()["training_energy_kwh"] is None
    assert response.json()["acceptable_use"] == ANNEX["acceptable_use"]
    client.force_login(compliance_officer)  # reads the catalog, writes nothing
    assert client.get("/api/models/shared-chat/annex-xii/").status_code == 200


def _annex(**overrides):
    values = {"intended_tasks": ANNEX["intended_tasks"], "acceptable_use": ANNEX["acceptable_use"],
              "architecture": ANNEX["architecture"], "parameter_count": 268_000_000,
              "training_approach": "self-supervised", "input_modalities": "text",
              "output_modalities": "text", "training_data_summary": ANNEX["training_data_summary"],
              "limitations": ANNEX["limitations"], "training_energy_kwh": Decimal("1234.5")}
    values.update(overrides)
    return SimpleNamespace(**values)


def test_the_ml_bom_model_card_is_complete_and_valid(tmp_path):
    report = scan_oci_archive(build_modelcar_archive(tmp_path / "i.tar"),
                              policy=ScanPolicy("safetensors_gguf_only"),
                              workdir=tmp_path / "w")
    model = SimpleNamespace(slug="acme-chat", name="Acme Chat", task="chat", license="gemma",
                            provider="Gemma", description="A chat model.", model_card="# Card",
                            context_length=32768, available_to_all_tenants=False)
    version = SimpleNamespace(version="1.2", base_model="gemma-3", training_data="snap-2026-10",
                              source_commit="abc123", hyperparameters={})
    text = build_sbom(model=model, image_reference="registry.test/landing/acme@sha256:" + "a" * 64,
                      manifest_digest="sha256:" + "a" * 64, report=report, version=version,
                      annex_xii=_annex())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    component = json.loads(text)["components"][0]
    card = component["modelCard"]
    parameters = card["modelParameters"]
    assert parameters["approach"] == {"type": "self-supervised"}
    assert parameters["task"] == "chat" and parameters["architectureFamily"] == "Gemma"
    assert parameters["modelArchitecture"] == ANNEX["architecture"]
    assert parameters["datasets"] == [{"type": "dataset", "name": "snap-2026-10",
                                       "description": ANNEX["training_data_summary"]}]
    assert parameters["inputs"] == [{"format": "text"}]
    considerations = card["considerations"]
    assert considerations["useCases"] == [ANNEX["intended_tasks"]]
    assert considerations["technicalLimitations"] == [ANNEX["limitations"]]
    assert considerations["users"] == ["Deployers: the tenants of the platform entitled to "
                                       "the model"]
    energy = considerations["environmentalConsiderations"]["energyConsumptions"][0]
    assert energy["activity"] == "training"
    assert energy["activityEnergyCost"] == {"value": 1234.5, "unit": "kWh"}
    properties = {p["name"]: p["value"] for p in card["properties"]}
    assert properties["sovereign-portal:annex-xii:acceptable_use"] == ANNEX["acceptable_use"]
    assert properties["sovereign-portal:annex-xii:parameter_count"] == "268000000"
    assert properties["sovereign-portal:annex-xii:context_window"] == "32768"
    assert properties["sovereign-portal:annex-xii:license"] == "gemma"
    assert component["licenses"] == [{"license": {"name": "gemma"}}]
    # An embeddings model without modalities given reads text and writes vectors; no energy.
    model.task = "embeddings"
    text = build_sbom(model=model, image_reference="registry.test/landing/acme@sha256:" + "a" * 64,
                      manifest_digest="sha256:" + "a" * 64, report=report, version=version,
                      annex_xii=_annex(input_modalities="", output_modalities="",
                                       training_energy_kwh=None, training_approach=""))
    card = json.loads(text)["components"][0]["modelCard"]
    assert card["modelParameters"]["outputs"] == [{"format": "embedding vector"}]
    assert "approach" not in card["modelParameters"]
    assert "environmentalConsiderations" not in card["considerations"]


@pytest.mark.django_db(transaction=True)
def test_approval_signs_an_sbom_that_carries_the_annex_xii_information(
        registry_client, msp_admin, second_admin):
    from tests.models_catalog.conftest import make_submitted_version

    version = make_submitted_version(registry_client, msp_admin)
    services.model_update_annex_xii(actor=msp_admin, model=version.model,
                                    acceptable_use="Only with human review.",
                                    parameter_count=1_000_000)
    version = services.version_approve(actor=second_admin, version=version)
    version.refresh_from_db()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(version.sbom) is None
    card = json.loads(version.sbom)["components"][0]["modelCard"]
    properties = {p["name"]: p["value"] for p in card["properties"]}
    assert properties["sovereign-portal:annex-xii:acceptable_use"] == "Only with human review."
    statement = json.loads(version.signed_statement)
    from models_catalog import registry as oci
    assert statement["sbom_digest"] == oci.sha256_digest(version.sbom.encode())
    assert version.sbom_digest == statement["sbom_digest"]


def test_the_evidence_bundle_carries_annex_xii_and_oms_signatures(msp_admin, tmp_path):
    from audit.bundle_verify import verify_bundle
    from audit.reports.generate import produce
    from audit.reports.periods import Period
    from audit.services import checkpoint_create
    from portal import signing

    model = services.model_create(actor=msp_admin, slug="bundle-chat", name="Bundle chat",
                                  task="chat", license="apache-2.0")
    services.model_update_annex_xii(actor=msp_admin, model=model,
                                    intended_tasks="Drafting letters.")
    version = published_version(model, version="3.0", approver=msp_admin)
    ModelVersion.objects.filter(pk=version.pk).update(
        scanned_at=timezone.now(), approved_at=timezone.now(), model_signature_artifact_digest=
        "sha256:" + "c" * 64)
    checkpoint_create()
    now = timezone.now()
    files = produce(report_id=1, period=Period(kind="custom", label="evidence",
                                               start=now - timedelta(days=1),
                                               end=now + timedelta(days=1)),
                    tenant_id=None, tenant_slug="", generated_at=now, directory=tmp_path)
    bundle = tmp_path / files.bundle_name
    with zipfile.ZipFile(bundle) as archive:
        annex = json.loads(archive.read("evidence/annex-xii/bundle-chat.json"))
        signature = archive.read("evidence/model-signatures/bundle-chat-3.0.sigstore.json")
        key = archive.read("evidence/model-signatures/model-signing-key.pub.pem")
        report = json.loads(archive.read("report.json"))
    assert annex["intended_tasks"] == "Drafting letters." and annex["license"] == "apache-2.0"
    assert signature.decode() == version.model_signature
    assert key == oms.platform_public_key_pem()
    assert oms.verify_bundle(signature.decode(), public_key_pem=key).ok
    section = next(s for s in report["sections"] if s["key"] == "model_supply_chain")
    signatures = next(t for t in section["tables"] if t["title"] == "Signatures")
    assert "OMS signature artifact" in signatures["columns"]
    assert "sha256:" + "c" * 64 in signatures["rows"][0]
    check = verify_bundle(bundle, signing.platform_public_key())
    assert check.problems == []


def test_tenants_download_the_oms_signature_and_the_public_key(client, developer, catalog):
    version = published_version(catalog[0], version="1.0")
    private = published_version(catalog[1], version="1.0")
    client.force_login(developer)
    response = client.get("/t/acme/models/shared-chat/v/1.0/model-signature/")
    assert response.status_code == 200 and response.content.decode() == version.model_signature
    assert response["Content-Type"] == oms.BUNDLE_MEDIA_TYPE
    assert client.get("/t/acme/models/globex-only/v/1.0/model-signature/").status_code == 404
    assert private.model_signature
    assert client.get("/t/globex/models/globex-only/v/1.0/model-signature/").status_code == 404
    client.logout()  # the public key is public, like the platform key
    key = client.get("/catalog/model-signing-key.pem")
    assert key.status_code == 200 and key.content == oms.platform_public_key_pem()
