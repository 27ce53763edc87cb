"""Which tenants may use a model: every tenant, or the ones named. The gateway applies a
change at once."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

import audit
from models_catalog.models import Model
from portal.api import ApplicationError
from portal.gateway_config import bump_gateway_config
from tenants.models import Tenant


@transaction.atomic
def model_set_entitlements(*, actor, model: Model, all_tenants: bool,
                           tenants: Sequence[Tenant] = ()) -> Model:
    if not all_tenants and not tenants:
        raise ApplicationError("Name the tenants, or allow every tenant.",
                               field_errors={"tenants": ["Required."]})
    model.available_to_all_tenants = all_tenants
    model.save(update_fields=["available_to_all_tenants", "updated_at"])
    model.entitled_tenants.set([] if all_tenants else tenants)
    audit.record(action="model.entitlements_changed", actor=actor, target=model,
                 details={"all_tenants": all_tenants,
                          "tenants": sorted(t.slug for t in tenants) if not all_tenants else []})
    bump_gateway_config()
    return model
