"""The wizard, the pages, the REST API and the GitOps export, driven like a person would."""

import io
import re

import pytest
import yaml
from django.core.management import call_command

from audit.models import AuditEvent
from deployments import services
from deployments.models import Cluster, Deployment, DeploymentStatus
from portal import crypto
from tests.deployments.conftest import GPU
from tests.deployments.test_kserve_lifecycle import become_ready, deploy
from tests.factories import published_version

S = DeploymentStatus


def wizard_data(version, cluster, **overrides):
    data = {"version": version.pk, "tenant": "", "cluster": cluster.pk, "mode": "",
            "name": "", "runtime": "kserve-vllmserver", "gpu_product": GPU, "gpu_count": "1",
            "cpu": "8", "memory": "64Gi", "min_replicas": "1", "max_replicas": "1",
            "scale_metric": "", "scale_target": "", "extra_args": "--max-model-len=4096"}
    data.update(overrides)
    return data


def post_step(client, step, data, **extra):
    return client.post("/msp/deployments/new/", {**data, "step": step, **extra})


def test_wizard_walks_through_the_steps_to_the_exact_manifest(client, msp_admin, cluster,
                                                              version, kube):
    client.force_login(msp_admin)
    first = client.get("/msp/deployments/new/")
    assert first.status_code == 200 and str(version.model.slug) in first.content.decode()
    data = wizard_data(version, cluster)

    second = post_step(client, 0, {k: data[k] for k in ("version", "tenant")})
    page = second.content.decode()
    assert "fra-gpu-1" in page and "8 / 8" in page  # free GPUs shown

    third = post_step(client, 1, {k: data[k] for k in ("version", "tenant", "cluster", "mode")})
    assert "Runtime and resources" in third.content.decode()
    assert f"{GPU} (8 of 8 free)" in third.content.decode()

    review = post_step(client, 2, data)
    page = review.content.decode()
    assert "Apply to the cluster" in page
    assert f"@{version.manifest_digest}" in page
    assert "--max-model-len=4096" in page
    assert kube.count("POST") == 0 and not Deployment.objects.exists()

    applied = post_step(client, 3, data, apply="1")
    deployment = Deployment.objects.get()
    assert applied.status_code == 302 and applied.url == f"/msp/deployments/{deployment.pk}/"
    assert deployment.status == S.PENDING and deployment.extra_args == {
        "--max-model-len": "4096"}


def test_wizard_shows_refusals_on_the_resources_step(client, msp_admin, cluster, version,
                                                     gpu_tenant, kube):
    client.force_login(msp_admin)
    data = wizard_data(version, cluster, tenant=gpu_tenant.pk, gpu_count="4",
                       max_replicas="2")
    response = post_step(client, 2, data)
    page = response.content.decode()
    assert "GPU quota is 4" in page and "Apply to the cluster" not in page
    assert not Deployment.objects.exists()

    bad_args = post_step(client, 2, wizard_data(version, cluster,
                                                extra_args="--trust-remote-code"))
    assert "--trust-remote-code is not allowed" in bad_args.content.decode()


def test_wizard_offers_only_clusters_inside_the_policy(client, msp_admin, cluster, version,
                                                       settings):
    settings.ALLOWED_JURISDICTIONS = ["FR"]
    client.force_login(msp_admin)
    page = post_step(client, 0, {"version": version.pk, "tenant": ""}).content.decode()
    assert "outside policy" in page and f'id="cluster-{cluster.pk}"' not in page
    forced = post_step(client, 1, {"version": version.pk, "tenant": "", "cluster": cluster.pk,
                                   "mode": ""})
    assert "Select a valid choice" in forced.content.decode()


def test_unverified_versions_are_not_offered(client, msp_admin, cluster, version):
    retired = published_version(version.model, version="0.9")
    retired.status = "retired"
    retired.save()
    tampered = published_version(version.model, version="0.8")
    tampered.manifest_digest = "sha256:" + "0" * 64  # no longer what was signed
    tampered.save()
    client.force_login(msp_admin)
    page = client.get("/msp/deployments/new/").content.decode()
    assert "· 1.0" in page and "· 0.9" not in page and "· 0.8" not in page


