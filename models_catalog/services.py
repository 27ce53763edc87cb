from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

import audit
from models_catalog.models import Model, ModelPrice
from portal.api import ApplicationError
from portal.gateway_config import bump_gateway_config


@transaction.atomic
def model_create(*, actor, slug: str, name: str, task: str, provider: str = "",
                 description: str = "", context_length: int | None = None,
                 available_to_all_tenants: bool = True, model_card: str = "",
                 license: str = "") -> Model:  # noqa: A002 — the field's name
    model = Model(slug=slug, name=name, task=task, provider=provider, description=description,
                  context_length=context_length, model_card=model_card, license=license,
                  available_to_all_tenants=available_to_all_tenants)
    model.full_clean()
    model.save()
    audit.record(action="model.created", actor=actor, target=model,
                 details={"slug": slug, "task": task, "all_tenants": available_to_all_tenants})
    bump_gateway_config()
    return model


@transaction.atomic
def model_set_entitlements(*, actor, model: Model, all_tenants: bool, tenants=()) -> Model:
    model.available_to_all_tenants = all_tenants
    model.save(update_fields=["available_to_all_tenants", "updated_at"])
    model.entitled_tenants.set([] if all_tenants else tenants)
    audit.record(action="model.entitlements_changed", actor=actor, target=model,
                 details={"all_tenants": all_tenants,
                          "tenants": sorted(t.slug for t in tenants) if not all_tenants else []})
    bump_gateway_config()
    return model


@transaction.atomic
def model_set_lifecycle(*, actor, model: Model, lifecycle: str) -> Model:
    previous = model.lifecycle
    model.lifecycle = lifecycle
    model.full_clean()
    model.save(update_fields=["lifecycle", "updated_at"])
    audit.record(action=f"model.{lifecycle}", actor=actor, target=model,
                 details={"from": previous, "to": lifecycle})
    bump_gateway_config()
    return model


@transaction.atomic
def price_set(*, actor, model: Model, input_per_million: Decimal, output_per_million: Decimal,
              currency: str = "EUR", effective_from=None) -> ModelPrice:
    """A new price from `effective_from` (default now). Past prices are never changed."""
    effective_from = effective_from or timezone.now()
    if effective_from < timezone.now() - timedelta(minutes=1):
        raise ApplicationError("A price can't start in the past: usage already served keeps the "
                               "price it was served at.",
                               field_errors={"effective_from": ["Choose now or a later time."]})
    price = ModelPrice(model=model, input_per_million=input_per_million,
                       output_per_million=output_per_million, currency=currency,
                       effective_from=effective_from)
    price.full_clean()
    price.save()
    audit.record(action="model.price_set", actor=actor, target=model,
                 details={"input_per_million": input_per_million,
                          "output_per_million": output_per_million, "currency": currency,
                          "effective_from": effective_from})
    return price
