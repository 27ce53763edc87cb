"""Usage rollups, the dashboards and the usage API: numbers equal the records, updates are
incremental and exact under redelivery and concurrency, and each person sees their slice."""

import csv
import io
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from billing.models import UsageRecord
from billing.usage.models import Granularity, UsageRollup
from billing.usage.rollups import rollups_rebuild
from billing.usage.services import usage_records_ingest
from gateway import services as gateway_services
from models_catalog import services as catalog_services

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)  # for query ranges, which span days around it


def event(tenant, model, n, *, key=None, status=200, latency=120, at=None, **extra):
    """A gateway usage event served now (after the test's price took effect) or `at`."""
    at = at or datetime.now(UTC)
    return {"request_id": f"req_{tenant.slug}_{n:05d}", "ts": at.timestamp(),
            "tenant_id": tenant.pk, "key_id": key.pk if key else None, "model_id": model.pk,
            "model": model.slug, "deployment_id": None, "endpoint": "chat/completions",
            "status": status, "streamed": False, "input_tokens": 100, "output_tokens": 20,
            "estimated": False, "latency_ms": latency, "ttft_ms": latency, **extra}


@pytest.fixture
def model(db):
    model = catalog_services.model_create(actor="system:test", slug="chat-small",
                                          name="Chat Small", task="chat")
    catalog_services.price_set(actor="system:test", model=model,
                               input_per_million=Decimal("2"), output_per_million=Decimal("10"))
    return model


@pytest.fixture
def keys(tenant, tenant_admin, developer):
    mine, _ = gateway_services.apikey_create(actor=developer, tenant=tenant, name="dev-key",
                                             owner=developer)
    theirs, _ = gateway_services.apikey_create(actor=tenant_admin, tenant=tenant,
                                               name="admin-key", owner=tenant_admin)
    return mine, theirs


def day_rollups(**filters):
    return UsageRollup.objects.filter(granularity=Granularity.DAY, **filters)


def totals(qs):
    return {f: sum(getattr(r, f) for r in qs)
            for f in ("requests", "errors", "input_tokens", "output_tokens", "cost")}


def test_rollups_follow_ingest_once_per_record(tenant, model, keys):
    mine, theirs = keys
    events = ([event(tenant, model, n, key=mine) for n in range(3)]
              + [event(tenant, model, 10 + n, key=theirs, status=502, latency=3000)
                 for n in range(2)])
    assert usage_records_ingest(events=events) == 5
    assert usage_records_ingest(events=events) == 0  # redelivered: nothing new, nothing added
    for granularity in Granularity.values:
        rows = UsageRollup.objects.filter(granularity=granularity)
        assert totals(rows) == {"requests": 5, "errors": 2, "input_tokens": 500,
                                "output_tokens": 100,
                                "cost": sum(r.cost for r in UsageRecord.objects.all())}
    by_key = {r.api_key_id: r for r in day_rollups()}
    assert by_key[mine.pk].requests == 3 and by_key[mine.pk].lat_2 == 3  # 100–200 ms bucket
    assert by_key[theirs.pk].errors == 2 and by_key[theirs.pk].lat_6 == 2  # 1.6–3.2 s
    # Charged at the price in force: (100 × 2 + 20 × 10) / 1e6 per request.
    assert by_key[mine.pk].cost == 3 * Decimal("0.0004")


def test_a_later_price_does_not_rewrite_rollups(tenant, model):
    usage_records_ingest(events=[event(tenant, model, 1)])
    catalog_services.price_set(actor="system:test", model=model, input_per_million=Decimal("50"),
                               output_per_million=Decimal("50"),
                               effective_from=datetime.now(UTC) + timedelta(seconds=1))
    time.sleep(1.1)
    usage_records_ingest(events=[event(tenant, model, 2, at=datetime.now(UTC))])
    costs = sorted(r.cost for r in UsageRecord.objects.all())
    assert costs == [Decimal("0.0004"), Decimal("0.006")]
    assert totals(day_rollups())["cost"] == sum(costs)


@pytest.mark.django_db(transaction=True)
def test_concurrent_drainers_add_up_exactly(tenant, model):
    batches = [[event(tenant, model, t * 100 + n) for n in range(25)] for t in range(6)]
    errors = []

    def drain(batch):
        try:
            usage_records_ingest(events=batch)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert totals(day_rollups())["requests"] == UsageRecord.objects.count() == 150


