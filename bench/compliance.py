"""Benchmark of the compliance machinery (not part of the test suite).

    .venv/bin/python bench/compliance.py [--events 1000000] [--usage-records 5000000]
                                         [--tracemalloc]

Creates a fresh PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres:postgres@127.0.0.1:5432/portal_bench) and loads one month with COPY:
N hash-chained audit events (a signed checkpoint every 10,000), and M usage records for 50
tenants, drained in batches of 2,000 as the gateway's drain stores them, each batch sealed by
a `usage.batch_sealed` event of the chain holding the SHA-256 of its records. Then, each in
its own process so peak memory is measured per phase:

  1. a monthly platform compliance report (PDF + signed evidence bundle), end to end, with
     the time of each section (with --tracemalloc, once more under tracemalloc for the peak
     of the Python heap: several times slower);
  2. audit_verify's check of the whole chain against every checkpoint;
  3. the offline bundle verifier on the report's bundle.

It prints wall time, throughput and peak memory of each phase. Targets (issue 8): report
< 60 s and < 500 MB; audit_verify >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DEFAULT_DB = "postgres://postgres:postgres@127.0.0.1:5432/portal_bench"
MONTH = "2026-10"
COST = Decimal("0.00000001")  # UsageRecord.cost's precision: stored as generated, hashed alike
ACTIONS = ["tenant.updated", "membership.created", "auth.login_succeeded", "auth.login_failed",
           "budget.blocked", "invitation.created", "model.rejected"]
TENANTS = 50
BATCH = 2_000  # usage records per drained (and sealed) batch
USAGE_COLUMNS = ("tenant_id", "request_id", "created_at", "api_key_id", "model_id", "model_slug",
                 "deployment_id", "endpoint", "status_code", "streamed", "input_tokens",
                 "output_tokens", "cached_input_tokens", "reasoning_tokens", "estimated",
                 "latency_ms", "ttft_ms", "input_price_per_million", "output_price_per_million",
                 "cached_input_price_per_million", "currency", "cost", "sealed_by")


def _environment() -> dict[str, str]:
    VAR.mkdir(parents=True, exist_ok=True)
    key = VAR / "platform-signing-key.pem"
    model_key = VAR / "platform-model-signing-key.pem"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    env.update({
        "PORTAL_IGNORE_DOTENV": "1", "DEBUG": "false", "SECRET_KEY": "bench-" + "x" * 40,
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        "PLATFORM_SIGNING_KEY_FILE": str(key),
        "PLATFORM_MODEL_SIGNING_KEY_FILE": str(model_key),
        "COMPLIANCE_REPORTS_DIR": str(VAR / "reports"),
        "PORTAL_VAR_DIR": str(VAR), "DJANGO_SETTINGS_MODULE": "portal.settings",
        "LOG_LEVEL": "WARNING",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleSE=",
    })
    if not key.exists():
        sys.path.insert(0, str(ROOT))
        from portal.signing import write_new_key

        write_new_key(key)
    if not model_key.exists():
        sys.path.insert(0, str(ROOT))
        from models_catalog.oms import write_new_key as write_new_model_key

        write_new_model_key(model_key)
    return env


def _phase(name: str, env: dict[str, str], *args: str) -> dict:
    """Run one phase in a fresh process; it prints one JSON line of figures."""
    out = subprocess.run([sys.executable, __file__, "--phase", name, *args], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"phase {name} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _usage_batch(rng, first: int, count: int, since: datetime, until: datetime,
                 tenant_ids: list[int]) -> list[SimpleNamespace]:
    """`count` usage records served between `since` and `until`, as the drain stores them."""
    span = (until - since) / count
    records = []
    for n in range(first, first + count):
        tenant = tenant_ids[n % len(tenant_ids)]
        model = n % 7
        price_in, price_out = Decimal("0.5") + model % 5, Decimal("1.5") + model
        price_cached = price_in / 10
        tokens_in, tokens_out = rng.randint(20, 4000), rng.randint(1, 800)
        # A third of the requests reuse a cached prompt prefix; two models reason.
        cached = tokens_in // 2 if n % 3 == 0 else 0
        reasoning = tokens_out // 3 if model in (5, 6) else 0
        latency = rng.randint(40, 4000)
        records.append(SimpleNamespace(
            tenant_id=tenant, request_id=f"req-{n:010d}",
            created_at=since + span * (n - first), api_key_id=tenant * 10 + n % 5,
            model_id=model + 1, model_slug=f"model-{model}", deployment_id=model + 1,
            endpoint="chat/completions", status_code=200 if n % 97 else 502,
            streamed=bool(n % 2), input_tokens=tokens_in, output_tokens=tokens_out,
            cached_input_tokens=cached, reasoning_tokens=reasoning,
            estimated=False, latency_ms=latency, ttft_ms=latency // 3,
            input_price_per_million=price_in, output_price_per_million=price_out,
            cached_input_price_per_million=price_cached, currency="EUR",
            cost=(((tokens_in - cached) * price_in + cached * price_cached
                   + tokens_out * price_out) / 1_000_000).quantize(COST)))
    return records


def phase_load(events: int, usage_records: int) -> dict:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(url.replace(f"/{name}", "/postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    from audit.chain import GENESIS_HASH, canonical_time, checkpoint_payload, link_hash
    from billing.usage.seals import SEAL_ACTION, batch_digest
    from portal import signing
    from tenants.models import Tenant

    call_command("migrate", verbosity=0)
    tenant_ids = [t.pk for t in Tenant.objects.bulk_create([
        Tenant(slug=f"tenant-{i}", name=f"Tenant {i}", contact_email=f"ops@tenant-{i}.test",
               jurisdiction="DE") for i in range(1, TENANTS + 1)])]
    started = time.perf_counter()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    step = timedelta(days=31) / events
    batches = -(-usage_records // BATCH)
    seal_every = max(events // max(batches, 1), 1)
    rng = random.Random(17)
    prev = GENESIS_HASH
    checkpoints = []
    sealed = 0
    columns = ("seq", "created_at", "actor_type", "actor_id", "actor_label", "tenant_id",
               "tenant_slug", "action", "target_type", "target_id", "details", "client_ip",
               "request_id", "prev_hash", "hash")
    # Usage records go through a second connection: both COPYs stream at once.
    with connection.cursor() as cursor, psycopg.connect(url) as usage_db, \
            usage_db.cursor().copy(f"COPY billing_usagerecord ({', '.join(USAGE_COLUMNS)}) "
                                   "FROM STDIN") as usage_copy:
        raw = cursor.connection  # psycopg connection
        with raw.cursor().copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            batch_since = start
            for seq in range(1, events + 1):
                created = start + step * (seq - 1)
                if seq % seal_every == 0 and sealed < usage_records:
                    count = min(BATCH, usage_records - sealed)
                    records = _usage_batch(rng, sealed, count, batch_since, created, tenant_ids)
                    for record in records:
                        usage_copy.write_row([getattr(record, c) for c in USAGE_COLUMNS[:-1]]
                                             + [seq])
                    sealed += count
                    batch_since = created
                    row = {
                        "seq": seq, "created_at": canonical_time(created),
                        "actor_type": "system", "actor_id": "system:usage-drain",
                        "actor_label": "system:usage-drain", "tenant_id": None,
                        "tenant_slug": "", "action": SEAL_ACTION, "target_type": "",
                        "target_id": "", "details": {
                            "records": count, "sha256": batch_digest(records),
                            "first_request_id": records[0].request_id,
                            "last_request_id": records[-1].request_id,
                            "from": canonical_time(records[0].created_at),
                            "to": canonical_time(records[-1].created_at)},
                        "client_ip": None, "request_id": "", "prev_hash": prev,
                    }
                else:
                    action = ACTIONS[seq % len(ACTIONS)]
                    tenant = seq % TENANTS
                    row = {
                        "seq": seq, "created_at": canonical_time(created),
                        "actor_type": "user", "actor_id": str(seq % 997),
                        "actor_label": f"user{seq % 997}@bench.test",
                        "tenant_id": tenant or None,
                        "tenant_slug": f"tenant-{tenant}" if tenant else "",
                        "action": action, "target_type": "tenants.tenant",
                        "target_id": str(tenant),
                        "details": {"n": seq, "email": f"user{seq % 97}@bench.test"},
                        "client_ip": "192.0.2.10", "request_id": f"req-{seq}",
                        "prev_hash": prev,
                    }
                row["hash"] = link_hash(row)
                prev = row["hash"]
                copy.write_row([row[c] if c != "details" else json.dumps(row[c])
                                for c in columns])
                if seq % 10_000 == 0 or seq == events:
                    stamp = canonical_time(created + timedelta(seconds=1))
                    payload = checkpoint_payload(last_seq=seq, head_hash=prev, created_at=stamp)
                    checkpoints.append((seq, prev, created + timedelta(seconds=1),
                                        signing.platform_key_id(), signing.sign(payload)))
        cursor.executemany(
            "INSERT INTO audit_auditcheckpoint (last_seq, head_hash, created_at, key_id, "
            "signature) VALUES (%s, %s, %s, %s, %s)", checkpoints)
    # Only now are the usage records committed (their COPY's connection closed above):
    # analysed earlier, PostgreSQL would plan the report for an empty table.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
        cursor.execute("ANALYZE billing_usagerecord")
    elapsed = time.perf_counter() - started
    return {"events": events, "checkpoints": len(checkpoints), "usage_records": sealed,
            "seals": -(-sealed // BATCH), "seconds": round(elapsed, 1),
            "rows_per_s": round((events + sealed) / elapsed)}


def phase_report(trace: bool) -> dict:
    _setup_django()
    from audit import services
    from audit.reports import sections
    from audit.reports.periods import parse_period

    timings: dict[str, float] = {}

    def timed(key, provider):
        def run(scope):
            began = time.perf_counter()
            try:
                return provider(scope)
            finally:
                timings[key] = round(time.perf_counter() - began, 1)
        return run

    for key, registered in sections._REGISTRY.items():
        sections._REGISTRY[key] = dataclasses.replace(
            registered, provider=timed(key, registered.provider))
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    report = services.report_request(actor="system:bench", period=parse_period(MONTH),
                                     enqueue=False)
    report = services.report_generate(report_id=report.pk)
    elapsed = time.perf_counter() - started
    python_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if report.status != "ready":
        raise SystemExit(f"report failed: {report.error}")
    bundle = Path(os.environ["COMPLIANCE_REPORTS_DIR"]) / report.bundle_name
    return {"seconds": round(elapsed, 1), "peak_rss_mb": round(_peak_mb()),
            "python_peak_mb": round(python_peak / 2**20), "sections": timings,
            "pdf_kb": round(report.pdf_size / 1024),
            "bundle_mb": round(report.bundle_size / 2**20, 1), "bundle": str(bundle)}


def phase_verify() -> dict:
    _setup_django()
    from audit.selectors import chain_verify

    started = time.perf_counter()
    result = chain_verify()
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"chain broken: {result.error}")
    return {"events": result.count, "checkpoints_matched": result.checkpoints_matched,
            "seconds": round(elapsed, 1), "events_per_s": round(result.count / elapsed),
            "peak_rss_mb": round(_peak_mb())}


def phase_bundle_verify(bundle: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from audit.bundle_verify import verify_bundle
    from portal.signing import load_private_key

    key = load_private_key(os.environ["PLATFORM_SIGNING_KEY_FILE"]).public_key()
    started = time.perf_counter()
    check = verify_bundle(bundle, key)
    elapsed = time.perf_counter() - started
    if not check.ok:
        raise SystemExit(f"bundle not verified: {check.problems}")
    return {"seconds": round(elapsed, 1), "peak_rss_mb": round(_peak_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--usage-records", type=int, default=5_000_000)
    parser.add_argument("--phase", choices=["load", "report", "verify", "bundle_verify"])
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also run the report under tracemalloc: its Python heap's peak")
    parser.add_argument("bundle", nargs="?")
    args = parser.parse_args()
    if args.phase:
        figures = {"load": lambda: phase_load(args.events, args.usage_records),
                   "report": lambda: phase_report(args.tracemalloc),
                   "verify": phase_verify,
                   "bundle_verify": lambda: phase_bundle_verify(args.bundle)}[args.phase]()
        print(json.dumps(figures))
        return
    env = _environment()
    load = _phase("load", env, "--events", str(args.events), "--usage-records",
                  str(args.usage_records))
    print(f"load:          {load['events']:,} events + {load['checkpoints']} signed checkpoints"
          f" + {load['usage_records']:,} usage records in {load['seals']:,} sealed batches "
          f"via COPY in {load['seconds']} s ({load['rows_per_s']:,} rows/s)")
    report = _phase("report", env)
    print(f"report {MONTH}: {report['seconds']} s, peak RSS {report['peak_rss_mb']} MB, "
          f"PDF {report['pdf_kb']} KB, bundle {report['bundle_mb']} MB")
    print("  sections:     " + ", ".join(f"{k} {v} s" for k, v in report["sections"].items()))
    if args.tracemalloc:  # a second report under tracemalloc (several times slower)
        traced = _phase("report", env, "--tracemalloc")
        print(f"  under tracemalloc: {traced['seconds']} s, Python heap peak "
              f"{traced['python_peak_mb']} MB, peak RSS {traced['peak_rss_mb']} MB")
    verify = _phase("verify", env)
    print(f"audit_verify:  {verify['events']:,} events, {verify['checkpoints_matched']} "
          f"checkpoints in {verify['seconds']} s = {verify['events_per_s']:,} events/s, "
          f"peak RSS {verify['peak_rss_mb']} MB")
    bundle = _phase("bundle_verify", env, report["bundle"])
    print(f"bundle_verify: {bundle['seconds']} s, peak RSS {bundle['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
