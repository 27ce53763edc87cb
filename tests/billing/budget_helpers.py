"""Usage events as the gateway queues them, for the billing tests."""

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from billing.usage.services import usage_records_ingest
from models_catalog import services as catalog_services
from models_catalog.models import ModelPrice

_counter = itertools.count()


def make_model(slug="chat-small", *, price_in="2", price_out="6", currency="EUR",
               since=datetime(2020, 1, 1, tzinfo=UTC)):
    model = catalog_services.model_create(actor="system:test", slug=slug, name=slug.title(),
                                          task="chat")
    if price_in is not None:
        # A price from the past: the price service (rightly) refuses those.
        ModelPrice.objects.create(model=model, input_per_million=Decimal(price_in),
                                  output_per_million=Decimal(price_out), currency=currency,
                                  effective_from=since)
    return model


def event(tenant, model, *, input_tokens=1000, output_tokens=500, key_id=None, when=None):
    when = when or datetime.now(UTC)
    return {"tenant_id": tenant.pk, "request_id": f"req_{uuid.uuid4().hex}",
            "ts": when.timestamp(), "key_id": key_id, "model_id": model.pk,
            "model": model.slug, "deployment_id": None, "endpoint": "chat",
            "status": 200, "streamed": False, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "estimated": False, "latency_ms": 10}


def ingest(*events):
    return usage_records_ingest(events=list(events))