def test_rebuild_equals_the_incremental_result(tenant, model, keys):
    usage_records_ingest(events=[event(tenant, model, n, key=keys[n % 2], latency=40 * n)
                                 for n in range(12)])
    before = sorted(UsageRollup.objects.values_list(
        "granularity", "bucket", "api_key_id", "requests", "input_tokens", "cost", "lat_0",
        "lat_3"))
    UsageRollup.objects.update(requests=999)  # drifted
    out = io.StringIO()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    call_command("usage_rollups_rebuild", "--since", day, "--until", day, stdout=out)
    assert "from 12 usage records" in out.getvalue()
    after = sorted(UsageRollup.objects.values_list(
        "granularity", "bucket", "api_key_id", "requests", "input_tokens", "cost", "lat_0",
        "lat_3"))
    assert after == before
    assert rollups_rebuild(since=NOW - timedelta(days=3), until=NOW - timedelta(days=2)) == 0


def test_tenant_dashboard_numbers_and_csv(client, tenant, model, keys, tenant_admin):
    usage_records_ingest(events=[event(tenant, model, n, key=keys[n % 2]) for n in range(4)])
    client.force_login(tenant_admin)
    page = client.get(f"/t/{tenant.slug}/usage/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-figure="requests">4<' in html and "dev-key" in html and "admin-key" in html
    assert "vendor/plotly/plotly.min.js" in html and "usage-data" in html
    download = client.get(f"/t/{tenant.slug}/usage/", {"range": "7", "csv": "models"})
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert rows == [{"model": "chat-small", "currency": "EUR", "cost": "0.00160000",
                     "requests": "4", "errors": "0", "input_tokens": "400",
                     "output_tokens": "80", "latency_p50_ms": "200", "latency_p95_ms": "200",
                     "cached_input_tokens": "0", "reasoning_tokens": "0"}]


def test_a_developer_sees_only_their_own_keys(client, tenant, model, keys, developer, viewer):
    mine, theirs = keys
    usage_records_ingest(events=[event(tenant, model, 1, key=mine),
                                 event(tenant, model, 2, key=theirs),
                                 event(tenant, model, 3, key=theirs)])
    client.force_login(developer)
    html = client.get(f"/t/{tenant.slug}/usage/").content.decode()
    assert 'data-figure="requests">1<' in html and "admin-key" not in html
    api = client.get(f"/api/tenants/{tenant.slug}/usage/", {
        "since": (NOW - timedelta(days=1)).isoformat(),
        "until": (NOW + timedelta(days=1)).isoformat(), "group_by": "key"}).json()
    assert [(r["api_key_id"], r["requests"]) for r in api] == [(mine.pk, 1)]
    client.force_login(viewer)  # read-only oversight of the whole tenant
    assert 'data-figure="requests">3<' in client.get(f"/t/{tenant.slug}/usage/").content.decode()


def test_other_tenants_and_tenant_people_are_kept_out(client, tenant, other_tenant, model,
                                                       outsider, tenant_admin):
    usage_records_ingest(events=[event(tenant, model, 1)])
    client.force_login(outsider)
    assert client.get(f"/t/{tenant.slug}/usage/").status_code == 404
    assert client.get(f"/api/tenants/{tenant.slug}/usage/", {
        "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}).status_code == 404
    own = client.get(f"/t/{other_tenant.slug}/usage/").content.decode()
    assert "No usage in this range" in own
    client.force_login(tenant_admin)
    assert client.get("/msp/usage/").status_code == 403
    assert client.get("/api/usage/", {"since": "2026-01-01T00:00:00Z",
                                      "until": "2026-01-02T00:00:00Z"}).status_code == 403


def test_bad_ranges_are_explained(client, tenant, tenant_admin):
    client.force_login(tenant_admin)
    page = client.get(f"/t/{tenant.slug}/usage/", {"range": "custom", "since": "2026-03-10",
                                                   "until": "2026-03-01"})
    assert page.status_code == 422
    assert "The last day can&#x27;t be before the first." in page.content.decode()
    page = client.get(f"/t/{tenant.slug}/usage/", {"range": "90", "granularity": "hour"})
    assert page.status_code == 422
    assert "Hourly figures cover at most 31 days" in page.content.decode()
    api = client.get(f"/api/tenants/{tenant.slug}/usage/", {
        "since": "2026-03-10T00:00:00Z", "until": "2026-03-11T00:00:00Z", "group_by": "colour"})
    assert api.status_code == 400
    assert "group_by" in api.json()["errors"]
    backwards = client.get(f"/api/tenants/{tenant.slug}/usage/", {
        "since": "2026-03-10T00:00:00Z", "until": "2026-03-01T00:00:00Z"})
    assert backwards.status_code == 400 and "until" in backwards.json()["errors"]


def test_msp_overview_ranks_tenants(client, tenant, other_tenant, model, msp_admin):
    usage_records_ingest(events=[event(tenant, model, n) for n in range(3)]
                         + [event(other_tenant, model, n) for n in range(5)])
    client.force_login(msp_admin)
    html = client.get("/msp/usage/").content.decode()
    assert 'data-figure="requests">8<' in html
    assert html.index("Globex Health") < html.index("Acme Research")  # by cost
    api = client.get("/api/usage/", {"since": (NOW - timedelta(days=1)).isoformat(),
                                     "until": (NOW + timedelta(days=1)).isoformat(),
                                     "group_by": "tenant,model"}).json()
    assert {(r["tenant_id"], r["requests"]) for r in api} == {(tenant.pk, 3), (other_tenant.pk, 5)}


def test_the_portable_path_sums_like_postgresql(tenant, model, keys):
    """`make run` uses SQLite, where rollups are summed in Python and upserted row by row:
    the same rows as PostgreSQL's server-side sums."""
    from billing.usage.rollups import _aggregate, _upsert

    usage_records_ingest(events=[event(tenant, model, n, key=keys[n % 2], latency=90 * n,
                                       status=500 if n == 3 else 200) for n in range(9)])
    fields = ["granularity", "bucket", "api_key_id", "model_slug", "requests", "errors",
              "input_tokens", "output_tokens", "cost", "latency_ms_sum",
              *[f"lat_{i}" for i in range(12)]]
    server_side = sorted(UsageRollup.objects.values_list(*fields))
    UsageRollup.objects.all().delete()
    records = list(UsageRecord.objects.all())
    _upsert(_aggregate(records[:4]))
    _upsert(_aggregate(records[4:]))  # the second batch adds to the first one's rows
    assert sorted(UsageRollup.objects.values_list(*fields)) == server_side


def test_one_pass_grouping_sets_equal_one_query_per_grouping(tenant, other_tenant, model, keys):
    """The dashboards read every grouping in one GROUPING SETS pass on PostgreSQL, and with
    one ORM query each on SQLite (`make run`): both give the same sections."""
    from billing.usage.selectors import (
        _SECTIONS,
        UsageScope,
        _sections_in_postgresql,
        _sections_with_the_orm,
    )

    usage_records_ingest(events=[event(tenant, model, n, key=keys[n % 2], status=500 + n % 2,
                                       latency=70 * n) for n in range(7)]
                         + [event(other_tenant, model, n) for n in range(3)])
    scope = UsageScope(since=NOW - timedelta(days=2), until=NOW + timedelta(days=1),
                       granularity="hour")

    def normalized(found):
        return {name: sorted(sorted(row.items()) for row in rows) for name, rows in found.items()}

    assert (normalized(_sections_in_postgresql(scope, _SECTIONS))
            == normalized(_sections_with_the_orm(scope, _SECTIONS)))
    scope.tenant_id, scope.api_key_ids = tenant.pk, [keys[0].pk]
    assert (normalized(_sections_in_postgresql(scope, _SECTIONS))
            == normalized(_sections_with_the_orm(scope, _SECTIONS)))


def test_msp_overview_shows_gpu_allocation(client, msp_admin, settings):
    from deployments import services as deployment_services
    from deployments.models import DeploymentStatus
    from tests.factories import published_version

    settings.REGISTRY_URL, settings.ALLOWED_JURISDICTIONS = "https://registry.test", ["DE"]
    cluster = deployment_services.cluster_create(
        actor=msp_admin, name="fra-gpu-1", api_url="https://k8s.example.test",
        jurisdiction="DE", credentials="token", gpu_capacity={"NVIDIA-L4": 8})
    deployment = deployment_services.kserve_deployment_build(
        version=published_version(), cluster=cluster, tenant=None,
        runtime="kserve-vllmserver", cpu="4", memory="16Gi", gpu_product="NVIDIA-L4",
        gpu_count=2, max_replicas=2)
    deployment.status = DeploymentStatus.READY
    deployment.save()
    client.force_login(msp_admin)
    html = client.get("/msp/usage/").content.decode()
    assert "GPU allocation" in html and "fra-gpu-1" in html
    assert "<td>NVIDIA-L4</td><td class=\"num\">4</td>" in html  # 2 GPUs × 2 replicas
