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
