import pytest

pytestmark = pytest.mark.django_db


def test_create_tenant_with_bad_fields_answers_400_with_field_errors(client, msp_admin):
    client.force_login(msp_admin)
    response = client.post("/api/tenants/", {"slug": "Bad Slug", "name": "",
                                             "contact_email": "x", "jurisdiction": "DE",
                                             "max_gpus": -3}, content_type="application/json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"slug", "name", "contact_email", "max_gpus"} <= set(errors)


def test_model_validation_errors_also_answer_400(client, msp_admin, tenant):
    client.force_login(msp_admin)
    response = client.patch(f"/api/tenants/{tenant.slug}/", {"jurisdiction": "Germany"},
                            content_type="application/json")
    assert response.status_code == 400
    assert "jurisdiction" in response.json()["errors"]


def test_malformed_json_answers_400(client, msp_admin):
    client.force_login(msp_admin)
    response = client.post("/api/tenants/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_business_rule_refusal_answers_400_with_reason(client, msp_admin, tenant):
    client.force_login(msp_admin)
    assert client.post(f"/api/tenants/{tenant.slug}/reactivate/").status_code == 400
    assert "already active" in client.post(
        f"/api/tenants/{tenant.slug}/reactivate/").json()["detail"]


def test_unknown_api_path_is_json_404(client, msp_admin):
    client.force_login(msp_admin)
    response = client.get("/api/tenants/nope/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


def test_openapi_schema_lists_tenant_endpoints(client, msp_admin):
    client.force_login(msp_admin)
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/tenants/{slug}/members/{id}/" in paths
    assert "/api/tenants/{slug}/invitations/" in paths


def test_api_docs_load_assets_from_the_portal_only(client, msp_admin):
    client.force_login(msp_admin)
    body = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in body
    assert "cdn" not in body.lower() and "https://" not in body
