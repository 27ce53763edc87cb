"""The usage drain as a process of its own, for fault tests, against the database and Redis
named by DATABASE_URL and REDIS_URL.

`seed` creates a tenant and a priced model and prints their ids as JSON. `drain STOP_FILE`
runs `drain_usage_stream` again and again, as beat runs `gateway.tasks.drain_usage` on a
Celery worker: a run that fails is reported and the next one follows, with the database
connection checked first, as Celery's Django fix-up does around every task. It stops when
STOP_FILE exists.
"""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.db import close_old_connections  # noqa: E402


def seed() -> None:
    from models_catalog import services as catalog_services
    from tenants import services as tenant_services

    tenant = tenant_services.tenant_create(actor="system:test", slug="acme", name="Acme",
                                           contact_email="ops@acme.test", jurisdiction="DE")
    model = catalog_services.model_create(actor="system:test", slug="chat-small",
                                          name="Chat Small", task="chat")
    catalog_services.price_set(actor="system:test", model=model,
                               input_per_million=Decimal("0.5"),
                               output_per_million=Decimal("1.5"))
    print(json.dumps({"tenant": tenant.pk, "model": model.pk}), flush=True)


def drain(stop_file: Path) -> None:
    from billing.usage.drain import drain_usage_stream

    while not stop_file.exists():
        close_old_connections()
        try:
            created = drain_usage_stream(batch_size=100)
        except Exception as exc:  # what a failed Celery task run would log
            print(f"drain failed: {exc.__class__.__name__}: {str(exc)[:120]}", flush=True)
            close_old_connections()
            time.sleep(0.2)
            continue
        print(f"drained {created}", flush=True)
        time.sleep(0.02 if created else 0.2)


if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed()
    else:
        drain(Path(sys.argv[2]))
