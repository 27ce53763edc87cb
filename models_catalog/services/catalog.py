"""Catalog entries: a model (what `model` names in an OpenAI-style request) and its card."""

from __future__ import annotations

from django.db import transaction

import audit
from models_catalog.models import Model
from portal.api import ApplicationError, full_clean_or_refuse
from portal.gateway_config import bump_gateway_config

CARD_FIELDS = frozenset({"name", "description", "model_card", "provider", "license",
                         "context_length"})


@transaction.atomic
def model_create(*, actor, slug: str, name: str, task: str, provider: str = "",
                 description: str = "", context_length: int | None = None,
                 available_to_all_tenants: bool = True, model_card: str = "",
                 license: str = "") -> Model:  # noqa: A002 — the field's name
    model = Model(slug=slug, name=name, task=task, provider=provider, description=description,
                  context_length=context_length, model_card=model_card, license=license,
                  available_to_all_tenants=available_to_all_tenants)
    full_clean_or_refuse(model)
    model.save()
    audit.record(action="model.created", actor=actor, target=model,
                 details={"slug": slug, "task": task, "all_tenants": available_to_all_tenants})
    bump_gateway_config()
    return model


def model_update_card(*, actor, model: Model, **fields) -> Model:
    """Edit a model's descriptive fields (card, license, provider, context length)."""
    unknown = set(fields) - CARD_FIELDS
    if unknown:
        raise ApplicationError(f"Can't change {', '.join(sorted(unknown))} here.")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(model, name, value)
        full_clean_or_refuse(model)
        model.save()
        audit.record(action="model.updated", actor=actor, target=model,
                     details={"fields": sorted(fields)})
    return model
