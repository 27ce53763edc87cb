"""External endpoints and clusters' API servers go through the outbound policy
(portal/outbound.py): refused when saved (page and API, naming the field) and again when
called, so a name that later resolves elsewhere reaches nothing."""

import ipaddress

import pytest

from deployments import services
from deployments.models import Deployment, DeploymentStatus
from models_catalog.models import Model
from tests.support.net import FakeDns, recording_server

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.fixture
def local_model(db):
    return Model.objects.create(slug="local-llm", name="Local LLM", task="chat")


@pytest.mark.parametrize("allowed,base_url,reason", [
    (LOOPBACK, "http://10.0.0.9:8000/v1", "outside the networks OUTBOUND_ALLOWED_NETWORKS"),
    ([], "http://127.0.0.1:8000/v1", "private or reserved address (loopback)"),
    ([], "http://169.254.169.254/latest", "link-local"),
    ([], "http://[64:ff9b::a9fe:a9fe]/v1", "NAT64"),
    ([], "http://[::ffff:10.0.0.1]/v1", "private"),
    ([], "http://[2002:a00:1::1]/v1", "6to4"),
])
def test_an_endpoint_url_the_policy_refuses_is_a_400_and_a_form_error(
        client, msp_admin, local_model, settings, allowed, base_url, reason):
    settings.OUTBOUND_ALLOWED_NETWORKS = allowed
    client.force_login(msp_admin)
    api = client.post("/api/deployments/external/", {"model": "local-llm",
                                                     "base_url": base_url},
                      content_type="application/json")
    assert api.status_code == 400 and reason in " ".join(api.json()["errors"]["base_url"])
    page = client.post("/msp/deployments/external/new/", {
        "model": local_model.pk, "base_url": base_url, "task": "", "model_slug": "",
        "upstream_model": "", "upstream_api_key": "", "tenant": "", "name": ""})
    assert page.status_code == 200
    assert reason in " ".join(page.context["form"].errors["base_url"])
    assert not Deployment.objects.exists()


def test_an_endpoint_name_resolving_to_a_refused_address_is_refused(msp_admin, local_model,
                                                                    settings, monkeypatch):
    from django.core.exceptions import ValidationError

    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK
    FakeDns({"llm.internal.example": [["10.0.0.3"]]}).install(monkeypatch)
    with pytest.raises(ValidationError) as caught:
        services.external_endpoint_register(actor=msp_admin, model=local_model,
                                            base_url="http://llm.internal.example/v1")
    assert "“llm.internal.example” resolves to 10.0.0.3" in str(caught.value)


def test_editing_an_endpoint_to_a_refused_url_is_refused(client, msp_admin, local_model,
                                                        settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK
    endpoint = services.external_endpoint_register(actor=msp_admin, model=local_model,
                                                   base_url="http://127.0.0.1:9/v1")
    client.force_login(msp_admin)
    patched = client.patch(f"/api/deployments/{endpoint.pk}/endpoint/",
                           {"base_url": "http://169.254.169.254/v1"},
                           content_type="application/json")
    assert patched.status_code == 400 and "base_url" in patched.json()["errors"]
    endpoint.refresh_from_db()
    assert endpoint.base_url == "http://127.0.0.1:9/v1"


def test_the_health_check_vets_the_address_again_when_it_connects(msp_admin, local_model,
                                                                   settings, monkeypatch):
    """Registered while its name pointed at an allowed address; the name now answers with a
    refused one (DNS rebinding): the check fails with the policy's reason and the allowed
    server receives nothing more."""
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK
    with recording_server() as upstream:
        # Two lookups while registering (the URL check, the first health check), then a third.
        FakeDns({"llm.example": [["127.0.0.1"], ["127.0.0.1"], ["10.0.0.3"]]}).install(
            monkeypatch)
        endpoint = services.external_endpoint_register(
            actor=msp_admin, model=local_model,
            base_url=f"http://llm.example:{upstream.port}/v1")
        assert len(upstream.requests) == 1
        checked = services.deployment_check(actor=msp_admin, deployment=endpoint)
        assert len(upstream.requests) == 1
    assert checked.status == DeploymentStatus.FAILED
    assert "“llm.example” resolves to 10.0.0.3" in checked.status_reason


@pytest.mark.parametrize("allowed,api_url,reason", [
    (LOOPBACK, "https://10.0.0.1:6443", "outside the networks OUTBOUND_ALLOWED_NETWORKS"),
    ([], "https://127.0.0.1:6443", "loopback"),
    ([], "https://169.254.169.254", "link-local"),
    ([], "https://[64:ff9b::a00:1]:6443", "NAT64"),
])
def test_a_cluster_url_the_policy_refuses_is_a_400_and_a_form_error(client, msp_admin, settings,
                                                                   allowed, api_url, reason):
    settings.OUTBOUND_ALLOWED_NETWORKS = allowed
    client.force_login(msp_admin)
    api = client.post("/api/clusters/", {"name": "c1", "api_url": api_url, "jurisdiction": "DE",
                                         "credentials": "t0ken"},
                      content_type="application/json")
    assert api.status_code == 400 and reason in " ".join(api.json()["errors"]["api_url"])
    page = client.post("/msp/clusters/new/", {
        "name": "c1", "api_url": api_url, "jurisdiction": "DE", "credential_kind": "token",
        "credentials": "t0ken", "ca_bundle": "", "gateway_namespace": "istio-system",
        "default_mode": "Standard", "capacity": ""})
    assert page.status_code == 200
    assert reason in " ".join(page.context["form"].errors["api_url"])


def test_a_cluster_is_vetted_again_when_it_is_called(msp_admin, cluster, kube, settings):
    """The allow-list narrowed after the cluster was saved: the check says why, and the API
    server receives nothing."""
    settings.OUTBOUND_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.0.0/16")]
    before = len(kube.log)
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.last_check_ok is False
    assert "127.0.0.1 is outside the networks OUTBOUND_ALLOWED_NETWORKS allows" in \
        checked.last_check_message
    assert len(kube.log) == before
