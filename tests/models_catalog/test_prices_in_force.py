"""One price-at-time lookup, the catalog's: the price in force when a request was served."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from models_catalog import services
from models_catalog.selectors import prices_in_force

pytestmark = pytest.mark.django_db


def test_the_newest_price_that_started_at_or_before_the_instant(msp_admin):
    model = services.model_create(actor=msp_admin, slug="priced", name="Priced", task="chat")
    other = services.model_create(actor=msp_admin, slug="unpriced", name="Unpriced",
                                  task="chat")
    start = timezone.now() + timedelta(minutes=5)
    first = services.price_set(actor=msp_admin, model=model, input_per_million=Decimal(1),
                               output_per_million=Decimal(2), effective_from=start)
    second = services.price_set(actor=msp_admin, model=model, input_per_million=Decimal(3),
                                output_per_million=Decimal(4),
                                effective_from=start + timedelta(days=1))
    price_at = prices_in_force(model_ids=[model.pk, other.pk])
    assert price_at(model.pk, start - timedelta(seconds=1)) is None
    assert price_at(model.pk, start) == first
    assert price_at(model.pk, start + timedelta(hours=23)) == first
    assert price_at(model.pk, start + timedelta(days=1)) == second
    assert price_at(model.pk, start + timedelta(days=400)) == second
    assert price_at(other.pk, start) is None
