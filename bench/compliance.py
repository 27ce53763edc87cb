"""Benchmark of the compliance machinery (not part of the test suite).

    .venv/bin/python bench/compliance.py [--events 1000000]

Creates a fresh PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres:postgres@127.0.0.1:5432/portal_bench), loads N hash-chained audit events
spread over one month with COPY (and a signed checkpoint every 10,000 events), then, each in
its own process so peak memory is measured per phase:

  1. a monthly platform compliance report (PDF + signed evidence bundle), end to end;
  2. audit_verify's check of the whole chain against every checkpoint;
  3. the offline bundle verifier on the report's bundle.

It prints wall time, throughput and peak RSS of each phase. Targets: report < 60 s and
< 500 MB; audit_verify >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DEFAULT_DB = "postgres://postgres:postgres@127.0.0.1:5432/portal_bench"
MONTH = "2026-10"
ACTIONS = ["tenant.updated", "membership.created", "auth.login_succeeded", "auth.login_failed",
           "inference.batch_sealed", "budget.blocked", "invitation.created", "model.rejected"]


def _environment() -> dict[str, str]:
    VAR.mkdir(parents=True, exist_ok=True)
    key = VAR / "platform-signing-key.pem"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    env.update({
        "PORTAL_IGNORE_DOTENV": "1", "DEBUG": "false", "SECRET_KEY": "bench-" + "x" * 40,
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        "PLATFORM_SIGNING_KEY_FILE": str(key), "COMPLIANCE_REPORTS_DIR": str(VAR / "reports"),
        "PORTAL_VAR_DIR": str(VAR), "DJANGO_SETTINGS_MODULE": "portal.settings",
        "LOG_LEVEL": "WARNING",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleSE=",
    })
    if not key.exists():
        sys.path.insert(0, str(ROOT))
        from portal.signing import write_new_key

        write_new_key(key)
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


def phase_load(events: int) -> dict:
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
    from portal import signing

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    step = timedelta(days=31) / events
    prev = GENESIS_HASH
    checkpoints = []
    columns = ("seq", "created_at", "actor_type", "actor_id", "actor_label", "tenant_id",
               "tenant_slug", "action", "target_type", "target_id", "details", "client_ip",
               "request_id", "prev_hash", "hash")
    with connection.cursor() as cursor:
        raw = cursor.connection  # psycopg connection
        with raw.cursor().copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            for seq in range(1, events + 1):
                created = start + step * (seq - 1)
                action = ACTIONS[seq % len(ACTIONS)]
                tenant = seq % 50
                row = {
                    "seq": seq, "created_at": canonical_time(created), "actor_type": "user",
                    "actor_id": str(seq % 997), "actor_label": f"user{seq % 997}@bench.test",
                    "tenant_id": tenant or None,
                    "tenant_slug": f"tenant-{tenant}" if tenant else "",
                    "action": action, "target_type": "tenants.tenant", "target_id": str(tenant),
                    "details": {"n": seq, "email": f"user{seq % 97}@bench.test"},
                    "client_ip": "192.0.2.10", "request_id": f"req-{seq}", "prev_hash": prev,
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
        cursor.execute("ANALYZE audit_auditevent")
    elapsed = time.perf_counter() - started
    return {"events": events, "checkpoints": len(checkpoints), "seconds": round(elapsed, 1),
            "events_per_s": round(events / elapsed)}


def phase_report() -> dict:
    _setup_django()
    from audit import services
    from audit.reports.periods import parse_period

    started = time.perf_counter()
    report = services.report_request(actor="system:bench", period=parse_period(MONTH),
                                     enqueue=False)
    report = services.report_generate(report_id=report.pk)
    elapsed = time.perf_counter() - started
    if report.status != "ready":
        raise SystemExit(f"report failed: {report.error}")
    bundle = Path(os.environ["COMPLIANCE_REPORTS_DIR"]) / report.bundle_name
    return {"seconds": round(elapsed, 1), "peak_rss_mb": round(_peak_mb()),
            "pdf_kb": round(report.pdf_size / 1024), "bundle_mb": round(report.bundle_size / 2**20,
                                                                        1),
            "bundle": str(bundle)}


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
    parser.add_argument("--phase", choices=["load", "report", "verify", "bundle_verify"])
    parser.add_argument("bundle", nargs="?")
    args = parser.parse_args()
    if args.phase:
        figures = {"load": lambda: phase_load(args.events), "report": phase_report,
                   "verify": phase_verify,
                   "bundle_verify": lambda: phase_bundle_verify(args.bundle)}[args.phase]()
        print(json.dumps(figures))
        return
    env = _environment()
    load = _phase("load", env, "--events", str(args.events))
    print(f"load:          {load['events']:,} events + {load['checkpoints']} signed checkpoints "
          f"via COPY in {load['seconds']} s ({load['events_per_s']:,}/s)")
    report = _phase("report", env)
    print(f"report {MONTH}: {report['seconds']} s, peak RSS {report['peak_rss_mb']} MB, "
          f"PDF {report['pdf_kb']} KB, bundle {report['bundle_mb']} MB")
    verify = _phase("verify", env)
    print(f"audit_verify:  {verify['events']:,} events, {verify['checkpoints_matched']} "
          f"checkpoints in {verify['seconds']} s = {verify['events_per_s']:,} events/s, "
          f"peak RSS {verify['peak_rss_mb']} MB")
    bundle = _phase("bundle_verify", env, report["bundle"])
    print(f"bundle_verify: {bundle['seconds']} s, peak RSS {bundle['peak_rss_mb']} MB")
    print("Usage records (the billing issue) do not exist yet: the benchmark covers audit "
          "events only.")


if __name__ == "__main__":
    main()
