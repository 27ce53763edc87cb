"""LLMInferenceService presets (their refusals, names, roll-out of an edit, deletion), the
GitOps export and the REST API. The deploy, canary and reconcile paths are in
test_llm_inference_service.py, whose helpers these tests share."""

import io

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.management import call_command

from audit.models import AuditEvent
from deployments import services
from deployments.backends import manifest_yaml
from deployments.models import LLMServicePreset
from tests.deployments.conftest import preset_fields
from tests.deployments.test_llm_inference_service import S, annotations, deploy, settle

# --- presets ------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,field,message", [
    ({"runtime_image": "ghcr.io/llm-d/llm-d-cuda:v0.8.0"}, "runtime_image", "pinned by digest"),
    ({"name": "kserve-config-llm-template"}, "name", "KServe's own"),
    ({"tensor_parallel": 2}, "gpu_count", "give each pod 2 GPUs"),
    ({"pipeline_parallel": 2, "data_parallel": 2, "gpu_count": 1}, "pipeline_parallel",
     "not both"),
    ({"data_parallel": 3, "data_local_parallel": 2, "gpu_count": 2}, "data_local_parallel",
     "multiple"),
    ({"scheduler": "custom"}, "scheduler_config", "EndpointPickerConfig"),
    ({"kv_offload_cpu": ""}, "kv_offload_cpu", "disk tier needs"),
    ({"runtime_args": {"--tensor-parallel-size": "2"}}, "runtime_args", "own field"),
    ({"runtime_args": {"--trust-remote-code": True}}, "runtime_args", "not allowed"),
    ({"memory": "lots"}, "memory", "Kubernetes quantity"),
])
def test_preset_refusals_say_what_to_do(overrides, field, message, msp_admin):
    with pytest.raises(ValidationError) as refused:
        services.llm_preset_create(actor=msp_admin, **preset_fields(**overrides))
    assert message in " ".join(refused.value.message_dict[field])
    assert not LLMServicePreset.objects.exists()


def test_a_preset_name_is_taken_until_it_is_deleted(msp_admin, preset):
    with pytest.raises(ValidationError, match="exists"):
        services.llm_preset_create(actor=msp_admin, **preset_fields())
    services.llm_preset_delete(actor=msp_admin, preset=preset)
    again = services.llm_preset_create(actor=msp_admin, **preset_fields())
    assert again.pk != preset.pk
    assert list(AuditEvent.objects.filter(action__startswith="llm_preset.").values_list(
        "action", flat=True).order_by("pk")) == [
        "llm_preset.created", "llm_preset.deleted", "llm_preset.created"]


def test_editing_a_preset_rolls_it_out_to_its_deployments(msp_admin, llm_cluster, version,
                                                          preset, gpu_tenant, kube):
    deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset))
    # A description is not applied: nothing to roll out.
    services.llm_preset_update(actor=msp_admin, preset=preset, description="Llama on A100")
    assert preset.revision == 1
    deployment.refresh_from_db()
    assert deployment.status == S.READY

    services.llm_preset_update(actor=msp_admin, preset=preset, gpu_count=2, tensor_parallel=2)
    assert preset.revision == 2
    deployment.refresh_from_db()
    assert deployment.status == S.PENDING and deployment.gpu_count == 2
    assert "Preset a100-tp1 changed (revision 2)" in deployment.status_reason
    services.deployment_drive(deployment.pk)
    config = kube.llm_config(deployment.namespace, preset.name)
    assert config["spec"]["parallelism"] == {"tensor": 2}
    assert annotations(config)["portal.sovereign.eu/llm-preset-revision"] == "2"
    assert AuditEvent.objects.filter(action="deployment.preset_changed").count() == 1

    # A change a deployment could not take is refused before anything is saved.
    deployment = settle(kube, deployment)
    tenant_deployment = settle(kube, deploy(msp_admin, llm_cluster, version, preset,
                                            gpu_tenant, min_replicas=1, max_replicas=1))
    with pytest.raises(ValidationError, match=f"{tenant_deployment.name} on fra-gpu-1 uses "
                                              "this preset and would be refused"):
        services.llm_preset_update(actor=msp_admin, preset=preset, gpu_count=8,
                                   tensor_parallel=8)
    preset.refresh_from_db()
    assert (preset.gpu_count, preset.revision) == (2, 2)


def test_a_preset_in_use_is_not_deleted(msp_admin, llm_cluster, version, preset, kube):
    deploy(msp_admin, llm_cluster, version, preset)
    with pytest.raises(ValidationError, match="used by deployments"):
        services.llm_preset_delete(actor=msp_admin, preset=preset)


# --- GitOps export and the API ------------------------------------------------------------

def test_the_gitops_export_lists_the_preset_and_the_services(client, msp_admin, llm_cluster,
                                                             version, preset, kube):
    deployment = deploy(msp_admin, llm_cluster, version, preset)
    out = io.StringIO()
    call_command("deployment_manifest", str(deployment.pk), stdout=out)
    exported = yaml.safe_load(out.getvalue())
    assert out.getvalue() == manifest_yaml(deployment)
    assert [i["kind"] for i in exported["items"]] == ["LLMInferenceServiceConfig",
                                                      "LLMInferenceService"]
    client.force_login(msp_admin)
    api = client.get(f"/api/deployments/{deployment.pk}/manifest/").json()
    assert api["manifest"] == exported


def test_the_api_creates_llm_deployments_and_presets(client, msp_admin, llm_cluster, version,
                                                     preset, kube):
    client.force_login(msp_admin)
    body = {"version": version.pk, "cluster": llm_cluster.pk, "backend": "llmisvc",
            "preset": preset.pk, "name": "from-api", "min_replicas": 1, "max_replicas": 2,
            "autoscaler": "hpa", "dry_run": True}
    dry = client.post("/api/deployments/", body, content_type="application/json")
    assert dry.status_code == 200, dry.content
    assert dry.json()["manifest"]["items"][1]["spec"]["scaling"]["wva"] == {"hpa": {}}
    created = client.post("/api/deployments/", {**body, "dry_run": False},
                          content_type="application/json")
    assert created.status_code == 201 and created.json()["llm_preset"] == preset.name
    assert client.post("/api/deployments/", {**body, "preset": None, "name": "x"},
                       content_type="application/json").status_code == 400
    external = client.post("/api/deployments/", {**body, "backend": "external", "name": "y"},
                           content_type="application/json")
    assert external.status_code == 400 and "/api/deployments/external/" in \
        external.content.decode()

    made = client.post("/api/llm-presets/", preset_fields(name="h100-tp4", gpu_count=4,
                                                          tensor_parallel=4,
                                                          gpu_product="NVIDIA-H100"),
                       content_type="application/json")
    assert made.status_code == 201, made.content
    assert made.json()["revision"] == 1 and made.json()["in_use"] == 0
    bad = client.patch(f"/api/llm-presets/{made.json()['id']}/", {"gpu_count": 3},
                       content_type="application/json")
    assert bad.status_code == 400 and "give each pod 4 GPUs" in bad.content.decode()
    listed = client.get("/api/llm-presets/").json()
    assert {p["name"]: p["in_use"] for p in listed} == {"a100-tp1": 1, "h100-tp4": 0}
