"""The external-endpoint backend and `endpoint_register`, against a small OpenAI-compatible
server the test starts."""

import io

import pytest
from django.core.management import call_command

from deployments import services
from deployments.models import Backend, Deployment, DeploymentStatus
from tests.support.processes import start_upstream, stop


@pytest.fixture(scope="module")
def keyed_upstream():
    process, base = start_upstream("--models", "local-llm", "--api-key", "upstream-secret")
    yield base
    stop(process)


def test_endpoint_register_creates_the_model_and_a_ready_deployment(db, keyed_upstream,
                                                                    tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("upstream-secret\n")
    out = io.StringIO()
    call_command("endpoint_register", "--model", "local-llm", "--task", "chat", "--base-url",
                 keyed_upstream, "--upstream-key-file", str(key_file), stdout=out)
    deployment = Deployment.objects.get(pk=int(out.getvalue()))
    assert deployment.backend == Backend.EXTERNAL
    assert deployment.status == DeploymentStatus.READY
    assert "upstream-secret" not in deployment.upstream_api_key_encrypted


def test_a_wrong_key_or_model_is_a_failed_deployment_with_the_reason(db, keyed_upstream,
                                                                    tmp_path):
    err = io.StringIO()
    call_command("endpoint_register", "--model", "local-llm", "--task", "chat", "--base-url",
                 keyed_upstream, stdout=io.StringIO(), stderr=err)
    assert "refused the upstream API key (HTTP 401)" in err.getvalue()
    deployment = Deployment.objects.get()
    assert deployment.status == DeploymentStatus.FAILED

    key_file = tmp_path / "key"
    key_file.write_text("upstream-secret")
    err = io.StringIO()
    call_command("endpoint_register", "--model", "other", "--task", "chat", "--base-url",
                 keyed_upstream, "--upstream-key-file", str(key_file), stdout=io.StringIO(),
                 stderr=err)
    assert "does not serve 'other' (it serves: local-llm)" in err.getvalue()


def test_an_external_deployment_has_no_manifest_and_is_unregistered_by_delete(
        db, keyed_upstream, msp_admin, client):
    from models_catalog.models import Model

    model = Model.objects.create(slug="local-llm", name="Local", task="chat")
    deployment = services.external_endpoint_register(
        actor=msp_admin, model=model, base_url=keyed_upstream, upstream_api_key="upstream-secret")
    client.force_login(msp_admin)
    assert client.get(f"/msp/deployments/{deployment.pk}/manifest.yaml").status_code == 404
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert keyed_upstream in page and "Download manifest" not in page
    services.deployment_delete(actor=msp_admin, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.DELETED


def test_a_ready_endpoint_busy_generating_stays_ready_a_new_one_does_not(db, keyed_upstream,
                                                                         monkeypatch):
    """A single-request server (llama.cpp, Ollama) answers no health check while it
    generates: it took the connection, so it is busy, not gone — routing to it continues.
    A server that is down, or never answered, still fails."""
    import socket
    import threading

    from deployments.backends import external

    deployment = services.external_endpoint_register(
        actor="system:test", model_slug="local-llm", task="chat", base_url=keyed_upstream,
        upstream_api_key="upstream-secret")
    assert deployment.status == DeploymentStatus.READY
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    busy_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    monkeypatch.setattr(external, "HEALTH_TIMEOUT_SECONDS", 0.5)
    try:
        Deployment.objects.filter(pk=deployment.pk).update(base_url=busy_url)
        deployment.refresh_from_db()
        checked = services.deployment_check(actor="system:test", deployment=deployment)
        assert checked.status == DeploymentStatus.READY and checked.status_reason == ""
        # Registered while busy: not known to work yet, so it fails with the reason.
        fresh = services.external_endpoint_register(
            actor="system:test", model_slug="local-llm", task="chat", base_url=busy_url,
            name="second")
        assert fresh.status == DeploymentStatus.FAILED
        assert "did not answer within" in fresh.status_reason
    finally:
        listener.close()
        for connection, _ in accepted:
            connection.close()
    # Nothing listens any more: down, not busy.
    gone = services.deployment_check(actor="system:test", deployment=checked)
    assert gone.status == DeploymentStatus.FAILED and "unreachable" in gone.status_reason


def test_endpoint_register_explains_a_model_slug_the_catalog_refuses(db):
    """The catalog refuses with its one refusal type: the command still says why, by field,
    instead of a traceback."""
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"slug: .*letters"):
        call_command("endpoint_register", "--model", "Not a slug!", "--task", "chat",
                     "--base-url", "http://127.0.0.1:9/v1", stdout=io.StringIO())
    assert not Deployment.objects.exists()
