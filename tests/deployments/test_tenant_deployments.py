"""A tenant's read-only view of where its models run: its dedicated deployments and the
shared deployments of the models it is entitled to — and nothing of anyone else's."""

import pytest

from deployments import services
from deployments.models import Backend, Deployment, DeploymentStatus
from models_catalog.models import Model
from portal import crypto
from tests.factories import published_version

S = DeploymentStatus


@pytest.fixture
def landscape(msp_admin, tenant, other_tenant):
    """Dedicated (ours, theirs), shared (entitled, not entitled) and a deleted deployment."""
    cluster = services.cluster_create(actor=msp_admin, name="fra-gpu-1",
                                      api_url="https://k8s.fra.example.test", jurisdiction="DE",
                                      credentials="cluster-token")
    version = published_version(version="1.0")
    ours = Deployment.objects.create(
        model=version.model, version=version, tenant=tenant, cluster=cluster,
        backend=Backend.KSERVE, name="ours", namespace="tenant-acme", resource_name="ours",
        status=S.READY, min_replicas=1, max_replicas=3, observed={"replicas": 2})
    Deployment.objects.create(
        model=Model.objects.create(slug="globex-private", name="Globex private", task="chat"),
        tenant=other_tenant, backend=Backend.EXTERNAL, name="theirs", status=S.READY,
        base_url="http://10.9.9.9:8000/v1")
    entitled = Model.objects.create(slug="shared-chat", name="Shared chat", task="chat",
                                    available_to_all_tenants=True)
    Deployment.objects.create(
        model=entitled, backend=Backend.EXTERNAL, name="shared-endpoint", status=S.FAILED,
        base_url="http://10.1.1.1:8000/v1", status_reason="upstream said 401",
        upstream_api_key_encrypted=crypto.encrypt("upstream-key"))
    closed = Model.objects.create(slug="closed-model", name="Closed model", task="chat",
                                  available_to_all_tenants=False)
    Deployment.objects.create(model=closed, backend=Backend.EXTERNAL, name="closed",
                              status=S.READY, base_url="http://10.2.2.2:8000/v1")
    Deployment.objects.create(model=entitled, tenant=tenant, backend=Backend.EXTERNAL,
                              name="gone", status=S.DELETED, base_url="http://10.3.3.3/v1")
    return ours


def test_any_member_sees_dedicated_and_shared_deployments_only(client, viewer, landscape):
    client.force_login(viewer)
    response = client.get("/t/acme/deployments/")
    assert response.status_code == 200
    page = response.content.decode()
    assert landscape.model.name in page and "1.0" in page and "Ready" in page
    assert ">2<" in page  # replicas as observed
    assert "Shared chat" in page and "shared" in page and "Failed" in page
    for hidden in ("Globex private", "Closed model", "10.9.9.9", "10.1.1.1", "10.3.3.3",
                   "fra-gpu-1", "k8s.fra", "tenant-acme", "tenant-globex", "upstream said 401"):
        assert hidden not in page, hidden
    assert 'href="/t/acme/deployments/"' in page  # in the tenant navigation


def test_an_empty_page_says_what_to_do(client, developer):
    client.force_login(developer)
    page = client.get("/t/acme/deployments/").content.decode()
    assert "No dedicated deployments" in page and "Ask the platform operator" in page


def test_another_tenant_is_a_404_and_the_page_is_read_only(client, outsider, viewer,
                                                           landscape):
    client.force_login(outsider)
    assert client.get("/t/acme/deployments/").status_code == 404
    assert client.get("/api/tenants/acme/deployments/").status_code == 404
    client.force_login(viewer)
    assert client.post("/t/acme/deployments/").status_code == 405
    assert client.post("/api/tenants/acme/deployments/").status_code == 405


def test_the_api_lists_the_same_without_infrastructure_details(client, viewer, landscape):
    client.force_login(viewer)
    response = client.get("/api/tenants/acme/deployments/")
    assert response.status_code == 200
    body = response.json()
    assert [d["model"] for d in body["dedicated"]] == [landscape.model.slug]
    assert body["dedicated"][0]["replicas"] == 2 and body["dedicated"][0]["version"] == "1.0"
    assert body["shared"] == [{"model": "shared-chat", "model_name": "Shared chat",
                               "status": "failed"}]
    text = response.content.decode()
    for hidden in ("10.1.1.1", "fra-gpu-1", "tenant-acme", "globex", "closed-model"):
        assert hidden not in text, hidden


def test_msp_admins_see_any_tenant_and_the_schema_lists_the_api(client, msp_admin, landscape):
    client.force_login(msp_admin)
    assert client.get("/t/acme/deployments/").status_code == 200
    assert "/api/tenants/{slug}/deployments/" in client.get("/api/schema/").content.decode()
