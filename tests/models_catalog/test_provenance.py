"""Lineage and provenance: versions name their base model (a catalog version, or an external
one with its digest) and datasets; a query names every version, deployment and tenant
downstream of a dataset, a base model or a version, transitively; the answer is exported
signed and verifies with the platform's public key (and fails after any change)."""

import base64
import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from deployments import services as deployment_services
from deployments.models import Backend, Deployment, DeploymentStatus
from models_catalog import services
from models_catalog.models import DatasetReference, Model
from models_catalog.provenance import provenance_query
from models_catalog.provenance_verify import verify_envelope
from portal import signing
from portal.api import ApplicationError
from tests.factories import published_version

pytestmark = pytest.mark.django_db

NOTES = "s3://corpora/clinical-notes-2026"
NOTES_DIGEST = "sha256:" + "ab" * 32
OTHER = "s3://corpora/public-web"


@pytest.fixture
def lineage(msp_admin, tenant, other_tenant):
    """base (trained on NOTES) → tuned (+ OTHER) → distilled; `unrelated` trained on OTHER.
    A dedicated deployment of `tuned` for acme, a shared one of `distilled` (its model is
    entitled to globex only), a deleted one of `base`."""
    base = published_version(Model.objects.create(slug="med-base", name="Med base",
                                                  task="chat"), version="1.0")
    services.version_set_lineage(actor=msp_admin, version=base, base_version=None,
                                 base_model="hf.co/mistralai/Mistral-7B-v0.3",
                                 base_model_digest="git:" + "c0ffee" * 6,
                                 datasets=[(NOTES, NOTES_DIGEST)])
    tuned_model = Model.objects.create(slug="med-tuned", name="Med tuned", task="chat")
    tuned = published_version(tuned_model, version="2.0")
    services.version_set_lineage(actor=msp_admin, version=tuned, base_version=base,
                                 datasets=[(OTHER, "")])
    distilled_model = Model.objects.create(slug="med-small", name="Med small", task="chat",
                                           available_to_all_tenants=False)
    distilled_model.entitled_tenants.set([other_tenant])
    distilled = published_version(distilled_model, version="0.1")
    services.version_set_lineage(actor=msp_admin, version=distilled, base_version=tuned)
    unrelated = published_version(Model.objects.create(slug="web", name="Web", task="chat"))
    services.version_set_lineage(actor=msp_admin, version=unrelated, base_version=None,
                                 datasets=[(OTHER, "")])
    cluster = deployment_services.cluster_create(
        actor=msp_admin, name="fra-gpu-1", api_url="https://k8s.fra.example.test",
        jurisdiction="DE", credentials="cluster-token")
    common = {"cluster": cluster, "backend": Backend.KSERVE, "status": DeploymentStatus.READY}
    Deployment.objects.create(model=tuned_model, version=tuned, tenant=tenant, name="acme-med",
                              namespace="tenant-acme", resource_name="acme-med", **common)
    Deployment.objects.create(model=distilled_model, version=distilled, name="small-shared",
                              resource_name="small-shared", **common)
    Deployment.objects.create(model=base.model, version=base, tenant=tenant, name="gone",
                              resource_name="gone", **{**common,
                                                       "status": DeploymentStatus.DELETED})
    return base, tuned, distilled, unrelated


def test_a_dataset_query_names_every_version_deployment_and_tenant_downstream(lineage):
    base, tuned, distilled, unrelated = lineage
    answer = provenance_query(kind="dataset", identifier=NOTES)
    assert [(str(d.version), d.depth) for d in answer.versions] == [
        ("med-base:1.0", 0), ("med-tuned:2.0", 1), ("med-small:0.1", 2)]
    assert answer.versions[2].derives_from == "base version med-tuned:2.0"
    assert sorted(d["name"] for d in answer.deployments) == ["acme-med", "small-shared"]
    tenants = {t["slug"]: t["via"] for t in answer.tenants}
    assert set(tenants) == {"acme", "globex"}
    assert "dedicated deployment acme-med" in tenants["acme"][0]
    assert "shared deployment small-shared" in tenants["globex"][0]
    # The snapshot digest narrows the query; another snapshot finds nothing.
    assert len(provenance_query(kind="dataset", identifier=NOTES,
                                digest=NOTES_DIGEST).versions) == 3
    assert provenance_query(kind="dataset", identifier=NOTES,
                            digest="sha256:" + "00" * 32).versions == []
    # OTHER: tuned and its descendants, and the unrelated version — not the base.
    other = provenance_query(kind="dataset", identifier=OTHER)
    assert sorted(str(d.version) for d in other.versions) == [
        "med-small:0.1", "med-tuned:2.0", "web:1.0"]


