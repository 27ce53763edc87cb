"""Deleting a cluster: refused while it has deployments that are not deleted; otherwise it is
archived — gone from lists and the wizard, credentials erased, history kept."""

import pytest

from audit.models import AuditEvent
from deployments import services
from deployments.models import Backend, Cluster, Deployment, DeploymentStatus
from tests.factories import published_version

S = DeploymentStatus


@pytest.fixture
def idle_cluster(msp_admin):
    return services.cluster_create(actor=msp_admin, name="old-gpu", jurisdiction="DE",
                                   api_url="https://k8s.old.example.test",
                                   credentials="cluster-token")


def on(cluster, status, name="d1"):
    version = published_version(version="1.0")
    return Deployment.objects.create(
        model=version.model, version=version, cluster=cluster, backend=Backend.KSERVE,
        name=name, namespace="models-shared", resource_name=name, status=status)


def test_the_page_refuses_while_a_deployment_is_not_deleted(client, msp_admin, idle_cluster):
    on(idle_cluster, S.STOPPED, name="still-here")
    client.force_login(msp_admin)
    detail = client.get(f"/msp/clusters/{idle_cluster.pk}/").content.decode()
    assert f'href="/msp/clusters/{idle_cluster.pk}/delete/"' in detail
    confirm = client.get(f"/msp/clusters/{idle_cluster.pk}/delete/").content.decode()
    assert "still has deployments that are not deleted" in confirm and "still-here" in confirm
    assert 'data-testid="confirm-delete"' not in confirm
    forced = client.post(f"/msp/clusters/{idle_cluster.pk}/delete/", follow=True)
    assert forced.redirect_chain[-1][0] == f"/msp/clusters/{idle_cluster.pk}/"
    assert "Delete them first" in forced.content.decode()
    assert client.get("/msp/clusters/").content.decode().count("old-gpu") >= 1
    assert not AuditEvent.objects.filter(action="cluster.deleted").exists()


def test_the_page_deletes_a_cluster_whose_deployments_are_deleted(client, msp_admin,
                                                                  idle_cluster):
    deployment = on(idle_cluster, S.DELETED)
    client.force_login(msp_admin)
    confirm = client.get(f"/msp/clusters/{idle_cluster.pk}/delete/").content.decode()
    assert 'data-testid="confirm-delete"' in confirm and "(1)" in confirm
    done = client.post(f"/msp/clusters/{idle_cluster.pk}/delete/", follow=True)
    assert done.redirect_chain[-1][0] == "/msp/clusters/"
    page = done.content.decode()
    assert "Cluster old-gpu deleted" in page
    assert f"/msp/clusters/{idle_cluster.pk}/" not in page
    assert client.get(f"/msp/clusters/{idle_cluster.pk}/").status_code == 404
    assert client.get(f"/msp/clusters/{idle_cluster.pk}/delete/").status_code == 404
    # History stays coherent: the deleted deployment still names its cluster.
    history = client.get(f"/msp/deployments/{deployment.pk}/?status=deleted")
    assert history.status_code == 200 and "old-gpu" in history.content.decode()
    cluster = Cluster.objects.get(pk=idle_cluster.pk)
    assert cluster.credentials_encrypted == ""
    event = AuditEvent.objects.get(action="cluster.deleted")
    assert event.details["name"] == "old-gpu" and event.details["deleted_deployments_kept"] == 1


def test_a_deleted_cluster_is_not_offered_by_the_wizard(client, msp_admin, idle_cluster,
                                                        settings):
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    version = published_version(version="1.0")
    services.cluster_create(actor=msp_admin, name="new-gpu", jurisdiction="DE",
                            api_url="https://k8s.new.example.test", credentials="t")
    services.cluster_delete(actor=msp_admin, cluster=idle_cluster)
    client.force_login(msp_admin)
    page = client.post("/msp/deployments/new/", {"version": version.pk, "tenant": "",
                                                 "step": 0}).content.decode()
    assert "new-gpu" in page and "old-gpu" not in page
    forced = client.post("/msp/deployments/new/", {"version": version.pk, "tenant": "",
                                                   "cluster": idle_cluster.pk, "mode": "",
                                                   "step": 1})
    assert "Select a valid choice" in forced.content.decode()


def test_the_api_refuses_then_deletes(client, msp_admin, idle_cluster):
    deployment = on(idle_cluster, S.READY)
    client.force_login(msp_admin)
    refused = client.delete(f"/api/clusters/{idle_cluster.pk}/")
    assert refused.status_code == 400
    assert "still has deployments that are not deleted (d1)" in refused.json()["detail"]
    Deployment.objects.filter(pk=deployment.pk).update(status=S.DELETED)
    assert client.delete(f"/api/clusters/{idle_cluster.pk}/").status_code == 204
    assert client.get(f"/api/clusters/{idle_cluster.pk}/").status_code == 404
    assert client.delete(f"/api/clusters/{idle_cluster.pk}/").status_code == 404
    assert idle_cluster.name not in client.get("/api/clusters/").content.decode()


def test_a_deleted_clusters_name_is_free_again_and_a_live_one_is_not(client, msp_admin,
                                                                      idle_cluster):
    from django.core.exceptions import ValidationError

    def create():
        return services.cluster_create(actor=msp_admin, name="old-gpu", jurisdiction="DE",
                                       api_url="https://k8s.other.example.test",
                                       credentials="t")

    with pytest.raises(ValidationError, match="A cluster with this name exists"):
        create()
    services.cluster_delete(actor=msp_admin, cluster=idle_cluster)
    again = create()
    assert again.pk != idle_cluster.pk and again.archived_at is None
    client.force_login(msp_admin)
    taken = client.post("/api/clusters/", {"name": "old-gpu", "jurisdiction": "DE",
                                           "api_url": "https://k8s.x.example.test",
                                           "credentials": "t"},
                        content_type="application/json")
    assert taken.status_code == 400 and "A cluster with this name exists" in taken.content.decode()


def test_only_msp_admins_delete_clusters(client, tenant_admin, idle_cluster):
    client.force_login(tenant_admin)
    assert client.get(f"/msp/clusters/{idle_cluster.pk}/delete/").status_code == 403
    assert client.post(f"/msp/clusters/{idle_cluster.pk}/delete/").status_code == 403
    assert client.delete(f"/api/clusters/{idle_cluster.pk}/").status_code == 403
    assert not AuditEvent.objects.filter(action="cluster.deleted").exists()
    assert Cluster.objects.filter(pk=idle_cluster.pk, archived_at__isnull=True).exists()
