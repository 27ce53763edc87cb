"""The key's quota page and the playground's quota partial show the figures of `GET /v1/quota`
(the same document, read from the same Redis counters)."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
from django.conf import settings

from billing.budgets import services as budgets
from billing.budgets.counters import counter_key
from billing.budgets.periods import period_of
from deployments.models import Backend, Deployment, DeploymentStatus
from gateway import ratelimit, selectors, services
from tests.factories import published_version

pytestmark = pytest.mark.django_db


def spend(key, *, requests: int, tenant_requests: int = 0, budget=None, units: int = 0):
    client = redis.Redis.from_url(settings.REDIS_URL)
    windows = ratelimit.window_keys(key.pk, key.tenant_id, time.time())
    client.set(windows[0], requests, ex=120)
    client.set(windows[2], tenant_requests, ex=120)
    if budget is not None:
        client.set(counter_key(budget.pk, period_of(budget, datetime.now(UTC))[0]), units)


def test_the_key_page_shows_what_the_key_has_left(client, tenant, developer):
    key, _token = services.apikey_create(actor=developer, tenant=tenant, name="app",
                                         owner=developer, rpm_limit=10)
    budget = budgets.budget_create(actor=developer, tenant=tenant, name="Tokens",
                                   unit="tokens", amount=Decimal(100), action="block")
    spend(key, requests=4, budget=budget, units=30)
    client.force_login(developer)
    page = client.get(f"/t/{tenant.slug}/keys/{key.pk}/quota/")
    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html
    assert "6 of 10" in html and "70 tokens" in html
    partial = client.get(f"/t/{tenant.slug}/keys/{key.pk}/quota/", HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "70 tokens" in partial.content.decode()
    document = selectors.apikey_quota(key=key)
    assert document["key"]["rate_limits"]["requests"]["remaining"] == 6
    assert document["budgets"][0]["remaining"] == 70
    # The list links each active key's figures.
    listing = client.get(f"/t/{tenant.slug}/keys/").content.decode()
    assert f"/t/{tenant.slug}/keys/{key.pk}/quota/" in listing


def test_another_tenants_key_is_a_404(client, tenant, tenant_admin, other_tenant):
    theirs, _token = services.apikey_create(actor="system:test", tenant=other_tenant,
                                            name="theirs")
    client.force_login(tenant_admin)
    assert client.get(f"/t/{tenant.slug}/keys/{theirs.pk}/quota/").status_code == 404
    assert client.get(f"/t/{other_tenant.slug}/keys/{theirs.pk}/quota/").status_code == 404


def test_the_playground_shows_its_keys_figures_and_creates_nothing(client, tenant, developer):
    version = published_version(version="1.0")
    Deployment.objects.create(model=version.model, tenant=tenant, backend=Backend.EXTERNAL,
                              name="chat", base_url="http://127.0.0.1:1/v1",
                              status=DeploymentStatus.READY)
    client.force_login(developer)
    url = f"/t/{tenant.slug}/playground/quota/"
    before = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "No playground key yet" in before and 'hx-trigger="quota-refresh from:body"' in before
    assert not services.ApiKey.objects.exists()
    services.playground_token(user=developer, tenant=tenant)
    tenant.rate_limit_rpm = 50
    tenant.save(update_fields=["rate_limit_rpm"])
    key = selectors.playground_key(user=developer, tenant=tenant)
    spend(key, requests=3, tenant_requests=7)
    after = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "This key (Playground)" in after and '<span class="muted">no limit</span>' in after
    assert "43 of 50" in after
    page = client.get(f"/t/{tenant.slug}/playground/").content.decode()
    assert f'hx-get="{url}"' in page