def test_base_model_and_version_queries(lineage):
    base, tuned, distilled, _ = lineage
    answer = provenance_query(kind="base_model", identifier="hf.co/mistralai/Mistral-7B-v0.3")
    assert [str(d.version) for d in answer.versions] == ["med-base:1.0", "med-tuned:2.0",
                                                         "med-small:0.1"]
    assert provenance_query(kind="base_model", identifier="hf.co/mistralai/Mistral-7B-v0.3",
                            digest="git:deadbeefdeadbeef").versions == []
    answer = provenance_query(kind="version", identifier="med-tuned:2.0")
    assert [str(d.version) for d in answer.versions] == ["med-tuned:2.0", "med-small:0.1"]
    with pytest.raises(ApplicationError, match="No catalog version"):
        provenance_query(kind="version", identifier="med-tuned:9.9")


def test_lineage_is_validated_and_audited(msp_admin, lineage):
    base, tuned, distilled, _ = lineage
    with pytest.raises(ApplicationError) as cycle:
        services.version_set_lineage(actor=msp_admin, version=base, base_version=distilled)
    assert "own ancestor" in cycle.value.field_errors["base_version"][0]
    with pytest.raises(ApplicationError) as both:
        services.version_set_lineage(actor=msp_admin, version=tuned, base_version=base,
                                     base_model="elsewhere")
    assert "base_model" in both.value.field_errors
    with pytest.raises(ApplicationError) as digest:
        services.version_set_lineage(actor=msp_admin, version=tuned, base_version=base,
                                     datasets=[(OTHER, "not a digest")])
    assert "datasets" in digest.value.field_errors
    event = AuditEvent.objects.filter(action="model_version.lineage_changed").order_by(
        "-seq").first()
    # The refusals changed nothing: the last change is still the unrelated version's.
    assert event.target_id == str(lineage[3].pk)
    assert event.details["after"]["datasets"] == [{"identifier": OTHER, "digest": ""}]
    changes = AuditEvent.objects.filter(action="model_version.lineage_changed",
                                        target_id=str(tuned.pk))
    assert changes.count() == 1
    assert changes.get().details["after"]["base_version"] == "med-base:1.0"


