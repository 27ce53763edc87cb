"""From the browser: a published model goes through the wizard to a ready deployment, then
through a canary to promotion. The KServe controller's part is played by the test on the
Kubernetes API emulator; the worker's steps are the same services the Celery tasks call."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from deployments import services
from deployments.models import Deployment
from tenants.models import PlatformRole, PlatformRoleGrant
from tests.factories import PASSWORD, TOTP_SECRET, UserFactory, published_version
from tests.support.browser import ForeignRequests, sign_in
from tests.support.kube_emulator import start_emulator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "var" /
                            "screenshots"))
GPU = "NVIDIA-A100-SXM4-80GB"


@pytest.fixture
def kube():
    emulator = start_emulator()
    yield emulator
    emulator.stop()
    assert emulator.pruned == [], emulator.pruned  # a real API server would drop them


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_wizard_to_ready_then_canary_and_promotion(page, live_server, kube, settings):
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    settings.REGISTRY_URL = "https://registry.example.test"
    settings.KUBE_REQUEST_TIMEOUT_SECONDS = 2
    admin = UserFactory(email="msp@example.test", totp=True)
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    version = published_version(version="1.0")
    v2 = published_version(version.model, version="2.0")
    cluster = services.cluster_create(actor=admin, name="fra-gpu-1", api_url=kube.url,
                                      jurisdiction="DE", credentials=kube.token,
                                      gpu_capacity={GPU: 8})
    services.cluster_create(actor=admin, name="us-east", api_url="https://k8s.us.example.test",
                            jurisdiction="US", credentials="x", gpu_capacity={GPU: 64})
    foreign = ForeignRequests(page, live_server.url)
    sign_in(page, admin.email, PASSWORD, totp_secret=TOTP_SECRET)

    page.goto("/msp/clusters/")
    expect(page.get_by_text("outside policy")).to_be_visible()
    shot(page, "clusters")

    page.goto("/msp/deployments/new/")
    page.select_option("#id_version", str(version.pk))
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("us-east")).to_be_visible()
    expect(page.locator(f"#cluster-{cluster.pk}")).to_be_visible()
    shot(page, "wizard-cluster")
    page.check(f"#cluster-{cluster.pk}")
    page.get_by_role("button", name="Next").click()
    page.fill("#id_extra_args", "--max-model-len=8192\n--enable-prefix-caching")
    page.select_option("#id_scale_metric", "cpu")
    page.fill("#id_scale_target", "70")
    shot(page, "wizard-resources")
    page.get_by_role("button", name="Next").click()
    manifest = page.get_by_test_id("manifest")
    expect(manifest).to_contain_text(f"@{version.manifest_digest}")
    expect(manifest).to_contain_text("serving.kserve.io/deploymentMode: Standard")
    shot(page, "wizard-manifest")
    page.get_by_test_id("apply").click()
    expect(page).to_have_url(re.compile(r"/msp/deployments/\d+/$"))
    deployment = Deployment.objects.get()

    # The worker's part: apply, then KServe reports Ready; the page polls and shows it.
    services.deployment_drive(deployment.pk)
    expect(page.get_by_test_id("status")).to_have_text("Progressing")
    kube.set_isvc_status(deployment.namespace, deployment.resource_name, ready=True)
    services.deployment_follow(deployment.pk)
    expect(page.get_by_test_id("status")).to_have_text("Ready", timeout=10_000)
    expect(page.get_by_test_id("upstream")).to_contain_text(".example.test/v1")
    shot(page, "deployment-ready")

    page.select_option("#id_version", str(v2.pk))
    page.fill("#id_canary_traffic_percent", "10")
    page.get_by_test_id("preview-update").click()
    expect(page.get_by_test_id("update-preview-diff")).to_contain_text("trafficPercent: 10")
    shot(page, "deployment-update-preview")
    page.get_by_test_id("update").click()
    expect(page.get_by_text("Manifest change of the pending canary")).to_be_visible()
    services.deployment_drive(deployment.pk)
    services.deployment_follow(deployment.pk)
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("Ready")
    shot(page, "deployment-canary")
    assert kube.isvc(deployment.namespace, deployment.resource_name)["spec"]["canary"][0][
        "trafficPercent"] == 10

    page.get_by_test_id("promote").click()
    services.deployment_drive(deployment.pk)
    services.deployment_follow(deployment.pk)
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("Ready")
    deployment.refresh_from_db()
    assert deployment.version == v2 and deployment.canary_version is None
    isvc = kube.isvc(deployment.namespace, deployment.resource_name)
    assert isvc["spec"]["predictor"]["model"]["storageUri"].endswith(v2.manifest_digest)
    page.goto("/msp/deployments/")
    shot(page, "deployments")
    assert foreign.foreign == []
