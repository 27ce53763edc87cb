"""ModelPack artifacts deploy through KServe's native OCI support (`oci+native://`, an
ImageVolume) on clusters whose check found it — Kubernetes 1.33 or later and KServe's
`enableOciModelSupport` — and are refused with the reason everywhere else; ModelCar images
deploy as before."""

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from deployments import services
from deployments.models import DeploymentStatus
from models_catalog.models import ArtifactKind, ModelVersion
from tests.deployments.test_kserve_lifecycle import build
from tests.factories import published_version

pytestmark = pytest.mark.django_db
S = DeploymentStatus


@pytest.fixture
def modelpack(db):
    version = published_version(version="1.0")
    ModelVersion.objects.filter(pk=version.pk).update(artifact_kind=ArtifactKind.MODELPACK)
    version.refresh_from_db()
    return version


def test_the_cluster_check_finds_native_oci_support_or_says_what_is_missing(
        msp_admin, cluster, kube, client):
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.last_check_ok is True
    assert checked.native_oci_models is False
    assert "v1.31.2 has no ImageVolume support; 1.33 or later" in checked.native_oci_detail
    assert "native OCI models (oci+native://, ModelPack) not available" in \
        checked.last_check_message

    kube.git_version = "v1.33.4"
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.native_oci_models is False
    assert "inferenceservice-config ConfigMap is not in the kserve namespace" in \
        checked.native_oci_detail

    kube.kserve_config({"image": "kserve/storage-initializer:v0.20.0", "enableModelcar": True})
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.native_oci_models is False
    assert '"enableOciModelSupport": true' in checked.native_oci_detail

    kube.kserve_config({"enableOciModelSupport": True, "ociModelMode": "modelcar"})
    checked = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert checked.native_oci_models is True and checked.native_oci_detail == ""
    event = AuditEvent.objects.filter(action="cluster.checked").order_by("-seq").first()
    assert event.details["native_oci_models"] is True
    client.force_login(msp_admin)
    page = client.get(f"/msp/clusters/{cluster.pk}/").content.decode()
    assert "oci+native://" in page and "available" in page
    assert client.get(f"/api/clusters/{cluster.pk}/").json()["native_oci_models"] is True


def test_a_modelpack_is_refused_with_the_reason_where_the_cluster_lacks_support(
        msp_admin, cluster, kube, modelpack, client):
    with pytest.raises(ValidationError) as unchecked:
        services.kserve_deployment_create(actor=msp_admin, deployment=build(cluster, modelpack))
    assert "has not been checked for it yet" in str(unchecked.value)

    services.cluster_check(actor=msp_admin, cluster=cluster)
    cluster.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        services.kserve_deployment_create(actor=msp_admin, deployment=build(cluster, modelpack))
    message = refused.value.message_dict["version"][0]
    assert "CNCF ModelPack artifact" in message and "oci+native://" in message
    assert "1.33 or later" in message
    refusal = AuditEvent.objects.filter(action="deployment.refused").order_by("-seq").first()
    assert "ModelPack" in refusal.details["reason"]
    assert kube.isvc("models-shared", modelpack.model.slug) is None

    client.force_login(msp_admin)
    response = client.post("/api/deployments/", {
        "version": modelpack.pk, "model": modelpack.model.slug, "cluster": cluster.pk,
        "runtime": "kserve-vllmserver", "gpu_count": 0, "cpu": "2", "memory": "8Gi"},
        content_type="application/json")
    assert response.status_code == 400, response.content
    assert "ModelPack" in str(response.json())


def test_a_modelpack_deploys_with_oci_native_where_the_cluster_has_it(
        msp_admin, cluster, kube, modelpack, version):
    kube.git_version = "v1.34.1"
    kube.kserve_config({"enableOciModelSupport": True})
    cluster = services.cluster_check(actor=msp_admin, cluster=cluster)
    assert cluster.native_oci_models is True
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, modelpack))
    assert services.deployment_drive(deployment.pk) == S.PROGRESSING
    deployment.refresh_from_db()
    model = kube.isvc(deployment.namespace, deployment.resource_name)["spec"]["predictor"][
        "model"]
    assert model["storageUri"] == (f"oci+native://registry.example.test/"
                                   f"{modelpack.trusted_repository}@{modelpack.manifest_digest}")

    # The cluster loses the support later (KServe reconfigured, found by the next check): a
    # change to the ModelPack deployment is refused with the reason; ModelCar images are not
    # affected.
    kube.kserve_config({"enableModelcar": True})
    services.cluster_check(actor=msp_admin, cluster=cluster)
    deployment.refresh_from_db()
    with pytest.raises(ValidationError, match="OCI model support is off"):
        services.deployment_scale(actor=msp_admin, deployment=deployment, min_replicas=1,
                                  max_replicas=3, scale_metric="cpu", scale_target=70)
    modelcar = services.kserve_deployment_create(
        actor=msp_admin, deployment=build(cluster, version, name="car"))
    assert services.deployment_drive(modelcar.pk) == S.PROGRESSING
    car = kube.isvc(modelcar.namespace, modelcar.resource_name)["spec"]["predictor"]["model"]
    assert car["storageUri"].startswith("oci://registry.example.test/")