def test_the_signed_export_verifies_and_fails_after_a_change(client, compliance_officer,
                                                           lineage, tmp_path, settings):
    client.force_login(compliance_officer)
    response = client.post("/api/provenance/export/", {"kind": "dataset", "identifier": NOTES},
                           content_type="application/json")
    assert response.status_code == 200
    envelope = response.content
    check = verify_envelope(envelope, signing.platform_public_key())
    assert check.ok, check.problems
    statement = check.statement
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert len(statement["subject"]) == 3
    assert {t["slug"] for t in statement["predicate"]["tenants"]} == {"acme", "globex"}
    assert statement["predicate"]["exported_by"] == compliance_officer.email
    assert AuditEvent.objects.filter(action="provenance.exported").count() == 1

    path = tmp_path / "answer.json"
    path.write_bytes(envelope)
    call_command("provenance_verify", str(path))
    key = tmp_path / "platform.pem"
    key.write_bytes(signing.public_key_pem(signing.platform_public_key()))
    offline = subprocess.run([sys.executable, "-m", "models_catalog.provenance_verify",
                              str(path), "--public-key", str(key)],
                             capture_output=True, text=True, cwd=settings.BASE_DIR)
    assert offline.returncode == 0, offline.stderr
    assert "tenant globex" in offline.stdout and "verified" in offline.stdout

    # Drop a tenant from the answer: the signature no longer covers it.
    data = json.loads(envelope)
    payload = json.loads(base64.b64decode(data["payload"]))
    payload["predicate"]["tenants"] = payload["predicate"]["tenants"][:1]
    data["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(data))
    with pytest.raises(CommandError, match="NOT verified"):
        call_command("provenance_verify", str(path))
    assert not verify_envelope(path.read_bytes(), signing.platform_public_key()).ok


def test_page_and_api_are_for_msp_admins_and_compliance_officers(
        client, msp_admin, compliance_officer, tenant_admin, developer, lineage):
    for user in (msp_admin, compliance_officer):
        client.force_login(user)
        page = client.get("/catalog/provenance/", {"kind": "dataset", "identifier": NOTES})
        assert page.status_code == 200
        text = page.content.decode()
        assert "med-small:0.1" in text and "small-shared" in text and "Globex" in text
        api = client.get("/api/provenance/", {"kind": "dataset", "identifier": NOTES})
        assert api.status_code == 200
        assert len(api.json()["versions"]) == 3
        export = client.post("/catalog/provenance/export/",
                             {"kind": "dataset", "identifier": NOTES})
        assert export.status_code == 200
        assert verify_envelope(export.content, signing.platform_public_key()).ok
    for user in (tenant_admin, developer):
        client.force_login(user)
        assert client.get("/catalog/provenance/",
                          {"kind": "dataset", "identifier": NOTES}).status_code in (403, 404)
        assert client.get("/api/provenance/",
                          {"kind": "dataset", "identifier": NOTES}).status_code == 403
        assert client.post("/api/provenance/export/", {"kind": "dataset", "identifier": NOTES},
                           content_type="application/json").status_code == 403
        assert client.post("/catalog/provenance/export/",
                           {"kind": "dataset", "identifier": NOTES}).status_code in (403, 404)
    assert AuditEvent.objects.filter(action="provenance.exported").count() == 2


def test_lineage_is_set_in_the_wizard_and_api_and_edited_by_msp_admins_only(
        client, msp_admin, compliance_officer, lineage):
    base, tuned, *_ = lineage
    client.force_login(msp_admin)
    response = client.post("/catalog/upload/", {
        "slug": "med-next", "name": "Med next", "task": "chat", "version": "1.0",
        "base_version": base.pk,
        "datasets": f"{NOTES} {NOTES_DIGEST}\n\ns3://corpora/extra\n"})
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Model.objects.get(slug="med-next").versions.get()
    assert created.base_version == base
    assert sorted(DatasetReference.objects.filter(version=created).values_list(
        "identifier", "digest")) == [(NOTES, NOTES_DIGEST), ("s3://corpora/extra", "")]

    response = client.post("/api/models/med-tuned/versions/", {
        "version": "3.0", "base_version": "med-base:1.0",
        "datasets": [{"identifier": NOTES, "digest": NOTES_DIGEST}]},
        content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["base_version"] == "med-base:1.0"
    assert response.json()["datasets"] == [{"identifier": NOTES, "digest": NOTES_DIGEST}]
    unknown = client.post("/api/models/med-tuned/versions/",
                          {"version": "3.1", "base_version": "nope:1"},
                          content_type="application/json")
    assert unknown.status_code == 400 and "base_version" in unknown.json()["errors"]

    put = client.put("/api/models/med-tuned/versions/2.0/lineage/", {
        "base_model": "hf.co/other/model", "base_model_digest": "sha256:" + "cd" * 32},
        content_type="application/json")
    assert put.status_code == 200, put.json()
    assert put.json() == {"base_version": "", "base_model": "hf.co/other/model",
                          "base_model_digest": "sha256:" + "cd" * 32, "datasets": []}
    # tuned no longer derives from NOTES, nor does its descendant.
    assert [str(d.version) for d in provenance_query(kind="dataset", identifier=NOTES)
            .versions] == ["med-base:1.0", "med-next:1.0", "med-tuned:3.0"]

    page = client.post("/catalog/med-tuned/v/2.0/lineage/",
                       {"base_version": base.pk, "datasets": "x not-a-digest-at-all"})
    assert page.status_code == 302
    tuned.refresh_from_db()
    assert tuned.base_version == base and tuned.base_model == ""
    assert list(tuned.datasets.values_list("identifier", flat=True)) == ["x not-a-digest-at-all"]

    client.force_login(compliance_officer)
    assert client.get("/api/models/med-tuned/versions/2.0/lineage/").status_code == 200
    assert client.put("/api/models/med-tuned/versions/2.0/lineage/", {},
                      content_type="application/json").status_code == 403
    assert client.post("/catalog/med-tuned/v/2.0/lineage/", {}).status_code in (403, 404)


def test_a_refused_lineage_correction_shows_on_the_page_and_tenants_cannot_read_lineage(
        client, msp_admin, developer, outsider, lineage):
    base, tuned, *_ = lineage
    client.force_login(msp_admin)
    page = client.post("/catalog/med-tuned/v/2.0/lineage/",
                       {"base_version": base.pk, "base_model": "elsewhere"})
    assert page.status_code == 422
    assert "Name the base model once" in page.content.decode()
    tuned.refresh_from_db()
    assert tuned.base_version == base and tuned.base_model == ""
    version_page = client.get("/catalog/med-tuned/v/2.0/").content.decode()
    assert "med-base:1.0" in version_page and OTHER in version_page
    assert "med-small:0.1" in version_page  # derived from it
    for user in (developer, outsider):
        client.force_login(user)
        assert client.get("/api/models/med-tuned/versions/2.0/lineage/").status_code == 403
        assert client.put("/api/models/med-tuned/versions/2.0/lineage/", {},
                          content_type="application/json").status_code == 403
        assert client.post("/catalog/med-tuned/v/2.0/lineage/", {}).status_code in (403, 404)
