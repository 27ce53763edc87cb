"""Browsing the catalog: tenants see entitled models only (another's is a 404), MSP admins
everything; model cards render without raw HTML; MSP settings change state."""

import pytest

from models_catalog import services
from models_catalog.models import Model, ModelLifecycle
from tests.factories import published_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(msp_admin, tenant, other_tenant):
    shared = services.model_create(actor=msp_admin, slug="shared-chat", name="Shared chat",
                                   task="chat", provider="Mistral",
                                   model_card="# Shared\n<script>alert(1)</script>\n"
                                              "[click](javascript:alert(1)) **bold**")
    private = services.model_create(actor=msp_admin, slug="globex-embed", name="Globex embed",
                                    task="embeddings", available_to_all_tenants=False)
    services.model_set_entitlements(actor=msp_admin, model=private, all_tenants=False,
                                    tenants=[other_tenant])
    published_version(shared, version="1.0")
    services.version_create(actor=msp_admin, model=shared, version="2.0-rc")
    return shared, private


def test_tenants_see_only_entitled_models(client, developer, outsider, catalog):
    shared, private = catalog
    client.force_login(developer)
    page = client.get("/t/acme/models/").content.decode()
    assert "Shared chat" in page and "Globex embed" not in page
    assert client.get("/t/acme/models/globex-embed/").status_code == 404
    assert client.get("/api/tenants/acme/models/globex-embed/").status_code == 404
    assert [m["slug"] for m in client.get("/api/tenants/acme/models/").json()] == ["shared-chat"]
    client.force_login(outsider)
    assert client.get("/t/globex/models/globex-embed/").status_code == 200


def test_tenants_see_published_versions_only(client, developer, catalog):
    client.force_login(developer)
    page = client.get("/t/acme/models/shared-chat/").content.decode()
    assert "1.0" in page and "2.0-rc" not in page and "Verified" in page
    detail = client.get("/api/tenants/acme/models/shared-chat/").json()
    assert [v["version"] for v in detail["versions"]] == ["1.0"]
    sbom = client.get("/t/acme/models/shared-chat/v/1.0/sbom/")
    assert sbom.status_code == 200 and b"CycloneDX" in sbom.content
    assert client.get("/t/acme/models/shared-chat/v/2.0-rc/sbom/").status_code == 404


def test_model_card_is_rendered_without_raw_html(client, developer, catalog):
    client.force_login(developer)
    page = client.get("/t/acme/models/shared-chat/").content.decode()
    assert "<h1>Shared</h1>" in page and "<strong>bold</strong>" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert 'href="javascript:' not in page


def test_msp_admin_sees_every_model_and_version_and_filters(client, msp_admin, catalog):
    client.force_login(msp_admin)
    page = client.get("/catalog/").content.decode()
    assert "Shared chat" in page and "Globex embed" in page and "In the gate" in page
    partial = client.get("/catalog/?task=embeddings", HTTP_HX_REQUEST="true").content.decode()
    assert "Globex embed" in partial and "Shared chat" not in partial
    assert "No model matches" in client.get("/catalog/?q=nothing-like-this",
                                            HTTP_HX_REQUEST="true").content.decode()
    detail = client.get("/catalog/shared-chat/").content.decode()
    assert "2.0-rc" in detail and "Uploading" in detail


def test_msp_settings_change_entitlements_prices_and_lifecycle(client, msp_admin, catalog,
                                                               tenant):
    client.force_login(msp_admin)
    response = client.post("/catalog/globex-embed/entitlements/", {"tenants": ["acme"]})
    assert response.status_code == 302
    private = Model.objects.get(slug="globex-embed")
    assert list(private.entitled_tenants.values_list("slug", flat=True)) == ["acme"]
    response = client.post("/catalog/globex-embed/entitlements/", {})
    assert response.status_code == 422 and "Choose the tenants" in response.content.decode()
    response = client.post("/catalog/shared-chat/prices/", {
        "input_per_million": "0.5", "output_per_million": "1.5", "currency": "eur"})
    assert response.status_code == 422 and "three-letter" in response.content.decode()
    client.post("/catalog/shared-chat/prices/", {
        "input_per_million": "0.5", "output_per_million": "1.5", "currency": "EUR"})
    assert Model.objects.get(slug="shared-chat").prices.count() == 1
    client.post("/catalog/shared-chat/lifecycle/", {"lifecycle": "deprecated"})
    assert Model.objects.get(slug="shared-chat").lifecycle == ModelLifecycle.DEPRECATED
    client.post("/catalog/shared-chat/card/", {"name": "Shared chat", "model_card": "New card",
                                               "license": "Apache-2.0"})
    assert Model.objects.get(slug="shared-chat").model_card == "New card"


def test_wizard_step_one_creates_a_model_and_a_version(client, msp_admin, registry_settings):
    client.force_login(msp_admin)
    response = client.post("/catalog/upload/", {
        "slug": "new-llm", "name": "New LLM", "task": "chat", "version": "0.1",
        "hyperparameters": "[1]"})
    assert response.status_code == 422 and "JSON object" in response.content.decode()
    response = client.post("/catalog/upload/", {
        "slug": "new-llm", "name": "New LLM", "task": "chat", "version": "0.1",
        "base_model": "llama-3-8b", "hyperparameters": '{"lr": 0.0001}',
        "model_card": "# New"})
    assert response.status_code == 302 and response.url == "/catalog/new-llm/v/0.1/"
    version = Model.objects.get(slug="new-llm").versions.get()
    assert version.uploaded_by == msp_admin and version.hyperparameters == {"lr": 0.0001}
    assert version.landing_repository == "landing/new-llm"
    # A new version of the existing model; a duplicate label is refused on the form.
    model = Model.objects.get(slug="new-llm")
    response = client.post("/catalog/upload/", {"existing_model": model.pk, "version": "0.1"})
    assert response.status_code == 422 and "already has a version" in response.content.decode()
    page = client.get("/catalog/new-llm/v/0.1/").content.decode()
    assert "Upload an archive" in page and "landing repository" in page


def test_api_creates_versions_and_refuses_bad_input(client, msp_admin, catalog):
    client.force_login(msp_admin)
    response = client.post("/api/models/shared-chat/versions/", {"version": "bad label!"},
                           content_type="application/json")
    assert response.status_code == 400 and "version" in response.json()["errors"]
    response = client.post("/api/models/shared-chat/versions/", {"version": "3.0"},
                           content_type="application/json")
    assert response.status_code == 201 and response.json()["status"] == "uploading"
    response = client.post("/api/models/shared-chat/versions/3.0/approve/")
    assert response.status_code == 400 and "submitted" in response.json()["detail"]
    schema = client.get("/api/schema/").content.decode()
    for path in ("/api/models/{slug}/versions/{version}/approve/", "/api/uploads/{id}/",
                 "/api/tenants/{tenant_slug}/models/"):
        assert path in schema
