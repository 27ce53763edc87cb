"""ModelPack artifacts deploy through KServe's native OCI support (`oci+native://`, an
ImageVolume) on clusters whose check found it — Kubernetes 1.33 or later and KServe's
`enableOciModelSupport` — and are refused with the reason everywhere else; ModelCar images
deploy as before."""

import re

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


def test_the_wizard_offers_a_modelpack_only_where_the_cluster_can_mount_it(
        client, msp_admin, cluster, kube, modelpack, version):
    """The cluster step says why a cluster can't run a ModelPack artifact, beside it, and
    offers no choice there; the refusal at validation is never the first word."""
    from tests.deployments.conftest import GPU
    from tests.deployments.test_pages_and_api import post_step, wizard_data

    client.force_login(msp_admin)
    first = client.get("/msp/deployments/new/").content.decode()
    assert f"· {modelpack.version} · ModelPack" in first

    target = {"version": modelpack.pk, "tenant": ""}
    page = post_step(client, 0, target).content.decode()
    assert 'data-testid="modelpack-note"' in page and "oci+native://" in page
    assert f'id="cluster-{cluster.pk}"' not in page
    assert f'data-testid="modelpack-problem-{cluster.pk}">the cluster has not been checked ' \
           "for it yet." in page
    assert 'data-testid="modelpack-nowhere"' in page  # no cluster at all can run it

    services.cluster_check(actor=msp_admin, cluster=cluster)  # Kubernetes 1.31: no ImageVolume
    kube.git_version = "v1.34.1"
    kube.kserve_config({"enableOciModelSupport": True})
    native = services.cluster_create(
        actor=msp_admin, name="fra-oci-2", api_url=kube.url, jurisdiction="DE",
        credentials=kube.token, gpu_capacity={GPU: 8}, default_mode="Standard")
    assert services.cluster_check(actor=msp_admin, cluster=native).native_oci_models is True

    page = post_step(client, 0, target).content.decode()
    assert f'id="cluster-{native.pk}"' in page and f'id="cluster-{cluster.pk}"' not in page
    problem = re.search(rf'data-testid="modelpack-problem-{cluster.pk}">([^<]*)<', page)
    assert "1.33 or later" in problem.group(1)
    assert f'data-testid="modelpack-problem-{native.pk}"' not in page
    assert 'data-testid="modelpack-nowhere"' not in page

    # A cluster posted anyway gets the reason on the cluster step, not later.
    forged = post_step(client, 1, {**target, "cluster": cluster.pk, "mode": ""})
    body = forged.content.decode()
    assert "CNCF ModelPack artifact" in body and "1.33 or later" in body
    assert 'aria-current="step"><span class="step-number">2</span> Cluster' in body

    chosen = post_step(client, 1, {**target, "cluster": native.pk, "mode": ""})
    assert 'aria-current="step"><span class="step-number">3</span> Runtime and resources' in \
        chosen.content.decode()
    review = post_step(client, 2, wizard_data(modelpack, native)).content.decode()
    assert "Apply to the cluster" in review
    assert f"oci+native://registry.example.test/{modelpack.trusted_repository}@" in review

    # A ModelCar image is offered on every cluster inside the policy, as before.
    page = post_step(client, 0, {"version": version.pk, "tenant": ""}).content.decode()
    assert f'id="cluster-{cluster.pk}"' in page and f'id="cluster-{native.pk}"' in page
    assert "modelpack-note" not in page and "modelpack-problem" not in page


def test_the_roll_out_form_offers_a_modelpack_only_where_the_cluster_can_mount_it(
        client, msp_admin, cluster, kube, version):
    """A deployment's roll-out form lists a ModelPack version of its model only on a cluster
    whose check found native OCI support (before, it was listed and then refused)."""
    deployment = services.kserve_deployment_create(actor=msp_admin,
                                                   deployment=build(cluster, version))
    pack = published_version(version.model, version="2.0")
    ModelVersion.objects.filter(pk=pack.pk).update(artifact_kind=ArtifactKind.MODELPACK)
    car = published_version(version.model, version="2.1")
    client.force_login(msp_admin)

    def offered() -> set[int]:
        page = client.get(f"/msp/deployments/{deployment.pk}/").content.decode()
        select = re.search(r'<select name="version".*?</select>', page, re.S).group(0)
        return {int(pk) for pk in re.findall(r'<option value="(\d+)"', select)}

    services.cluster_check(actor=msp_admin, cluster=cluster)  # Kubernetes 1.31: no support
    assert offered() == {car.pk}
    kube.git_version = "v1.33.4"
    kube.kserve_config({"enableOciModelSupport": True})
    services.cluster_check(actor=msp_admin, cluster=cluster)
    assert offered() == {pack.pk, car.pk}
