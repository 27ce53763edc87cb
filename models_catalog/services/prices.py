"""Prices of a model, per million tokens. A price is never edited: a new one starts at a time,
and usage is charged at the price in force when it was served (`selectors.prices_in_force`)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

import audit
from models_catalog.models import Model, ModelPrice
from portal.api import ApplicationError, full_clean_or_refuse


@transaction.atomic
def price_set(*, actor, model: Model, input_per_million: Decimal, output_per_million: Decimal,
              currency: str = "EUR", effective_from=None,
              cached_input_per_million: Decimal | None = None) -> ModelPrice:
    """A new price from `effective_from` (default now). Past prices are never changed.
    Cached input tokens (read from the model server's prefix cache) cost
    `cached_input_per_million`; without one, the input price."""
    effective_from = effective_from or timezone.now()
    if effective_from < timezone.now() - timedelta(minutes=1):
        raise ApplicationError("A price can't start in the past: usage already served keeps the "
                               "price it was served at.",
                               field_errors={"effective_from": ["Choose now or a later time."]})
    price = ModelPrice(model=model, input_per_million=input_per_million,
                       output_per_million=output_per_million, currency=currency,
                       cached_input_per_million=cached_input_per_million,
                       effective_from=effective_from)
    full_clean_or_refuse(price)
    price.save()
    audit.record(action="model.price_set", actor=actor, target=model,
                 details={"input_per_million": input_per_million,
                          "output_per_million": output_per_million,
                          "cached_input_per_million": cached_input_per_million,
                          "currency": currency,
                          "effective_from": effective_from})
    return price
