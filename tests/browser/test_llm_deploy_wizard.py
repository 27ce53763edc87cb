"""From the browser: an MSP admin curates an LLMInferenceService preset, deploys a published
ModelCar with it from the wizard, runs a canary and promotes it. KServe's controller is played
by the test on the Kubernetes emulator (which admits every body against KServe v0.20's CRD
schemas); the worker's steps are the same services the Celery tasks call."""

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
IMAGE = ("registry.example.eu/llm-d/llm-d-cuda:v0.8.0@sha256:"
         "4b0e3c4f7f5d9a8c2e1b6a0d9f8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d")


@pytest.fixture
def kube():
    emulator = start_emulator()
    yield emulator
    emulator.stop()
    assert emulator.pruned == [], emulator.pruned  # a real API server would drop them


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def play_controller(kube, deployment):
    """KServe's LLMInferenceService controller: every member of the group reports."""
    deployment.refresh_from_db()
    for member in kube.llm_members(deployment.namespace):
        kube.set_llm_status(deployment.namespace, member["metadata"]["name"])
    services.deployment_follow(deployment.pk)


def test_preset_wizard_canary_and_promotion(page, live_server, kube, settings):
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    settings.REGISTRY_URL = "https://registry.example.test"
    settings.KUBE_REQUEST_TIMEOUT_SECONDS = 2
    admin = UserFactory(email="msp@example.test", totp=True)
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    version = published_version(version="1.0")
    v2 = published_version(version.model, version="2.0")
    cluster = services.cluster_create(actor=admin, name="fra-gpu-1", api_url=kube.url,
                                      jurisdiction="DE", credentials=kube.token,
                                      gpu_capacity={GPU: 16})
    services.cluster_check(actor=admin, cluster=cluster)
    foreign = ForeignRequests(page, live_server.url)
    sign_in(page, admin.email, PASSWORD, totp_secret=TOTP_SECRET)

    # The preset: an LLMInferenceServiceConfig.
    page.goto("/msp/llm-presets/")
    expect(page.get_by_text("No presets yet")).to_be_visible()
    page.get_by_role("link", name="New preset").first.click()
    page.fill("#id_name", "a100-tp2")
    page.fill("#id_description", "vLLM on two A100s, prefix-cache-aware scheduling")
    page.fill("#id_runtime_image", IMAGE)
    page.fill("#id_runtime_args", "--max-model-len=8192\n--enable-prefix-caching")
    page.fill("#id_gpu_product", GPU)
    page.fill("#id_gpu_count", "2")
    page.fill("#id_cpu", "16")
    page.fill("#id_memory", "128Gi")
    page.fill("#id_tensor_parallel", "2")
    page.fill("#id_kv_offload_cpu", "32Gi")
    shot(page, "llm-preset-form")
    page.get_by_test_id("save-preset").click()
    expect(page.get_by_test_id("preset-config")).to_contain_text("kind: "
                                                                 "LLMInferenceServiceConfig")
    expect(page.get_by_test_id("preset-config")).to_contain_text("tensor: 2")
    shot(page, "llm-preset-detail")
    page.goto("/msp/llm-presets/")
    expect(page.get_by_test_id("presets")).to_contain_text("a100-tp2")
    shot(page, "llm-preset-list")

    # The wizard: version, cluster and backend, preset and replicas, the exact objects.
    page.goto("/msp/deployments/new/")
    page.select_option("#id_version", str(version.pk))
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id(f"serves-{cluster.pk}")).to_contain_text("LLMInferenceService")
    page.check(f"#cluster-{cluster.pk}")
    page.select_option("#id_backend", "llmisvc")
    shot(page, "llm-wizard-cluster")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Preset and replicas").first).to_be_visible()
    page.fill("#id_name", "llama")
    page.fill("#id_max_replicas", "2")
    page.fill("#id_min_replicas", "2")
    page.fill("#id_prefill_replicas", "1")
    shot(page, "llm-wizard-preset")
    page.get_by_role("button", name="Next").click()
    manifest = page.get_by_test_id("manifest")
    expect(manifest).to_contain_text("kind: LLMInferenceServiceConfig")
    expect(manifest).to_contain_text(f"@{version.manifest_digest}")
    expect(manifest).to_contain_text("- name: a100-tp2")
    shot(page, "llm-wizard-manifest")
    page.get_by_test_id("apply").click()
    expect(page).to_have_url(re.compile(r"/msp/deployments/\d+/$"))
    deployment = Deployment.objects.get()
    assert deployment.backend == "llmisvc" and deployment.gpus_reserved == 2 * (2 + 1)

    services.deployment_drive(deployment.pk)
    expect(page.get_by_test_id("status")).to_have_text("Progressing")
    play_controller(kube, deployment)
    expect(page.get_by_test_id("status")).to_have_text("Ready", timeout=10_000)
    expect(page.get_by_test_id("upstream")).to_contain_text("/models-shared/llama/v1")
    expect(page.get_by_test_id("conditions")).to_contain_text("PresetsCombined")
    shot(page, "llm-deployment-ready")

    # Canary: v2 as a second LLMInferenceService in the routing group at weight 10.
    page.select_option("#id_version", str(v2.pk))
    page.fill("#id_canary_traffic_percent", "10")
    page.get_by_test_id("preview-update").click()
    expect(page.get_by_test_id("update-preview-diff")).to_contain_text("weight: 10")
    page.get_by_test_id("update").click()
    expect(page.get_by_text("Manifest change of the pending canary")).to_be_visible()
    services.deployment_drive(deployment.pk)
    play_controller(kube, deployment)
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("Ready")
    expect(page.get_by_test_id("conditions")).to_contain_text("llama-v-2-0")
    expect(page.get_by_test_id("conditions")).to_contain_text("GroupReady")
    shot(page, "llm-deployment-canary")
    assert kube.llm("models-shared", "llama-v-2-0")["spec"]["router"]["route"] == {
        "group": "llama", "weight": 10}

    # Promote: the old one stops (serving.kserve.io/stop), the canary takes all the weight.
    page.get_by_test_id("promote").click()
    services.deployment_drive(deployment.pk)
    play_controller(kube, deployment)
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("Ready")
    expect(page.get_by_test_id("upstream")).to_contain_text("/models-shared/llama-v-2-0/v1")
    shot(page, "llm-deployment-promoted")
    assert kube.llm("models-shared", "llama")["metadata"]["annotations"][
        "serving.kserve.io/stop"] == "true"
    deployment.refresh_from_db()
    assert deployment.version == v2 and deployment.stopped_member == "llama"
    assert foreign.foreign == []
