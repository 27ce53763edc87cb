"""A GET changes nothing — checked for every URL of the URL conf, as every kind of person.

For each route the test builds a concrete address (with objects that exist where it can),
GETs it, and checks that no table changed (every row of every table but the sessions'),
that nothing was scheduled to run after a commit (gateway reloads, background tasks) and
that the gateway's configuration version stayed put. Every answer also says
`Cache-Control: no-store`. A new view that writes on GET fails here without anybody having
to remember to add a test for it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from billing.budgets import services as budgets
from billing.models import WebhookEndpoint
from deployments import services as deployment_services
from deployments.models import Backend, Deployment, DeploymentMode, DeploymentStatus, Runtime
from gateway import services as gateway_services
from portal import crypto
from portal.gateway_config import CONFIG_VERSION_KEY
from tenants import services as tenant_services
from tenants.models import TenantRole
from tests.factories import published_version

pytestmark = pytest.mark.django_db

# The OpenID Connect callback is a GET by protocol: it is the sign-in itself.
SIGN_IN_BY_PROTOCOL = {"openid_connect_callback"}
IGNORED_TABLES = {"django_session"}


def _routes(patterns, prefix: str = "", namespace: str = "", outer: tuple = ()):
    """(route text, URL name with namespaces, parameter names) of every named URL."""
    for pattern in patterns:
        params = (*outer, *pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern), inner,
                               params)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield prefix + str(pattern.pattern), namespace + pattern.name, params


def _value(route: str, param: str, world: dict) -> str:
    """A value for `param` that names an existing object where the route's wording says
    which kind (the path segment before the parameter)."""
    where = re.search(rf"(?:<(?:\w+:)?{param}>|\(\?P<{param}>)", route)
    preceding = re.findall(r"([A-Za-z_-]+)/$", route[: where.start()])
    segment = preceding[-1] if preceding else ""
    if param in {"tenant_slug"} or (param == "slug" and segment == "tenants"):
        return world["tenant"].slug
    if param in {"slug", "model_slug"}:
        return world["model"].slug
    by_segment = {"members": "membership", "invitations": "invitation", "keys": "key",
                  "budgets": "budget", "webhooks": "webhook", "clusters": "cluster",
                  "deployments": "deployment", "reports": "report"}
    if param == "pk" and segment == "uploads":
        return str(uuid.uuid4())
    if param == "pk":
        if route.endswith("endpoint/"):
            return str(world["external"].pk)
        return str(world[by_segment[segment]].pk) if segment in by_segment else "1"
    fixed = {"version": world["version"].version, "seq": str(world["seq"]),
             "month": "2026-01", "fmt": "csv", "token": world["invitation_token"],
             "session_id": str(uuid.uuid4()), "provider_id": "kc"}
    return fixed.get(param, "x")


def _addresses(world: dict) -> list[str]:
    seen, addresses = set(), []
    for route, name, params in _routes(get_resolver().url_patterns):
        if name.split(":")[-1] in SIGN_IN_BY_PROTOCOL:
            continue
        kwargs = {param: _value(route, param, world) for param in params}
        address = reverse(name, kwargs=kwargs)
        if address not in seen:
            seen.add(address)
            addresses.append(address)
    return addresses


def _tables_digest() -> dict[str, str]:
    digests = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table in IGNORED_TABLES:
                continue
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 (names from the db)
            rows = sorted(row[0] for row in cursor.fetchall())
            digests[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return digests


def _config_version() -> bytes | None:
    return redis.Redis.from_url(settings.REDIS_URL).get(CONFIG_VERSION_KEY)


@pytest.fixture
def world(tenant, other_tenant, msp_admin, compliance_officer, tenant_admin, developer, viewer,
          settings):
    settings.REGISTRY_URL = "https://registry.example.test"
    version = published_version(version="1.0")
    version.model.available_to_all_tenants = True
    version.model.save(update_fields=["available_to_all_tenants"])
    cluster = deployment_services.cluster_create(
        actor=msp_admin, name="fra-gpu-1", api_url="https://127.0.0.1:1", jurisdiction="DE",
        credentials="cluster-token")
    deployment = Deployment.objects.create(
        model=version.model, version=version, tenant=tenant, cluster=cluster,
        backend=Backend.KSERVE, name="ours", namespace="tenant-acme", resource_name="ours",
        status=DeploymentStatus.READY, min_replicas=1, max_replicas=1,
        mode=DeploymentMode.STANDARD, runtime=Runtime.VLLM, cpu="4", memory="16Gi")
    external = Deployment.objects.create(
        model=version.model, backend=Backend.EXTERNAL, name="shared",
        base_url="http://127.0.0.1:1/v1", status=DeploymentStatus.READY)
    key, _token = gateway_services.apikey_create(actor=developer, tenant=tenant, name="ci",
                                                owner=developer)
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Monthly",
                                   amount=Decimal(10), currency="EUR")
    webhook = WebhookEndpoint.objects.create(
        tenant=tenant, name="Ops", url="https://hooks.example.test/portal",
        secret_encrypted=crypto.encrypt("whsec_test"), created_by="test")
    invitation, token = tenant_services.invitation_create(
        actor=tenant_admin, tenant=tenant, email="invitee@acme.test", role=TenantRole.VIEWER)
    from audit.models import AuditEvent

    return {
        "tenant": tenant, "model": version.model, "version": version, "cluster": cluster,
        "deployment": deployment, "external": external, "key": key, "budget": budget,
        "webhook": webhook, "invitation": invitation, "invitation_token": token,
        "membership": developer.memberships.get(tenant=tenant),
        "report": cluster,  # no report exists: any id gives the 404 path
        "seq": AuditEvent.objects.filter(tenant_slug=tenant.slug).latest("seq").seq,
        "people": {"msp_admin": msp_admin, "compliance_officer": compliance_officer,
                   "tenant_admin": tenant_admin, "developer": developer, "viewer": viewer},
    }


@pytest.mark.parametrize("role", ["anonymous", "msp_admin", "compliance_officer",
                                  "tenant_admin", "developer"])
def test_no_get_changes_anything(client, world, role, django_capture_on_commit_callbacks):
    if role != "anonymous":
        client.force_login(world["people"][role])
    addresses = _addresses(world)
    assert len(addresses) > 150  # the walk really covers the URL conf
    before, version_before = _tables_digest(), _config_version()
    scheduled, unguarded = {}, []
    for address in addresses:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.get(address)
        if callbacks:
            scheduled[address] = callbacks
        if "no-store" not in response.get("Cache-Control", ""):
            unguarded.append((address, response.status_code))
    assert scheduled == {}
    assert _config_version() == version_before
    changed = {t for t, digest in _tables_digest().items() if before.get(t) != digest}
    if changed:
        culprits = _find_writers(client, addresses, django_capture_on_commit_callbacks)
        pytest.fail(f"GET changed tables {sorted(changed)}: {culprits}")
    assert unguarded == []


def _find_writers(client, addresses, capture) -> list[str]:
    culprits = []
    for address in addresses:
        before = _tables_digest()
        with capture(execute=False):
            client.get(address)
        if _tables_digest() != before:
            culprits.append(address)
    return culprits
