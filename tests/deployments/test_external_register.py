"""Registering an external endpoint from the browser form and the REST API, against a small
OpenAI-compatible server the test starts; "Check now" on the detail page."""

import pytest

from audit.models import AuditEvent
from deployments import services
from deployments.models import Backend, Deployment, DeploymentStatus
from models_catalog.models import Model
from portal import crypto
from tests.support.processes import start_upstream, stop

S = DeploymentStatus
KEY = "upstream-secret"


@pytest.fixture(scope="module")
def keyed_upstream():
    process, base = start_upstream("--models", "local-llm", "--api-key", KEY)
    yield base
    stop(process)


@pytest.fixture
def local_model(db):
    return Model.objects.create(slug="local-llm", name="Local LLM", task="chat")


def form_data(**overrides):
    data = {"model": "", "model_slug": "", "task": "", "base_url": "", "upstream_model": "",
            "upstream_api_key": "", "tenant": "", "name": ""}
    data.update(overrides)
    return data


def test_the_list_page_links_to_the_form(client, msp_admin):
    client.force_login(msp_admin)
    page = client.get("/msp/deployments/").content.decode()
    assert 'href="/msp/deployments/external/new/"' in page


def test_registering_a_new_model_from_the_form_checks_health_and_redirects(
        client, msp_admin, keyed_upstream, tenant):
    client.force_login(msp_admin)
    form = client.get("/msp/deployments/external/new/")
    assert form.status_code == 200 and 'type="password"' in form.content.decode()
    response = client.post("/msp/deployments/external/new/", form_data(
        model_slug="local-llm", task="chat", base_url=keyed_upstream, upstream_api_key=KEY,
        tenant=tenant.pk), follow=True)
    deployment = Deployment.objects.get()
    assert response.redirect_chain[-1][0] == f"/msp/deployments/{deployment.pk}/"
    page = response.content.decode()
    assert "health check passed" in page and KEY not in page
    assert deployment.backend == Backend.EXTERNAL and deployment.status == S.READY
    assert deployment.tenant == tenant and deployment.model.task == "chat"
    assert KEY not in deployment.upstream_api_key_encrypted
    assert 'data-testid="check-now"' in page
    assert AuditEvent.objects.filter(action="deployment.registered").exists()


def test_a_failing_health_check_registers_and_says_why(client, msp_admin, keyed_upstream,
                                                       local_model):
    client.force_login(msp_admin)
    response = client.post("/msp/deployments/external/new/", form_data(
        model=local_model.pk, base_url=keyed_upstream, upstream_api_key="wrong"), follow=True)
    page = response.content.decode()
    assert "the health check failed" in page and "HTTP 401" in page
    assert Deployment.objects.get().status == S.FAILED


def test_bad_input_shows_errors_and_keeps_everything_but_the_key(client, msp_admin,
                                                                 local_model):
    client.force_login(msp_admin)
    response = client.post("/msp/deployments/external/new/", form_data(
        model_slug="brand-new", base_url="not a url", upstream_model="served-name",
        upstream_api_key=KEY))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Choose the task of the new model." in page and "Enter a valid URL." in page
    assert 'value="brand-new"' in page and 'value="served-name"' in page
    assert KEY not in page
    assert not Deployment.objects.exists() and not Model.objects.filter(
        slug="brand-new").exists()

    neither = client.post("/msp/deployments/external/new/",
                          form_data(base_url="http://127.0.0.1:1/v1")).content.decode()
    assert "Choose a catalog model, or name a new one below." in neither

    clash = client.post("/msp/deployments/external/new/", form_data(
        model_slug="local-llm", task="embeddings", base_url="http://127.0.0.1:1/v1"))
    assert "local-llm is a chat model, not embeddings." in clash.content.decode()
    assert not Deployment.objects.exists()


def test_check_now_re_runs_the_health_check(client, msp_admin, keyed_upstream, local_model):
    deployment = services.external_endpoint_register(
        actor=msp_admin, model=local_model, base_url=keyed_upstream, upstream_api_key="wrong")
    assert deployment.status == S.FAILED
    deployment.upstream_api_key_encrypted = crypto.encrypt(KEY)
    deployment.save()
    client.force_login(msp_admin)
    response = client.post(f"/msp/deployments/{deployment.pk}/check/", follow=True)
    assert "Checked" in response.content.decode() and "health check passed" in \
        response.content.decode()
    deployment.refresh_from_db()
    assert deployment.status == S.READY


