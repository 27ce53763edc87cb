"""The restore drill of the README ("Back up, restore, upgrade"): pg_dump the database, restore
it into a new one, and prove there that the audit chain (with its signed checkpoints) and the
sealed usage records are intact."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from audit import services as audit_services
from billing.usage.services import usage_records_ingest
from models_catalog import services as catalog_services
from tests.factories import TenantFactory

ROOT = Path(__file__).resolve().parents[2]


def _event(tenant, model, n: int) -> dict:
    return {"request_id": f"drill_{n:04d}", "ts": time.time(), "tenant_id": tenant.pk,
            "key_id": None, "model_id": model.pk, "model": model.slug, "deployment_id": None,
            "endpoint": "chat/completions", "status": 200, "streamed": False,
            "input_tokens": 10 + n, "output_tokens": 5, "estimated": False, "latency_ms": 3,
            "ttft_ms": 3}


def _connection_args(database: dict) -> list[str]:
    return ["--host", database["HOST"], "--port", str(database["PORT"]),
            "--username", database["USER"]]


@pytest.fixture
def restored_database(transactional_db, tmp_path):
    """Yields a function that dumps the test database and restores it into a new one."""
    database = settings.DATABASES["default"]
    env = {**os.environ, "PGPASSWORD": database["PASSWORD"] or ""}
    created = []

    def dump_and_restore() -> str:
        dump = tmp_path / "portal.dump"
        subprocess.run(["pg_dump", *_connection_args(database), "--format", "custom",
                        "--file", str(dump), database["NAME"]], env=env, check=True,
                       timeout=300)
        name = f"{database['NAME']}_restore_{uuid.uuid4().hex[:6]}"
        subprocess.run(["createdb", *_connection_args(database), name], env=env, check=True,
                       timeout=60)
        created.append(name)
        subprocess.run(["pg_restore", *_connection_args(database), "--no-owner",
                        "--exit-on-error", "--dbname", name, str(dump)], env=env, check=True,
                       timeout=300)
        return name

    yield dump_and_restore
    for name in created:
        subprocess.run(["dropdb", *_connection_args(database), "--force", name], env=env,
                       timeout=60)


def _manage(command: str, database_name: str) -> subprocess.CompletedProcess:
    database = settings.DATABASES["default"]
    url = (f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST']}:"
           f"{database['PORT']}/{database_name}")
    return subprocess.run([sys.executable, "manage.py", command], cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                          text=True)


def test_a_restored_dump_passes_audit_verify_and_usage_verify(restored_database):
    tenant = TenantFactory(slug="drill", name="Drill Tenant")
    model = catalog_services.model_create(actor="system:test", slug="drill-chat",
                                          name="Drill Chat", task="chat")
    catalog_services.price_set(actor="system:test", model=model,
                               input_per_million=Decimal("0.5"),
                               output_per_million=Decimal("1.5"))
    usage_records_ingest(events=[_event(tenant, model, n) for n in range(6)])
    usage_records_ingest(events=[_event(tenant, model, n) for n in range(6, 9)])
    checkpoint = audit_services.checkpoint_create(actor="system:test")
    assert checkpoint is not None

    name = restored_database()

    audit = _manage("audit_verify", name)
    assert audit.returncode == 0, audit.stderr
    assert "Audit chain intact" in audit.stdout
    assert "Signed checkpoints: 1 matched" in audit.stdout
    usage = _manage("usage_verify", name)
    assert usage.returncode == 0, usage.stderr
    assert "2 sealed usage batches verified" in usage.stdout

    # The drill would notice a restore that lost or changed data.
    database = settings.DATABASES["default"]
    with psycopg.connect(host=database["HOST"], port=database["PORT"], user=database["USER"],
                         password=database["PASSWORD"], dbname=name,
                         autocommit=True) as connection:
        connection.execute("UPDATE billing_usagerecord SET output_tokens = 6 "
                           "WHERE request_id = 'drill_0001'")
    usage = _manage("usage_verify", name)
    assert usage.returncode != 0
    assert "fail their seal" in usage.stderr
