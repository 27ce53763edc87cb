"""What a gateway worker loads at start-up and on each configuration reload — tenants, routes
with their upstreams, blocking budgets — costs the same few queries for one row or many, and a
key costs two; what is loaded is what the gateway needs."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.budgets import services as budgets
from billing.budgets.gateway import gateway_budget_rules
from deployments.models import Backend, Deployment, DeploymentStatus
from gateway import directory
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from portal import crypto
from tests.factories import TenantFactory

# The loaders close stale connections first, as a gateway thread must: no test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def _add(count: int, start: int) -> None:
    """`count` tenants, each with a model it is entitled to, a ready deployment of that model
    (every other one dedicated to the tenant) and a blocking budget."""
    for n in range(start, start + count):
        tenant = TenantFactory(slug=f"t{n}", name=f"Tenant {n}", rate_limit_rpm=60 + n)
        model = catalog_services.model_create(actor="system:test", slug=f"m{n}",
                                              name=f"Model {n}", task="chat")
        model.entitled_tenants.add(tenant)
        Deployment.objects.create(
            model=model, tenant=tenant if n % 2 else None, name=f"d{n}",
            backend=Backend.EXTERNAL, base_url=f"http://127.0.0.1:9/v{n}/",
            upstream_api_key_encrypted=crypto.encrypt(f"key-{n}"),
            status=DeploymentStatus.READY)
        budgets.budget_create(actor="system:test", tenant=tenant, name="Cap", unit="tokens",
                              amount=Decimal(1000), action="block")


def _counted(load):
    with CaptureQueriesContext(connection) as queries:
        result = load()
    return len(queries), result


def test_a_reload_costs_the_same_queries_for_one_row_or_many():
    _add(1, 0)
    one = _counted(directory._load_routes_and_tenants)[0], _counted(gateway_budget_rules)[0]
    _add(6, 1)
    many, (routes, tenants) = _counted(directory._load_routes_and_tenants)
    budget_queries, rules = _counted(gateway_budget_rules)

    assert one == (many, budget_queries) == (4, 1)
    assert len(routes) == len(tenants) == len(rules) == 7
    tenant = next(t for t in tenants.values() if t.slug == "t3")
    assert (tenant.active, tenant.rpm) == (True, 63)
    route = routes["m3"]
    assert route.entitled == {tenant.id} and route.task == "chat"
    [upstream] = route.upstreams
    assert (upstream.tenant_id, upstream.url, upstream.model_name, upstream.auth_header) == (
        tenant.id, "http://127.0.0.1:9/v3", "m3", "Bearer key-3")
    assert routes["m2"].upstreams[0].tenant_id is None  # shared
    assert [rule.limit for rule in rules[tenant.id]] == [1000]


def test_a_key_costs_two_queries(tenant, tenant_admin):
    model = catalog_services.model_create(actor="system:test", slug="chat", name="Chat",
                                          task="chat")
    key, _token = gateway_services.apikey_create(actor=tenant_admin, tenant=tenant, name="ci",
                                                 allowed_models=[model])

    queries, (info, tenant_info) = _counted(lambda: directory._load_key(key.prefix))

    assert queries == 2
    assert (info.id, info.tenant_id, info.model_ids) == (key.pk, tenant.pk, {model.pk})
    assert tenant_info.slug == tenant.slug
    assert _counted(lambda: directory._load_key("unknown0"))[0] == 1