def test_the_pages_are_for_msp_admins_only(client, tenant_admin, local_model, keyed_upstream,
                                           msp_admin):
    deployment = services.external_endpoint_register(
        actor=msp_admin, model=local_model, base_url=keyed_upstream, upstream_api_key=KEY)
    client.force_login(tenant_admin)
    assert client.get("/msp/deployments/external/new/").status_code == 403
    assert client.post("/msp/deployments/external/new/", form_data(
        model=local_model.pk, base_url=keyed_upstream)).status_code == 403
    assert client.post(f"/msp/deployments/{deployment.pk}/check/").status_code == 403
    assert Deployment.objects.count() == 1


def test_the_api_registers_and_reports_field_errors(client, msp_admin, keyed_upstream,
                                                    tenant):
    client.force_login(msp_admin)
    created = client.post("/api/deployments/external/", {
        "model": "local-llm", "task": "chat", "base_url": keyed_upstream,
        "upstream_api_key": KEY, "tenant": tenant.slug}, content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "ready" and body["backend"] == "external"
    assert body["tenant"] == tenant.slug and body["model"] == "local-llm"
    assert KEY not in created.content.decode() and "upstream_api_key" not in body

    missing_task = client.post("/api/deployments/external/", {
        "model": "new-one", "base_url": keyed_upstream}, content_type="application/json")
    assert missing_task.status_code == 400 and "task" in missing_task.json()["errors"]
    bad = client.post("/api/deployments/external/", {"model": "local-llm",
                                                     "base_url": "nope", "tenant": "nobody"},
                      content_type="application/json")
    assert bad.status_code == 400 and "base_url" in bad.json()["errors"]
    no_tenant = client.post("/api/deployments/external/", {
        "model": "local-llm", "base_url": keyed_upstream, "tenant": "nobody"},
        content_type="application/json")
    assert no_tenant.status_code == 400 and "tenant" in no_tenant.json()["errors"]
    assert Deployment.objects.count() == 1


def test_the_api_refuses_tenant_members(client, tenant_admin):
    client.force_login(tenant_admin)
    response = client.post("/api/deployments/external/", {
        "model": "local-llm", "task": "chat", "base_url": "http://127.0.0.1:1/v1"},
        content_type="application/json")
    assert response.status_code == 403 and not Deployment.objects.exists()


def test_the_api_is_in_the_openapi_schema(client, msp_admin):
    client.force_login(msp_admin)
    schema = client.get("/api/schema/").content.decode()
    assert "/api/deployments/external/" in schema
    assert "ExternalEndpointCreate" in schema


def test_editing_an_endpoint_replaces_or_removes_its_key_and_checks_again(
        client, msp_admin, keyed_upstream, local_model):
    deployment = services.external_endpoint_register(
        actor=msp_admin, model=local_model, base_url=keyed_upstream, upstream_api_key="wrong")
    assert deployment.status == S.FAILED and "401" in deployment.status_reason
    client.force_login(msp_admin)
    detail = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert 'data-testid="edit-endpoint"' in detail and 'data-testid="unregister"' in detail
    form = client.get(f"/msp/deployments/{deployment.pk}/endpoint/").content.decode()
    assert "An upstream API key is stored" in form and "wrong" not in form
    assert f'value="{keyed_upstream}"' in form

    both = client.post(f"/msp/deployments/{deployment.pk}/endpoint/", {
        "base_url": keyed_upstream, "upstream_model": "", "name": "gpu-box",
        "upstream_api_key": KEY, "remove_upstream_api_key": "on"})
    assert both.status_code == 200 and "not both" in both.content.decode()
    assert 'value="gpu-box"' in both.content.decode()  # nothing lost but the key

    fixed = client.post(f"/msp/deployments/{deployment.pk}/endpoint/", {
        "base_url": keyed_upstream, "upstream_model": "", "name": "gpu-box",
        "upstream_api_key": KEY}, follow=True)
    assert "health check passed" in fixed.content.decode()
    deployment.refresh_from_db()
    assert deployment.status == S.READY and deployment.name == "gpu-box"
    assert crypto.decrypt(deployment.upstream_api_key_encrypted) == KEY
    edited = AuditEvent.objects.get(action="deployment.endpoint_updated")
    assert edited.details == {"name": "gpu-box", "upstream_api_key": "replaced"}
    assert KEY not in str(edited.details)
    # The timeline tells the story: registered, failed, edited, healthy.
    messages = list(deployment.events.order_by("pk").values_list("message", flat=True))
    assert messages[0].startswith(f"Registered {keyed_upstream}")
    assert "401" in messages[1] and "upstream API key changed" in messages[2]
    assert messages[3].startswith("Healthy:")

    removed = client.post(f"/msp/deployments/{deployment.pk}/endpoint/", {
        "base_url": keyed_upstream, "upstream_model": "", "name": "gpu-box",
        "upstream_api_key": "", "remove_upstream_api_key": "on"})
    assert removed.status_code == 302
    deployment.refresh_from_db()
    assert crypto.decrypt(deployment.upstream_api_key_encrypted) == ""
    assert deployment.status == S.FAILED  # the server wants the key


def test_the_api_edits_and_checks_an_endpoint(client, msp_admin, keyed_upstream, local_model):
    deployment = services.external_endpoint_register(
        actor=msp_admin, model=local_model, base_url=keyed_upstream)
    assert deployment.status == S.FAILED
    client.force_login(msp_admin)
    bad = client.patch(f"/api/deployments/{deployment.pk}/endpoint/",
                       {"base_url": "not a url"}, content_type="application/json")
    assert bad.status_code == 400 and "base_url" in str(bad.json())
    done = client.patch(f"/api/deployments/{deployment.pk}/endpoint/",
                        {"upstream_api_key": KEY}, content_type="application/json")
    assert done.status_code == 200 and done.json()["status"] == "ready"
    assert KEY not in done.content.decode()
    checked = client.post(f"/api/deployments/{deployment.pk}/check/")
    assert checked.status_code == 200 and checked.json()["status"] == "ready"


def test_edit_and_check_are_for_registered_endpoints_and_msp_admins(
        client, msp_admin, tenant_admin, keyed_upstream, local_model, cluster, version):
    from tests.deployments.test_kserve_lifecycle import deploy

    endpoint = services.external_endpoint_register(
        actor=msp_admin, model=local_model, base_url=keyed_upstream, upstream_api_key=KEY)
    client.force_login(tenant_admin)
    assert client.get(f"/msp/deployments/{endpoint.pk}/endpoint/").status_code == 403
    assert client.patch(f"/api/deployments/{endpoint.pk}/endpoint/", {"name": "x"},
                        content_type="application/json").status_code == 403
    assert client.post(f"/api/deployments/{endpoint.pk}/check/").status_code == 403
    client.force_login(msp_admin)
    kserve = deploy(msp_admin, cluster, version)
    assert client.get(f"/msp/deployments/{kserve.pk}/endpoint/").status_code == 404
    assert client.post(f"/api/deployments/{kserve.pk}/check/").status_code == 404
    services.deployment_delete(actor=msp_admin, deployment=endpoint)
    assert client.get(f"/msp/deployments/{endpoint.pk}/endpoint/").status_code == 404


def test_the_beat_health_checks_endpoints_so_the_gateway_follows(msp_admin, local_model):
    """An endpoint that goes away is failed by the periodic check (the gateway stops routing
    to it), and ready again when it is back."""
    process, base = start_upstream("--models", "local-llm")
    deployment = services.external_endpoint_register(actor=msp_admin, model=local_model,
                                                     base_url=base)
    assert deployment.status == S.READY
    stop(process)
    assert services.deployments_reconcile_all()["external_failed"] == 1
    deployment.refresh_from_db()
    assert deployment.status == S.FAILED
    assert AuditEvent.objects.filter(action="deployment.failed",
                                     target_id=str(deployment.pk)).exists()
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    process, _ = start_upstream("--models", "local-llm", port=port)
    try:
        assert services.deployments_reconcile_all()["external_ready"] == 1
    finally:
        stop(process)
    deployment.refresh_from_db()
    assert deployment.status == S.READY
