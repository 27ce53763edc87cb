"""Without REGISTRY_URL every deployment page, API, command and worker step that needs a
manifest (it names the registry in `storageUri`) says the registry is not configured and what
to set — never a 500, never a traceback."""

import pytest
from django.core.management import CommandError, call_command

from deployments import services
from deployments.models import Deployment, DeploymentStatus
from tests.deployments.conftest import GPU
from tests.deployments.test_kserve_lifecycle import become_ready, deploy
from tests.deployments.test_pages_and_api import post_step, wizard_data
from tests.factories import published_version

S = DeploymentStatus
SAYS = "No OCI registry is configured: set REGISTRY_URL"


@pytest.fixture
def ready(msp_admin, cluster, version, kube):
    """A ready deployment, applied while the registry was configured."""
    return become_ready(kube, deploy(msp_admin, cluster, version))


def _unset(settings):
    settings.REGISTRY_URL = ""


def test_manifest_download_api_and_command_say_so(client, msp_admin, ready, settings):
    _unset(settings)
    client.force_login(msp_admin)

    download = client.get(f"/msp/deployments/{ready.pk}/manifest.yaml")
    assert download.status_code == 409 and SAYS in download.content.decode()
    api = client.get(f"/api/deployments/{ready.pk}/manifest/")
    assert api.status_code == 400 and SAYS in api.json()["detail"]
    with pytest.raises(CommandError, match=SAYS):
        call_command("deployment_manifest", str(ready.pk))


def test_the_detail_page_says_so_instead_of_the_manifest_diffs(client, msp_admin, ready,
                                                               settings):
    v2 = published_version(ready.version.model, version="2.0")
    services.deployment_update_version(actor=msp_admin, deployment=ready, version=v2,
                                       canary_traffic_percent=20)
    _unset(settings)
    client.force_login(msp_admin)

    page = client.get(f"/msp/deployments/{ready.pk}/")
    body = page.content.decode()
    assert page.status_code == 200 and 'data-testid="registry-problem"' in body
    assert SAYS in body and "manifest.yaml" not in body
    assert client.get(f"/msp/deployments/{ready.pk}/", HTTP_HX_REQUEST="true").status_code == 200


def test_the_roll_out_preview_says_so(client, msp_admin, ready, settings):
    v2 = published_version(ready.version.model, version="2.0")
    _unset(settings)
    client.force_login(msp_admin)
    preview = client.post(f"/msp/deployments/{ready.pk}/update/preview/",
                          {"version": v2.pk, "canary_traffic_percent": ""})
    assert preview.status_code == 200 and SAYS in preview.content.decode()


def test_the_wizard_and_the_api_say_so_and_create_nothing(client, msp_admin, cluster, version,
                                                          settings, kube):
    _unset(settings)
    client.force_login(msp_admin)
    assert SAYS in client.get("/msp/deployments/new/").content.decode()
    data = wizard_data(version, cluster)
    review = post_step(client, 2, data)
    assert review.status_code == 200 and SAYS in review.content.decode()
    assert "Apply to the cluster" not in review.content.decode()
    applied = post_step(client, 3, data, apply="1")
    assert applied.status_code == 200 and SAYS in applied.content.decode()

    body = {"version": version.pk, "cluster": cluster.pk, "runtime": "kserve-vllmserver",
            "gpu_product": GPU, "gpu_count": 1, "cpu": "8", "memory": "64Gi"}
    for dry_run in (True, False):
        response = client.post("/api/deployments/", {**body, "dry_run": dry_run},
                               content_type="application/json")
        assert response.status_code == 400 and SAYS in response.json()["detail"]
    assert not Deployment.objects.exists() and kube.count("POST") == 0


def test_changes_are_refused_with_the_reason_on_pages_and_api(client, msp_admin, ready,
                                                              settings):
    _unset(settings)
    client.force_login(msp_admin)
    for action in ("stop", "scale"):
        page = client.post(f"/msp/deployments/{ready.pk}/{action}/",
                           {"min_replicas": "1", "max_replicas": "3"}, follow=True)
        assert page.status_code == 200 and SAYS in page.content.decode(), action
    api = client.post(f"/api/deployments/{ready.pk}/stop/")
    assert api.status_code == 400 and SAYS in api.json()["detail"]
    ready.refresh_from_db()
    assert ready.status == S.READY and not ready.stop_requested


def test_worker_steps_record_the_reason_instead_of_crashing(msp_admin, cluster, version, kube,
                                                            settings):
    pending = services.kserve_deployment_create(
        actor=msp_admin, deployment=services.kserve_deployment_build(
            version=version, cluster=cluster, tenant=None, name="waiting",
            runtime="kserve-vllmserver", gpu_product=GPU, gpu_count=1, cpu="8",
            memory="64Gi", min_replicas=1, max_replicas=1))
    running = become_ready(kube, deploy(msp_admin, cluster, version))
    _unset(settings)

    assert services.deployment_drive(pending.pk) == S.FAILED
    pending.refresh_from_db()
    assert SAYS in pending.status_reason
    assert services.deployment_follow(running.pk) == S.READY  # still serving, still followed
    assert services.deployment_reconcile(running.pk) == "unreachable"
    assert SAYS in running.events.first().message
