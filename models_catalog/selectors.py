from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from models_catalog.models import Model, ModelLifecycle, ModelPrice
from tenants.models import Tenant


def model_list_for_tenant(*, tenant: Tenant) -> QuerySet[Model]:
    """Models the tenant is entitled to and that still serve."""
    return (Model.objects.exclude(lifecycle=ModelLifecycle.RETIRED)
            .filter(Q(available_to_all_tenants=True) | Q(entitled_tenants=tenant))
            .distinct().order_by("name"))


def price_in_force(*, model_id: int, at: datetime) -> ModelPrice | None:
    return (ModelPrice.objects.filter(model_id=model_id, effective_from__lte=at)
            .order_by("-effective_from").first())
