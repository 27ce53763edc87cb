"""Tenant namespaces in the REST API, the shared sync service behind page and API, and the
API refusing to deploy to a deleted (archived) cluster."""

from unittest import mock

from audit.models import AuditEvent
from deployments import services
from deployments.models import Deployment
from tenants.models import TenantStatus

SYNC = "deployments.tasks.sync_tenant_namespace.delay"


def test_the_api_lists_a_clusters_namespaces(client, msp_admin, cluster, gpu_tenant, kube):
    services.tenant_namespace_ensure(cluster=cluster, tenant=gpu_tenant)
    other = services.cluster_create(actor=msp_admin, name="other", jurisdiction="DE",
                                    api_url="https://k8s.other.example.test",
                                    credentials="t")
    client.force_login(msp_admin)
    rows = client.get(f"/api/clusters/{cluster.pk}/namespaces/")
    assert rows.status_code == 200
    [row] = rows.json()
    assert row["tenant"] == "acme" and row["namespace"] == "tenant-acme"
    assert row["ok"] is True and row["synced_at"] and "created" in row["message"]
    assert client.get(f"/api/clusters/{other.pk}/namespaces/").json() == []


def test_the_api_queues_a_sync_of_every_active_tenant(client, msp_admin, cluster, tenant,
                                                      other_tenant):
    other_tenant.status = TenantStatus.SUSPENDED
    other_tenant.save()
    client.force_login(msp_admin)
    with mock.patch(SYNC) as delay:
        response = client.post(f"/api/clusters/{cluster.pk}/namespaces/sync/")
    assert response.status_code == 202 and response.json() == {"tenants": 1}
    assert [c.args for c in delay.call_args_list] == [(cluster.pk, tenant.pk)]
    event = AuditEvent.objects.get(action="cluster.namespaces_sync_requested")
    assert event.target_id == str(cluster.pk) and event.details["tenants"] == 1


def test_the_page_uses_the_same_service(client, msp_admin, cluster, tenant):
    client.force_login(msp_admin)
    with mock.patch(SYNC) as delay:
        response = client.post(f"/msp/clusters/{cluster.pk}/namespaces/sync/", follow=True)
    assert response.redirect_chain[-1][0] == f"/msp/clusters/{cluster.pk}/"
    assert "Syncing 1 tenant namespaces" in response.content.decode()
    assert [c.args for c in delay.call_args_list] == [(cluster.pk, tenant.pk)]
    assert AuditEvent.objects.filter(action="cluster.namespaces_sync_requested").count() == 1


def test_a_deleted_cluster_has_no_namespace_endpoints(client, msp_admin, cluster, tenant):
    services.cluster_delete(actor=msp_admin, cluster=cluster)
    client.force_login(msp_admin)
    assert client.get(f"/api/clusters/{cluster.pk}/namespaces/").status_code == 404
    with mock.patch(SYNC) as delay:
        assert client.post(f"/api/clusters/{cluster.pk}/namespaces/sync/").status_code == 404
    delay.assert_not_called()
    assert not AuditEvent.objects.filter(action="cluster.namespaces_sync_requested").exists()


def test_the_schema_lists_the_namespace_endpoints(client, msp_admin):
    client.force_login(msp_admin)
    schema = client.get("/api/schema/").content.decode()
    assert "/api/clusters/{id}/namespaces/" in schema
    assert "/api/clusters/{id}/namespaces/sync/" in schema


def test_the_api_does_not_deploy_to_a_deleted_cluster(client, msp_admin, cluster, version,
                                                      kube):
    services.cluster_delete(actor=msp_admin, cluster=cluster)
    client.force_login(msp_admin)
    body = {"version": version.pk, "cluster": cluster.pk, "runtime": "kserve-vllmserver",
            "cpu": "1", "memory": "1Gi"}
    for dry_run in (True, False):
        response = client.post("/api/deployments/", {**body, "dry_run": dry_run},
                               content_type="application/json")
        assert response.status_code == 404, response.content
    assert not Deployment.objects.exists()
    assert kube.count("POST") == 0