def test_detail_page_polls_until_settled_and_shows_the_canary_diff(client, msp_admin, cluster,
                                                                   version, kube):
    deployment = deploy(msp_admin, cluster, version)
    client.force_login(msp_admin)
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and "Progressing" in page

    deployment = become_ready(kube, deployment)
    partial = client.get(f"/msp/deployments/{deployment.pk}/", HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert "every 2s" not in body and ".example.test/v1" in body and "PredictorReady" in body

    v2 = published_version(version.model, version="2.0")
    response = client.post(f"/msp/deployments/{deployment.pk}/update/",
                           {"version": v2.pk, "canary_traffic_percent": "20"})
    assert response.status_code == 302
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert "Manifest change of the pending canary" in page
    assert re.search(rf"^\+ +storageUri: oci://registry\.example\.test/.*@{v2.manifest_digest}$",
                     page, re.M)
    assert re.search(r"^\+ +trafficPercent: 20$", page, re.M)

    # Applied and observed: the canary's own pods and readiness are on the page.
    services.deployment_drive(deployment.pk)
    become_ready(kube, deployment)
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert "Canary pods" in page and "v-2-0</span> ready, 20% of traffic" in page


def test_actions_on_the_detail_page(client, msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    client.force_login(msp_admin)
    client.post(f"/msp/deployments/{deployment.pk}/scale/",
                {"min_replicas": "2", "max_replicas": "3", "scale_metric": "cpu",
                 "scale_target": "50"})
    deployment.refresh_from_db()
    assert (deployment.status, deployment.max_replicas) == (S.PENDING, 3)
    refused = client.post(f"/msp/deployments/{deployment.pk}/stop/", follow=True)
    assert "wait until it settles" in refused.content.decode()


def test_manifest_download_and_command_match(client, msp_admin, cluster, version, kube):
    deployment = deploy(msp_admin, cluster, version)
    client.force_login(msp_admin)
    download = client.get(f"/msp/deployments/{deployment.pk}/manifest.yaml")
    assert download["Content-Disposition"].endswith(f'{deployment.resource_name}.yaml"')
    out = io.StringIO()
    call_command("deployment_manifest", str(deployment.pk), stdout=out)
    assert out.getvalue() == download.content.decode()
    manifest = yaml.safe_load(out.getvalue())
    live = kube.isvc(deployment.namespace, deployment.resource_name)
    live["spec"]["predictor"]["model"].pop("protocolVersion")  # KServe's default, not ours
    assert manifest["spec"] == live["spec"]
    assert manifest["metadata"]["annotations"] == live["metadata"]["annotations"]


def test_command_refuses_unknown_ids(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No deployment 999"):
        call_command("deployment_manifest", "999")


def test_cluster_pages_check_connectivity(client, msp_admin, kube):
    client.force_login(msp_admin)
    response = client.post("/msp/clusters/new/", {
        "name": "muc-1", "api_url": kube.url, "jurisdiction": "DE", "credential_kind": "token",
        "credentials": kube.token, "ca_bundle": "", "gateway_namespace": "istio-system",
        "default_mode": "Knative", "capacity": "NVIDIA-H100-80GB-HBM3=16\nNVIDIA-L4=2"})
    cluster = Cluster.objects.get(name="muc-1")
    assert response.status_code == 302
    assert cluster.gpu_capacity == {"NVIDIA-H100-80GB-HBM3": 16, "NVIDIA-L4": 2}
    assert cluster.last_check_ok and cluster.server_version == "v1.31.2"
    assert kube.token not in cluster.credentials_encrypted
    page = client.get(f"/msp/clusters/{cluster.pk}/").content.decode()
    assert "KServe CRD present" in page and kube.token not in page
    edit = client.get(f"/msp/clusters/{cluster.pk}/edit/").content.decode()
    assert kube.token not in edit


def test_connectivity_check_explains_failures(msp_admin, cluster, kube):
    kube.remove("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                "inferenceservices.serving.kserve.io")
    services.cluster_check(actor=msp_admin, cluster=cluster)
    assert cluster.last_check_ok is False and "KServe is not installed" in \
        cluster.last_check_message

    services.cluster_update(actor=msp_admin, cluster=cluster, credentials="wrong")
    services.cluster_check(actor=msp_admin, cluster=cluster)
    assert "refused the credentials" in cluster.last_check_message

    kube.stop()
    services.cluster_check(actor=msp_admin, cluster=cluster)
    assert "Can't reach the API server" in cluster.last_check_message


def test_cluster_form_rejects_bad_capacity(client, msp_admin):
    client.force_login(msp_admin)
    response = client.post("/msp/clusters/new/", {
        "name": "x", "api_url": "https://k.example.test", "jurisdiction": "DE",
        "credential_kind": "token", "credentials": "t", "gateway_namespace": "istio-system",
        "default_mode": "Standard", "capacity": "A100 eight"})
    assert response.status_code == 200
    assert "write PRODUCT=COUNT" in response.content.decode()


def test_api_deploys_with_dry_run_and_acts(client, msp_admin, cluster, version, kube):
    client.force_login(msp_admin)
    body = {"version": version.pk, "cluster": cluster.pk, "runtime": "kserve-vllmserver",
            "gpu_product": GPU, "gpu_count": 1, "cpu": "8", "memory": "64Gi",
            "extra_args": {"--enable-prefix-caching": True}}
    dry = client.post("/api/deployments/", {**body, "dry_run": True},
                      content_type="application/json")
    assert dry.status_code == 200, dry.content
    assert dry.json()["manifest"]["spec"]["predictor"]["model"]["args"] == [
        "--enable-prefix-caching"]
    assert not Deployment.objects.exists()

    bad = client.post("/api/deployments/", {**body, "extra_args": {"--privileged": True}},
                      content_type="application/json")
    assert bad.status_code == 400 and "extra_args" in bad.json()["errors"]

    too_many = client.post("/api/deployments/", {**body, "gpu_count": 9},
                           content_type="application/json")
    assert too_many.status_code == 400 and "only 8 free" in str(too_many.json())

    created = client.post("/api/deployments/", body, content_type="application/json")
    assert created.status_code == 201
    deployment_id = created.json()["id"]
    services.deployment_drive(deployment_id)
    become_ready(kube, Deployment.objects.get(pk=deployment_id))
    detail = client.get(f"/api/deployments/{deployment_id}/").json()
    assert detail["status"] == "ready" and detail["base_url"].endswith(".example.test/v1")
    assert detail["events"]

    v2 = published_version(version.model, version="2.0")
    canary = client.post(f"/api/deployments/{deployment_id}/update/",
                         {"version": v2.pk, "canary_traffic_percent": 10},
                         content_type="application/json")
    assert canary.status_code == 202 and canary.json()["canary_version"] == "2.0"
    busy = client.post(f"/api/deployments/{deployment_id}/promote/")
    assert busy.status_code == 400 and "settles" in str(busy.json()["errors"])
    manifest = client.get(f"/api/deployments/{deployment_id}/manifest/").json()
    assert manifest["manifest"]["spec"]["canary"][0]["trafficPercent"] == 10
    allocation = client.get("/api/deployments/gpu-allocation/").json()
    assert allocation[0]["gpus"] == 2  # the peak plus the canary's one fixed pod


def test_api_creates_and_checks_clusters_without_echoing_credentials(client, msp_admin, kube):
    client.force_login(msp_admin)
    created = client.post("/api/clusters/", {
        "name": "ber-1", "api_url": kube.url, "jurisdiction": "DE", "credentials": kube.token,
        "gpu_capacity": {"NVIDIA-L4": 2}}, content_type="application/json")
    assert created.status_code == 201 and kube.token not in created.content.decode()
    checked = client.post(f"/api/clusters/{created.json()['id']}/check/")
    assert checked.json()["last_check_ok"] is True
    assert AuditEvent.objects.filter(action="cluster.checked").exists()


def test_openapi_schema_lists_the_deployment_endpoints(client, msp_admin):
    client.force_login(msp_admin)
    schema = client.get("/api/schema/").content.decode()
    for path in ("/api/deployments/{id}/promote/", "/api/deployments/{id}/rollback/",
                 "/api/clusters/{id}/check/", "/api/deployments/{id}/scale/"):
        assert path in schema


def test_a_kubeconfig_works_as_credentials(msp_admin, kube):
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "portal",
        "clusters": [{"name": "c", "cluster": {"server": kube.url}}],
        "users": [{"name": "u", "user": {"token": kube.token}}],
        "contexts": [{"name": "portal", "context": {"cluster": "c", "user": "u"}}]})
    cluster = services.cluster_create(actor=msp_admin, name="kc", api_url=kube.url,
                                      jurisdiction="DE", credential_kind="kubeconfig",
                                      credentials=kubeconfig)
    assert services.cluster_check(actor=msp_admin, cluster=cluster).last_check_ok is True
    # A broken kubeconfig is refused when saved (test_kubeconfig_policy.py); one stored before
    # that check existed is refused when used.
    Cluster.objects.filter(pk=cluster.pk).update(
        credentials_encrypted=crypto.encrypt("not: [a kubeconfig"))
    cluster.refresh_from_db()
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.last_check_ok is False and "kubeconfig can't be used" in \
        checked.last_check_message


def test_a_taken_name_is_refused_before_the_manifest(client, msp_admin, cluster, version, kube):
    deploy(msp_admin, cluster, version)
    client.force_login(msp_admin)
    page = post_step(client, 2, wizard_data(version, cluster)).content.decode()
    assert "already exists on this cluster" in page and "Apply to the cluster" not in page
    renamed = post_step(client, 2, wizard_data(version, cluster, name="second-copy"))
    assert "name: second-copy" in renamed.content.decode()


def test_wizard_survives_a_forged_step(client, msp_admin, version):
    client.force_login(msp_admin)
    response = client.post("/msp/deployments/new/", {"step": "nine", "version": version.pk})
    assert response.status_code == 200 and "Model and audience" in response.content.decode()


def test_api_patches_a_cluster_and_deletes_a_deployment(client, msp_admin, cluster, version,
                                                         kube):
    client.force_login(msp_admin)
    patched = client.patch(f"/api/clusters/{cluster.pk}/", {"gpu_capacity": {GPU: 4}},
                           content_type="application/json")
    assert patched.status_code == 200, patched.content
    cluster.refresh_from_db()
    assert cluster.gpu_capacity == {GPU: 4} and cluster.default_mode == "Standard"
    assert cluster.credentials_encrypted  # kept

    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    deleted = client.delete(f"/api/deployments/{deployment.pk}/")
    assert deleted.status_code == 202 and deleted.json()["status"] == "deleting"
    services.deployment_drive(deployment.pk)
    assert kube.isvc(deployment.namespace, deployment.resource_name) is None
    assert client.get(f"/api/deployments/{deployment.pk}/").json()["status"] == "deleted"


def test_a_failed_deployment_shows_its_reason_and_a_retry_button(client, msp_admin, cluster,
                                                                 version, kube):
    deployment = services.kserve_deployment_create(
        actor=msp_admin, deployment=services.kserve_deployment_build(
            version=version, cluster=cluster, tenant=None, runtime="kserve-vllmserver",
            cpu="1", memory="1Gi"))
    kube.fail_next(3, status=502)
    assert services.deployment_drive(deployment.pk) == S.FAILED
    client.force_login(msp_admin)
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert "after 3 attempts" in page and "HTTP 502" in page
    assert f'action="/msp/deployments/{deployment.pk}/retry/"' in page
    assert 'hx-trigger="every 2s"' not in page  # settled: no polling
    client.post(f"/msp/deployments/{deployment.pk}/retry/")
    deployment.refresh_from_db()
    assert deployment.status == S.PENDING


def test_a_change_not_applied_yet_is_shown_as_a_diff_against_the_applied_manifest(
        client, msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    client.force_login(msp_admin)
    assert 'data-testid="pending-diff"' not in client.get(
        f"/msp/deployments/{deployment.pk}/").content.decode()  # applied == desired
    services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=2,
                              max_replicas=4, scale_metric="cpu", scale_target=50)
    page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
    assert 'data-testid="pending-diff"' in page
    assert re.search(r"^- +maxReplicas: 2$", page, re.M)
    assert re.search(r"^\+ +maxReplicas: 4$", page, re.M)
    services.deployment_drive(deployment.pk)  # applied: nothing pending any more
    assert 'data-testid="pending-diff"' not in client.get(
        f"/msp/deployments/{deployment.pk}/").content.decode()


def test_the_roll_out_form_previews_the_manifest_change_without_applying_it(
        client, msp_admin, cluster, version, kube):
    deployment = become_ready(kube, deploy(msp_admin, cluster, version))
    v2 = published_version(version.model, version="2.0")
    client.force_login(msp_admin)
    url = f"/msp/deployments/{deployment.pk}/update/preview/"
    audited = AuditEvent.objects.count()

    rolling = client.post(url, {"version": v2.pk, "canary_traffic_percent": ""}).content.decode()
    assert re.search(rf"^- +storageUri: .*@{version.manifest_digest}$", rolling, re.M)
    assert re.search(rf"^\+ +storageUri: .*@{v2.manifest_digest}$", rolling, re.M)
    canary = client.post(url, {"version": v2.pk, "canary_traffic_percent": "15"}).content.decode()
    assert re.search(r"^\+ +trafficPercent: 15$", canary, re.M)
    assert re.search(r"^\+ +name: v-2-0$", canary, re.M)
    assert AuditEvent.objects.count() == audited  # previews change nothing

    services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=0,
                              max_replicas=2)
    services.deployment_drive(deployment.pk)
    deployment = become_ready(kube, Deployment.objects.get(pk=deployment.pk))
    audited = AuditEvent.objects.count()
    refused = client.post(url, {"version": v2.pk, "canary_traffic_percent": "15"})
    assert 'data-testid="update-preview-problem"' in refused.content.decode()
    assert "would get none" in refused.content.decode()
    deployment.refresh_from_db()
    assert deployment.version == version and deployment.canary_version is None
    assert AuditEvent.objects.count() == audited
