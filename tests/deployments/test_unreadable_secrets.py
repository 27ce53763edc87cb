"""A stored secret that no key in FIELD_ENCRYPTION_KEYS decrypts disables only the object that
holds it: its page says what happened and what to do, its check fails, others carry on, and
the audit trail records it once — never a 500, never a stopped process."""

import pytest

from audit.models import AuditEvent
from deployments import services
from deployments.models import Cluster, Deployment, DeploymentStatus
from models_catalog.models import Model
from portal import crypto
from tests.deployments.test_kserve_lifecycle import become_ready, deploy
from tests.support.processes import start_upstream, stop
from tests.support.secret_keys import keys, new_key

KEY = "upstream-secret"
UNREADABLE = "can't be decrypted"


@pytest.fixture(scope="module")
def keyed_upstream():
    process, base = start_upstream("--models", "local-llm,other-llm", "--api-key", KEY)
    yield base
    stop(process)


def _unreadable_events(obj) -> int:
    return AuditEvent.objects.filter(action="secret.unreadable", target_id=str(obj.pk),
                                     target_type=obj._meta.label_lower).count()


def test_a_cluster_whose_credentials_are_unreadable_fails_its_own_check_only(
        client, msp_admin, cluster, kube):
    with keys(new_key()):  # a key that is then removed from the settings
        locked = services.cluster_create(actor=msp_admin, name="muc-1", api_url=kube.url,
                                         jurisdiction="DE", credentials=kube.token)

    for _ in range(2):
        services.cluster_check(actor=msp_admin, cluster=locked)
    services.cluster_check(actor=msp_admin, cluster=cluster)

    assert locked.last_check_ok is False
    assert UNREADABLE in locked.last_check_message
    assert "Enter the token or kubeconfig again" in locked.last_check_message
    assert cluster.last_check_ok is True
    assert _unreadable_events(locked) == 1 and _unreadable_events(cluster) == 0
    client.force_login(msp_admin)
    for url in (f"/msp/clusters/{locked.pk}/", f"/msp/clusters/{locked.pk}/edit/"):
        page = client.get(url)
        assert page.status_code == 200
        assert 'data-testid="secret-problems"' in page.content.decode()
    assert "secret-problems" not in client.get(f"/msp/clusters/{cluster.pk}/").content.decode()

    services.cluster_update(actor=msp_admin, cluster=locked, credentials=kube.token)
    services.cluster_check(actor=msp_admin, cluster=locked)
    assert locked.last_check_ok is True  # entered again: back in service


def test_an_endpoint_whose_key_is_unreadable_is_failed_with_the_reason_others_stay_ready(
        client, msp_admin, keyed_upstream, db):
    local = Model.objects.create(slug="local-llm", name="Local LLM", task="chat")
    other = Model.objects.create(slug="other-llm", name="Other LLM", task="chat")
    with keys(new_key()):
        locked = services.external_endpoint_register(actor=msp_admin, model=local,
                                                     base_url=keyed_upstream,
                                                     upstream_api_key=KEY)
    healthy = services.external_endpoint_register(actor=msp_admin, model=other,
                                                  base_url=keyed_upstream, upstream_api_key=KEY)
    assert locked.status == healthy.status == DeploymentStatus.READY

    counts = services.external_endpoints_check_all()
    services.external_endpoints_check_all()

    assert counts == {"failed": 1, "ready": 1}
    locked.refresh_from_db()
    assert locked.status == DeploymentStatus.FAILED and UNREADABLE in locked.status_reason
    assert Deployment.objects.get(pk=healthy.pk).status == DeploymentStatus.READY
    assert _unreadable_events(locked) == 1
    client.force_login(msp_admin)
    detail = client.get(f"/msp/deployments/{locked.pk}/").content.decode()
    assert 'data-testid="secret-problems"' in detail
    assert "Enter the key again on the endpoint&#x27;s edit page" in detail
    edit = client.get(f"/msp/deployments/{locked.pk}/endpoint/")
    assert edit.status_code == 200 and "secret-problems" in edit.content.decode()

    response = client.post(f"/msp/deployments/{locked.pk}/endpoint/", {
        "base_url": keyed_upstream, "upstream_model": "", "name": "",
        "upstream_api_key": KEY}, follow=True)
    assert "health check passed" in response.content.decode()
    assert "secret-problems" not in response.content.decode()
    assert Deployment.objects.get(pk=locked.pk).status == DeploymentStatus.READY


def test_models_already_serving_on_that_cluster_keep_serving(msp_admin, cluster, version,
                                                            kube):
    ready = become_ready(kube, deploy(msp_admin, cluster, version))
    progressing = deploy(msp_admin, cluster, version, name="second")
    with keys(new_key()):  # the credentials end up under a key that is then removed
        Cluster.objects.filter(pk=cluster.pk).update(
            credentials_encrypted=crypto.encrypt(kube.token))

    assert services.deployment_follow(ready.pk) == DeploymentStatus.READY
    assert services.deployment_follow(progressing.pk) == DeploymentStatus.FAILED
    progressing.refresh_from_db()
    assert UNREADABLE in progressing.status_reason
    assert _unreadable_events(cluster) == 1
