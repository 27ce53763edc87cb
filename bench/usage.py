"""Usage benchmark: the dashboards and the rollups over millions of usage records.

Not part of the test suite.

    .venv/bin/python bench/usage.py [--records 10000000] [--new 1000000]

Creates a fresh PostgreSQL database (BENCH_DATABASE_URL, default portal_bench_usage on
127.0.0.1), loads N usage records over the last 30 days for 500 tenants and 50 models with
COPY (each tenant uses a handful of models and five keys, as real tenants do), builds the
rollups, then measures:

  * the tenant dashboard's data (rollup queries for one tenant, 30 days, daily) — target
    < 300 ms — and the whole dashboard page and usage API over HTTP (Django test client);
  * the MSP overview across all tenants — target < 1 s;
  * rolling up 1 million new records the way the gateway's drain does (batches of 2,000
    through `rollups_add`) — target < 60 s.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL",
                              "postgres://postgres:postgres@127.0.0.1:5432/portal_bench_usage")
ENV = {**os.environ, "DATABASE_URL": DATABASE_URL, "DEBUG": "false", "REDIS_URL": "",
       "SECRET_KEY": "bench-only-secret-key-0123456789abcdef", "PORTAL_IGNORE_DOTENV": "1",
       "STATIC_MANIFEST": "false", "ALLOWED_HOSTS": "testserver", "LOG_LEVEL": "WARNING",
       "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleSE=",
       "PLATFORM_SIGNING_KEY_FILE": str(ROOT / "var/bench-platform-signing-key.pem")}
TENANTS, MODELS, KEYS_PER_TENANT, DAYS = 500, 50, 5, 30
COLUMNS = ("tenant_id", "request_id", "created_at", "api_key_id", "model_id", "model_slug",
           "deployment_id", "endpoint", "status_code", "streamed", "input_tokens",
           "output_tokens", "estimated", "latency_ms", "ttft_ms", "input_price_per_million",
           "output_price_per_million", "currency", "cost")


def prepare_database(*, fresh: bool) -> None:
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    if fresh:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                   env=ENV, check=True)


def setup_django() -> None:
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if not Path(ENV["PLATFORM_SIGNING_KEY_FILE"]).exists():
        from portal.signing import write_new_key

        write_new_key(ENV["PLATFORM_SIGNING_KEY_FILE"])
    import django

    django.setup()


def catalog() -> tuple[list, list]:
    from models_catalog.models import Model, ModelPrice
    from tenants.models import Tenant

    now = datetime.now(UTC)
    tenants = Tenant.objects.bulk_create([
        Tenant(slug=f"tenant-{i:03d}", name=f"Tenant {i:03d}",
               contact_email=f"ops@tenant-{i:03d}.test", jurisdiction="DE")
        for i in range(TENANTS)])
    models = Model.objects.bulk_create([
        Model(slug=f"model-{i:02d}", name=f"Model {i:02d}", task="chat") for i in range(MODELS)])
    ModelPrice.objects.bulk_create([
        ModelPrice(model=m, input_per_million=Decimal("0.5") + i % 5,
                   output_per_million=Decimal("1.5") + i % 7, currency="EUR",
                   effective_from=now - timedelta(days=DAYS + 1))
        for i, m in enumerate(models)])
    return tenants, models


def rows(count: int, tenants, models, *, start: datetime, span: timedelta, prefix: str):
    """Usage records as COPY text lines. Each tenant uses 3–6 models and five keys; each key
    sticks to one or two of them."""
    rng = random.Random(42 if prefix == "r" else 7)
    plans = []
    for tenant in tenants:
        used = rng.sample(models, rng.randint(3, 6))
        keys = [(tenant.pk * 10 + k, rng.sample(used, rng.randint(1, 2)))
                for k in range(KEYS_PER_TENANT)]
        plans.append((tenant, keys))
    seconds = span.total_seconds()
    for n in range(count):
        tenant, keys = plans[rng.randrange(TENANTS)]
        key, key_models = keys[rng.randrange(KEYS_PER_TENANT)]
        model = key_models[rng.randrange(len(key_models))]
        when = start + timedelta(seconds=rng.random() * seconds)
        tokens_in, tokens_out = rng.randint(20, 4000), rng.randint(1, 800)
        price_in = Decimal("0.5") + model.pk % 5
        price_out = Decimal("1.5") + model.pk % 7
        cost = (tokens_in * price_in + tokens_out * price_out) / 1_000_000
        status = 200 if rng.random() > 0.01 else 502
        latency = int(rng.lognormvariate(6, 0.8))
        yield (f"{tenant.pk}\t{prefix}{n:010d}\t{when.isoformat()}\t{key}\t{model.pk}\t"
               f"{model.slug}\t{model.pk % 7 + 1}\tchat/completions\t{status}\tf\t{tokens_in}\t"
               f"{tokens_out}\tf\t{latency}\t{latency // 3}\t{price_in}\t{price_out}\tEUR\t"
               f"{cost}\n")


def copy(lines) -> int:
    from django.db import connection

    count = 0
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY billing_usagerecord ({', '.join(COLUMNS)}) FROM STDIN") as cp:
            buffer = io.StringIO()
            for line in lines:
                buffer.write(line)
                count += 1
                if count % 50_000 == 0:
                    cp.write(buffer.getvalue())
                    buffer = io.StringIO()
            cp.write(buffer.getvalue())
    return count


def timed(function, repeat: int = 7) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the records and rollups of the last run; only measure")
    args = parser.parse_args()
    print(f"database: {DATABASE_URL}")
    prepare_database(fresh=not args.reuse)
    setup_django()
    from django.db import connection, transaction
    from django.test import Client

    from billing.usage.models import UsageRecord, UsageRollup
    from billing.usage.rollups import rollups_add, rollups_rebuild
    from billing.usage.selectors import UsageScope, usage_dashboard
    from models_catalog.models import Model
    from tenants.models import Membership, Tenant, TenantRole, User

    now = datetime.now(UTC).replace(microsecond=0)
    if args.reuse:
        tenants, models = list(Tenant.objects.order_by("pk")), list(Model.objects.order_by("pk"))
        UsageRecord.objects.filter(request_id__startswith="n").delete()
        User.objects.filter(email="admin@bench.test").delete()
        rollups_rebuild(since=now - timedelta(hours=2), until=now + timedelta(days=1))
        print(f"reusing {UsageRecord.objects.count():,} usage records")
    else:
        tenants, models = catalog()
        started = time.perf_counter()
        with transaction.atomic():
            loaded = copy(rows(args.records, tenants, models, start=now - timedelta(days=DAYS),
                               span=timedelta(days=DAYS) - timedelta(hours=1), prefix="r"))
        print(f"load:      {loaded:,} usage records with COPY in "
              f"{time.perf_counter() - started:.1f} s")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE billing_usagerecord")
        started = time.perf_counter()
        rollups_rebuild(since=now - timedelta(days=DAYS + 1), until=now)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE billing_usagerollup")
        print(f"rollups:   built in {time.perf_counter() - started:.1f} s: "
              f"{UsageRollup.objects.filter(granularity='hour').count():,} hourly and "
              f"{UsageRollup.objects.filter(granularity='day').count():,} daily rows")

    tenant = tenants[17]
    month = UsageScope(since=now - timedelta(days=DAYS), until=now + timedelta(days=1),
                       granularity="day", tenant_id=tenant.pk)
    print(f"tenant dashboard data (30 days, daily):   {timed(lambda: usage_dashboard(month))}"
          "  target < 300 ms")
    hourly = UsageScope(since=now - timedelta(days=7), until=now + timedelta(hours=1),
                        granularity="hour", tenant_id=tenant.pk)
    print(f"tenant dashboard data (7 days, hourly):   {timed(lambda: usage_dashboard(hourly))}")
    platform = UsageScope(since=now - timedelta(days=DAYS), until=now + timedelta(days=1),
                          granularity="day")
    print("MSP overview data (30 days, daily):       "
          f"{timed(lambda: usage_dashboard(platform, platform=True), repeat=5)}  target < 1 s")

    admin = User.objects.create_user(email="admin@bench.test", password="x" * 20)
    Membership.objects.create(user=admin, tenant=tenant, role=TenantRole.TENANT_ADMIN)
    client = Client()
    client.force_login(admin)
    page = f"/t/{tenant.slug}/usage/?range=30&granularity=day"
    api = (f"/api/tenants/{tenant.slug}/usage/?since={(now - timedelta(days=30)).isoformat()}"
           f"&until={now.isoformat()}&granularity=day&group_by=model").replace("+", "%2B")
    assert client.get(page).status_code == 200 and client.get(api).status_code == 200
    print(f"tenant dashboard page over HTTP:          {timed(lambda: client.get(page))}")
    print(f"tenant usage API (by model) over HTTP:    {timed(lambda: client.get(api))}")

    with transaction.atomic():
        copy(rows(args.new, tenants, models, start=now, span=timedelta(minutes=50),
                  prefix="n"))
    ids = list(UsageRecord.objects.filter(request_id__startswith="n").order_by("pk")
               .values_list("pk", flat=True))
    elapsed = 0.0
    for start in range(0, len(ids), 2000):  # the drain's batch size
        batch = [UsageRecord(pk=pk) for pk in ids[start:start + 2000]]
        started = time.perf_counter()
        with transaction.atomic():
            rollups_add(records=batch)
        elapsed += time.perf_counter() - started
    print(f"rollup of {len(ids):,} new records in drain-sized batches (2,000): {elapsed:.1f} s "
          f"({len(ids) / elapsed:,.0f} records/s)  target: 1,000,000 in < 60 s")

if __name__ == "__main__":
    main()
