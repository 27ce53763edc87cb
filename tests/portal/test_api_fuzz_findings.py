"""What the API fuzzer (test_api_fuzz.py) found, each as the exact request it sent."""

import pytest
import yaml
from django.core.management import call_command

from deployments import services as deployment_services
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from tests.factories import published_version
from tests.support.kube_emulator import start_emulator

pytestmark = pytest.mark.django_db


def _json(client, method, path, body=None):
    return getattr(client, method)(path, body, content_type="application/json")


def test_audit_filter_errors_are_lists_of_messages(client, msp_admin):
    client.force_login(msp_admin)
    response = client.get("/api/audit/events/", {"until": "\x95", "after": "{"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"until": ["Enter a valid date/time."],
                                         "after": ["Enter a whole number."]}


def test_errors_of_list_and_map_fields_are_lists_of_messages(client, tenant, tenant_admin):
    """DRF nests a list field's errors by index; the API answers {field: [messages]}, each
    message naming the item."""
    client.force_login(tenant_admin)
    response = _json(client, "post", f"/api/tenants/{tenant.slug}/keys/",
                     {"name": "0", "allowed_networks": ["0" * 65]})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "allowed_networks": ["[0] Ensure this field has no more than 64 characters."]}
    response = _json(client, "post", f"/api/tenants/{tenant.slug}/budgets/",
                     {"name": "0", "amount": "10", "thresholds": [1, "AAA", 100]})
    assert response.status_code == 400
    assert response.json()["errors"] == {"thresholds": ["[1] A valid integer is required."]}


def test_people_fields_may_be_null_and_the_schema_says_so(client, tenant, tenant_admin,
                                                          msp_admin, tmp_path):
    gateway_services.apikey_create(actor="system:test", tenant=tenant, name="ci")
    client.force_login(tenant_admin)
    keys = _json(client, "get", f"/api/tenants/{tenant.slug}/keys/").json()
    assert keys[0]["owner"] is None
    model = catalog_services.model_create(actor=msp_admin, slug="chat-small", name="Chat",
                                          task="chat")
    catalog_services.version_create(actor=msp_admin, model=model, version="2.0")
    client.force_login(msp_admin)
    version = _json(client, "get", "/api/models/chat-small/versions/2.0/").json()
    assert version["submitted_by"] is None and version["approved_by"] is None

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    components = yaml.safe_load(target.read_text())["components"]["schemas"]
    assert components["ApiKeyOutput"]["properties"]["owner"]["nullable"] is True
    for field in ("uploaded_by", "submitted_by", "approved_by"):
        assert components["VersionOutput"]["properties"][field]["nullable"] is True


def test_deploying_an_unknown_version_cluster_or_tenant_is_a_documented_404(
        client, msp_admin, settings, tmp_path):
    """The 404 was undocumented for this collection's POST, and said "No ModelVersion matches
    the given query."."""
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    client.force_login(msp_admin)
    body = {"version": 0, "cluster": 0, "tenant": "0", "runtime": "kserve-vllmserver",
            "cpu": "4", "memory": "16Gi", "min_replicas": 1, "max_replicas": 1}
    response = _json(client, "post", "/api/deployments/", body)
    assert response.status_code == 404
    assert response.json() == {"detail": "There is no version 0: check `version` in the body."}

    kube = start_emulator()
    try:
        version = published_version(version="1.0")
        response = _json(client, "post", "/api/deployments/", {**body, "version": version.pk})
        assert response.json()["detail"].startswith("There is no cluster 0")
        cluster = deployment_services.cluster_create(
            actor=msp_admin, name="fra-gpu-1", api_url=kube.url, jurisdiction="DE",
            credentials=kube.token)
        response = _json(client, "post", "/api/deployments/",
                         {**body, "version": version.pk, "cluster": cluster.pk})
        assert response.json()["detail"].startswith("There is no tenant 0")
    finally:
        kube.stop()
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    post = yaml.safe_load(target.read_text())["paths"]["/api/deployments/"]["post"]
    assert "404" in post["responses"]


def test_every_operation_documents_its_errors(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    error = {"$ref": "#/components/schemas/ApiError"}
    rest_api = {path: ops for path, ops in schema["paths"].items()
                if not path.startswith("/v1/")}  # the gateway answers in OpenAI's shape
    for path, operations in rest_api.items():
        for method, operation in operations.items():
            expected = {"400", "401", "403"} | ({"404"} if "{" in path else set())
            responses = operation["responses"]
            assert expected <= set(responses), (method, path)
            for code in expected:
                assert responses[code]["content"]["application/json"]["schema"] == error
            bodies = (operation.get("requestBody") or {}).get("content", {})
            assert set(bodies) <= {"application/json", "application/octet-stream"}, path


@pytest.mark.parametrize("path,body", [
    # The fuzzer's request, shrunk by hand: a NUL inside free-form JSON was a 500
    # (PostgreSQL: "unsupported Unicode escape sequence").
    ("/api/models/chat-small/versions/", {"version": "3.0", "hyperparameters": {"lr": "a\x00"}}),
    ("/api/models/chat-small/versions/", {"version": "3.0", "hyperparameters": {"\x00": 1}}),
    ("/api/models/", {"slug": "x", "name": "x", "task": "chat", "description": "\x00"}),
    ("/api/models/chat-small/versions/", {"version": "3.0", "hyperparameters": {"a": "\ud800"}}),
])
def test_a_nul_character_in_a_body_is_a_400(client, msp_admin, path, body):
    catalog_services.model_create(actor=msp_admin, slug="chat-small", name="Chat", task="chat")
    client.force_login(msp_admin)
    response = _json(client, "post", path, body)
    assert response.status_code == 400
    assert "NUL character" in response.json()["detail"]


def test_form_encoded_bodies_are_held_to_the_same_rule(client, msp_admin):
    client.force_login(msp_admin)
    response = client.post("/api/models/", {"slug": "x", "name": "x", "task": "chat",
                                            "description": "a\x00"})  # multipart
    assert response.status_code == 400 and "NUL character" in response.json()["detail"]
    response = client.post("/api/models/", "slug=x&name=x&task=chat&description=%00",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "NUL character" in response.json()["detail"]


def test_the_upload_wizard_refuses_a_nul_in_hyperparameters():
    from models_catalog.forms import UploadMetadataForm

    form = UploadMetadataForm(data={"slug": "x", "name": "x", "task": "chat", "version": "1.0",
                                 "hyperparameters": '{"lr": "\\u0000"}'})
    assert not form.is_valid()
    assert "NUL character" in str(form.errors["hyperparameters"])


def test_an_upload_chunk_at_the_wrong_offset_is_a_documented_409(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    put = yaml.safe_load(target.read_text())["paths"]["/api/uploads/{id}/"]["put"]
    conflict = put["responses"]["409"]["content"]["application/json"]["schema"]
    assert conflict == {"$ref": "#/components/schemas/UploadOffsetConflict"}


def test_a_ca_bundle_that_is_not_ascii_is_a_400(client, msp_admin):
    """Found on the merged tree: ssl refuses a non-ASCII CA with TypeError, which was a 500."""
    cluster = deployment_services.cluster_create(
        actor=msp_admin, name="muc-1", api_url="https://k.example.test", jurisdiction="DE",
        credentials="token")
    client.force_login(msp_admin)
    response = _json(client, "patch", f"/api/clusters/{cluster.pk}/",
                     {"ca_bundle": "\u00b8\u00bdL\u00b1\u0085"})
    assert response.status_code == 400
    assert "ca_bundle" in response.json()["errors"]
