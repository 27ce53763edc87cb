"""Keys and tokens the portal sends in an Authorization header must be visible ASCII: an
upstream API key or cluster token with other characters (not Latin-1, spaces, line breaks) is
refused where it is entered — page, API and `endpoint_register` — with a message naming the
field, instead of a 500 at the first health check. A key stored before the check existed
fails its health check with a reason, not the request."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from deployments import services
from deployments.models import Backend, Cluster, Deployment, DeploymentStatus
from models_catalog.models import Model
from portal import crypto

pytestmark = pytest.mark.django_db

BASE = "http://127.0.0.1:9/v1"  # never reached: the key is refused first
BAD_KEYS = ["ключ-123", "sk-\u2028abc", "sk abc", "sk-\tabc", "sk-€"]


@pytest.fixture
def local_model(db):
    return Model.objects.create(slug="local-llm", name="Local LLM", task="chat")


def _register_form(**overrides):
    data = {"model": "", "model_slug": "", "task": "", "base_url": BASE, "upstream_model": "",
            "upstream_api_key": "", "tenant": "", "name": ""}
    return {**data, **overrides}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_the_register_page_refuses_the_key(client, msp_admin, local_model, key):
    client.force_login(msp_admin)
    response = client.post("/msp/deployments/external/new/",
                           _register_form(model=local_model.pk, upstream_api_key=key))
    assert response.status_code == 200
    assert "can hold only visible ASCII characters" in response.content.decode()
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("key", BAD_KEYS)
def test_the_api_refuses_the_key_on_create_and_edit(client, msp_admin, local_model, key):
    client.force_login(msp_admin)
    created = client.post("/api/deployments/external/", {
        "model": "local-llm", "base_url": BASE, "upstream_api_key": key},
        content_type="application/json")
    assert created.status_code == 400
    assert "upstream_api_key" in created.json()["errors"]
    assert not Deployment.objects.exists()

    deployment = services.external_endpoint_register(actor=msp_admin, model=local_model,
                                                     base_url=BASE, upstream_api_key="sk-ok")
    edited = client.patch(f"/api/deployments/{deployment.pk}/endpoint/",
                          {"upstream_api_key": key}, content_type="application/json")
    assert edited.status_code == 400 and "upstream_api_key" in edited.json()["errors"]
    deployment.refresh_from_db()
    assert crypto.decrypt(deployment.upstream_api_key_encrypted) == "sk-ok"


def test_the_edit_page_refuses_the_key(client, msp_admin, local_model):
    deployment = services.external_endpoint_register(actor=msp_admin, model=local_model,
                                                     base_url=BASE)
    client.force_login(msp_admin)
    response = client.post(f"/msp/deployments/{deployment.pk}/endpoint/", {
        "base_url": BASE, "upstream_model": "", "name": "box", "upstream_api_key": "ключ"})
    assert response.status_code == 200
    assert "Character 1 is “к” (U+043A)" in response.content.decode()


def test_the_service_refuses_the_key_for_every_caller(msp_admin, local_model):
    with pytest.raises(ValidationError) as refused:
        services.external_endpoint_register(actor=msp_admin, model=local_model, base_url=BASE,
                                            upstream_api_key="ключ")
    assert "upstream_api_key" in refused.value.message_dict


def test_endpoint_register_refuses_the_key_file(db, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("ключ-123\n", encoding="utf-8")
    with pytest.raises(CommandError, match="upstream_api_key: Character 1"):
        call_command("endpoint_register", "--model", "local-llm", "--task", "chat",
                     "--base-url", BASE, "--upstream-key-file", str(key_file))
    latin1 = tmp_path / "latin1"
    latin1.write_bytes("clé".encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8 text"):
        call_command("endpoint_register", "--model", "local-llm", "--task", "chat",
                     "--base-url", BASE, "--upstream-key-file", str(latin1))
    assert not Deployment.objects.exists()


def test_a_key_stored_before_the_check_fails_its_health_check_with_a_reason(
        client, msp_admin, local_model):
    deployment = Deployment.objects.create(
        model=local_model, backend=Backend.EXTERNAL, base_url=BASE, name="legacy",
        upstream_api_key_encrypted=crypto.encrypt("ключ"))
    client.force_login(msp_admin)
    response = client.post(f"/msp/deployments/{deployment.pk}/check/", follow=True)
    assert response.status_code == 200
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED
    assert "enter the key again" in deployment.status_reason


@pytest.mark.parametrize("token", ["токен", "eyJ abc", "abc\ndef"])
def test_cluster_tokens_are_refused_on_the_page_and_the_api(client, msp_admin, token):
    client.force_login(msp_admin)
    page = client.post("/msp/clusters/new/", {
        "name": "muc-1", "api_url": "https://k.example.test", "jurisdiction": "DE",
        "credential_kind": "token", "credentials": token, "gateway_namespace": "istio-system",
        "default_mode": "Standard", "capacity": ""})
    assert page.status_code == 200
    assert "can hold only visible ASCII characters" in page.content.decode()
    api = client.post("/api/clusters/", {
        "name": "ber-1", "api_url": "https://k.example.test", "jurisdiction": "DE",
        "credentials": token}, content_type="application/json")
    assert api.status_code == 400 and "credentials" in api.json()["errors"]
    assert not Cluster.objects.exists()
