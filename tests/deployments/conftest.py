import pytest

from deployments import services
from tests.factories import published_version
from tests.support.kube_emulator import start_emulator

GPU = "NVIDIA-A100-SXM4-80GB"


@pytest.fixture(autouse=True)
def _deployment_settings(settings):
    settings.ALLOWED_JURISDICTIONS = ["DE", "EU"]
    settings.REGISTRY_URL = "https://registry.example.test"
    settings.KUBE_REQUEST_TIMEOUT_SECONDS = 1
    settings.KUBE_API_ATTEMPTS = 3
    settings.KUBE_RETRY_BACKOFF_MS = 10


@pytest.fixture
def kube():
    emulator = start_emulator()
    yield emulator
    emulator.stop()
    # A real API server prunes fields its CRD schema does not know without a word.
    assert emulator.pruned == [], emulator.pruned


@pytest.fixture
def cluster(db, kube, msp_admin):
    return services.cluster_create(
        actor=msp_admin, name="fra-gpu-1", api_url=kube.url, jurisdiction="DE",
        credentials=kube.token, gpu_capacity={GPU: 8, "NVIDIA-L4": 4},
        gateway_namespace="istio-system", default_mode="Standard")


@pytest.fixture
def version(db):
    return published_version(version="1.0")


@pytest.fixture
def gpu_tenant(tenant):
    tenant.max_gpus = 4
    tenant.jurisdiction = "DE"
    tenant.save()
    return tenant


RUNTIME_IMAGE = ("registry.example.eu/llm-d/llm-d-cuda:v0.8.0@sha256:"
                 "4b0e3c4f7f5d9a8c2e1b6a0d9f8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d")


def preset_fields(**overrides) -> dict:
    fields = dict(name="a100-tp1", description="vLLM on one A100", runtime_image=RUNTIME_IMAGE,
                  runtime_args={"--max-model-len": "8192", "--enable-prefix-caching": True},
                  gpu_product=GPU, gpu_count=1, cpu="8", memory="64Gi", scheduler="default",
                  kv_offload_cpu="16Gi", kv_offload_policy="lru", kv_offload_disk="100Gi")
    fields.update(overrides)
    return fields


@pytest.fixture
def llm_cluster(cluster, msp_admin):
    """The cluster, checked: the emulator serves LLMInferenceService at v1alpha2."""
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.llm_inference_service is True
    return checked


@pytest.fixture
def preset(db, msp_admin):
    return services.llm_preset_create(actor=msp_admin, **preset_fields())
