"""From the browser: register an external endpoint and check it again, delete a cluster
after confirming, and a tenant viewer's read-only deployments page."""

import re

import pytest
from playwright.sync_api import expect

from deployments import services
from deployments.models import Backend, Deployment, DeploymentStatus
from models_catalog.models import Model
from portal import crypto
from tenants.models import PlatformRole, PlatformRoleGrant, TenantRole
from tests.browser.test_deploy_wizard import shot
from tests.factories import (
    PASSWORD,
    TOTP_SECRET,
    MembershipFactory,
    TenantFactory,
    UserFactory,
)
from tests.support.browser import ForeignRequests, sign_in
from tests.support.processes import start_upstream, stop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def upstream():
    process, base = start_upstream("--models", "local-llm", "--api-key", "upstream-secret")
    yield base
    stop(process)


def test_register_an_endpoint_then_delete_a_cluster(page, live_server, upstream):
    admin = UserFactory(email="msp@example.test", totp=True)
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    tenant = TenantFactory(slug="acme", name="Acme Research")
    foreign = ForeignRequests(page, live_server.url)
    sign_in(page, admin.email, PASSWORD, totp_secret=TOTP_SECRET)

    page.goto("/msp/deployments/")
    page.get_by_role("link", name="Register an external endpoint").first.click()
    page.fill("#id_model_slug", "local-llm")
    page.select_option("#id_task", "chat")
    page.fill("#id_base_url", upstream)
    page.fill("#id_upstream_api_key", "wrong-key")
    page.select_option("#id_tenant", str(tenant.pk))
    shot(page, "external-endpoint-form")
    page.get_by_role("button", name="Register and check").click()
    expect(page).to_have_url(re.compile(r"/msp/deployments/\d+/$"))
    expect(page.get_by_text("the health check failed")).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_text("Failed")
    shot(page, "external-endpoint-failed")

    deployment = Deployment.objects.get()
    deployment.upstream_api_key_encrypted = crypto.encrypt("upstream-secret")
    deployment.save()
    page.get_by_test_id("check-now").click()
    expect(page.get_by_text("the health check passed")).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_text("Ready")
    shot(page, "external-endpoint-ready")

    cluster = services.cluster_create(actor=admin, name="old-gpu", jurisdiction="DE",
                                      api_url="https://k8s.old.example.test", credentials="t")
    Deployment.objects.create(model=Model.objects.get(slug="local-llm"), cluster=cluster,
                              backend=Backend.KSERVE, name="was-here", namespace="x",
                              resource_name="was-here", status=DeploymentStatus.DELETED)
    page.goto(f"/msp/clusters/{cluster.pk}/")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_test_id("confirm-delete")).to_be_visible()
    shot(page, "cluster-delete-confirm")
    page.get_by_test_id("confirm-delete").click()
    expect(page).to_have_url(re.compile(r"/msp/clusters/$"))
    expect(page.get_by_text("Cluster old-gpu deleted")).to_be_visible()
    assert foreign.foreign == []


def test_a_viewer_sees_the_tenant_deployments(page, live_server):
    tenant = TenantFactory(slug="acme", name="Acme Research")
    viewer = MembershipFactory(tenant=tenant, role=TenantRole.VIEWER,
                               user=UserFactory(email="viewer@acme.test")).user
    model = Model.objects.create(slug="local-llm", name="Local LLM", task="chat")
    Deployment.objects.create(model=model, tenant=tenant, backend=Backend.EXTERNAL,
                              name="dedicated", status=DeploymentStatus.READY,
                              base_url="http://10.0.0.5:8000/v1")
    shared = Model.objects.create(slug="shared-chat", name="Shared chat", task="chat")
    Deployment.objects.create(model=shared, backend=Backend.EXTERNAL, name="shared",
                              status=DeploymentStatus.READY, base_url="http://10.0.0.6/v1")
    sign_in(page, viewer.email, PASSWORD)
    page.goto("/t/acme/")
    page.locator("nav.sidebar").get_by_role("link", name="Deployments").click()
    expect(page).to_have_url(re.compile(r"/t/acme/deployments/$"))
    expect(page.get_by_text("Local LLM")).to_be_visible()
    expect(page.get_by_text("Shared chat")).to_be_visible()
    assert "10.0.0.5" not in page.content()
    shot(page, "tenant-deployments")
