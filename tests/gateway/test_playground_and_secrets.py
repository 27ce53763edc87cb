"""Opening the playground changes nothing (its key is made by a POST from the page), and
every response that shows a secret says `Cache-Control: no-store`."""

import ipaddress
import re

import pytest
import redis
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.conf import settings
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from deployments.models import Backend, Deployment, DeploymentStatus
from gateway import services
from gateway.models import ApiKey
from portal.gateway_config import CONFIG_VERSION_KEY
from tenants.models import TenantStatus
from tests.factories import TOTP_SECRET, published_version
from tests.totp import totp_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat_model(tenant):
    version = published_version(version="1.0")
    Deployment.objects.create(model=version.model, tenant=tenant, backend=Backend.EXTERNAL,
                              name="chat", base_url="http://127.0.0.1:1/v1",
                              status=DeploymentStatus.READY)
    return version.model


def _config_version():
    return redis.Redis.from_url(settings.REDIS_URL).get(CONFIG_VERSION_KEY)


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_opening_the_playground_changes_nothing_and_holds_no_secret(
        client, developer, tenant, chat_model, django_capture_on_commit_callbacks):
    client.force_login(developer)
    events, version = AuditEvent.objects.count(), _config_version()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for _ in range(3):
            page = client.get(f"/t/{tenant.slug}/playground/")
            assert page.status_code == 200
    assert callbacks == []
    assert not ApiKey.objects.filter(tenant=tenant).exists()
    assert AuditEvent.objects.count() == events and _config_version() == version
    html = page.content.decode()
    assert 'id="pg-model"' in html and "data-token=" not in html
    assert f'data-token-url="/t/{tenant.slug}/playground/token/"' in html


def test_the_playground_token_is_made_by_a_same_site_post(
        developer, tenant, chat_model, django_capture_on_commit_callbacks):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(developer)
    url = f"/t/{tenant.slug}/playground/token/"
    assert browser.get(url).status_code == 405
    assert browser.post(url).status_code == 403  # a cross-site form has no CSRF token
    assert not ApiKey.objects.exists()

    page = browser.get(f"/t/{tenant.slug}/playground/").content.decode()
    csrf = re.search(r'data-csrf-token="([^"]+)"', page).group(1)
    with django_capture_on_commit_callbacks(execute=True):
        first = browser.post(url, HTTP_X_CSRFTOKEN=csrf)
    assert first.status_code == 200 and _no_store(first)
    key = ApiKey.objects.get(tenant=tenant, owner=developer,
                             name=services.PLAYGROUND_KEY_NAME)
    assert key.prefix in first.json()["token"]
    with django_capture_on_commit_callbacks(execute=True):
        second = browser.post(url, HTTP_X_CSRFTOKEN=csrf)
    assert second.json()["token"] != first.json()["token"]
    assert ApiKey.objects.filter(tenant=tenant).count() == 1
    assert set(AuditEvent.objects.filter(target_id=str(key.pk)).values_list(
        "action", flat=True)) == {"apikey.created", "apikey.rotated"}


def test_a_suspended_tenant_gets_no_playground_token(client, developer, tenant, chat_model):
    tenant.status = TenantStatus.SUSPENDED
    tenant.save(update_fields=["status"])
    client.force_login(developer)
    response = client.post(f"/t/{tenant.slug}/playground/token/")
    assert response.status_code == 409 and "suspended" in response.json()["detail"]
    assert not ApiKey.objects.exists()


def test_new_and_rotated_api_keys_are_not_cached(client, developer, tenant):
    client.force_login(developer)
    created = client.post(f"/t/{tenant.slug}/keys/new/", {"name": "ci"})
    key = ApiKey.objects.get(name="ci")
    assert key.prefix in created.content.decode() and _no_store(created)
    partial = client.post(f"/t/{tenant.slug}/keys/new/", {"name": "ci-2"}, HTTP_HX_REQUEST="true")
    assert "only once" in partial.content.decode() and _no_store(partial)
    rotated = client.post(f"/t/{tenant.slug}/keys/{key.pk}/rotate/", {"grace_hours": "1"})
    assert "New secret" in rotated.content.decode() and _no_store(rotated)

    api = client.post(f"/api/tenants/{tenant.slug}/keys/", {"name": "api"},
                      content_type="application/json")
    assert api.status_code == 201 and api.json()["key"].startswith("smp_") and _no_store(api)
    api_rotated = client.post(f"/api/tenants/{tenant.slug}/keys/{key.pk}/rotate/",
                              {"grace_seconds": 0}, content_type="application/json")
    assert api_rotated.json()["key"].startswith("smp_") and _no_store(api_rotated)


def test_a_new_webhook_secret_is_not_cached(client, tenant_admin, tenant, settings):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    client.force_login(tenant_admin)
    response = client.post(f"/t/{tenant.slug}/webhooks/new/",
                           {"name": "Ops", "url": "http://127.0.0.1:9/hook"})
    assert "whsec_" in response.content.decode() and _no_store(response)


def test_authenticator_secrets_and_recovery_codes_are_not_cached(client, msp_admin, db):
    codes = RecoveryCodes.activate(msp_admin)
    client.force_login(msp_admin)
    client.post(reverse("mfa_reauthenticate"), {"code": totp_code(TOTP_SECRET)})
    shown = client.get(reverse("mfa_view_recovery_codes"))
    assert codes.get_unused_codes()[0] in shown.content.decode() and _no_store(shown)
    download = client.get(reverse("mfa_download_recovery_codes"))
    assert download.status_code == 200 and _no_store(download)
    regenerated = client.post(reverse("mfa_generate_recovery_codes"), follow=True)
    assert regenerated.status_code == 200 and _no_store(regenerated)


def test_the_authenticator_setup_page_is_not_cached(client, developer):
    from tests.factories import PASSWORD

    client.force_login(developer)
    client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    page = client.get(reverse("mfa_activate_totp"))
    assert page.context["form"].secret in page.content.decode() and _no_store(page)
