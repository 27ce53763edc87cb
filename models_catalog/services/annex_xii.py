"""A model's EU AI Act Annex XII information, edited by MSP admins."""

from __future__ import annotations

from django.db import transaction

import audit
from models_catalog.models import AnnexXIIInformation, Model
from portal.api import ApplicationError, full_clean_or_refuse
from portal.text import holds_unstorable_text

ANNEX_XII_FIELDS = frozenset({
    "intended_tasks", "acceptable_use", "architecture", "parameter_count", "training_approach",
    "input_modalities", "output_modalities", "training_data_summary", "limitations",
    "training_energy_kwh"})
# Kept on the model (the card, the gateway and the catalog read them there).
MODEL_FIELDS = frozenset({"license", "context_length"})
TEXT_FIELDS = frozenset({"intended_tasks", "acceptable_use", "architecture", "input_modalities",
                         "output_modalities", "training_data_summary", "limitations", "license"})


def model_update_annex_xii(*, actor, model: Model, **fields) -> AnnexXIIInformation:
    """Set any of the Annex XII fields (and the model's licence and context window). New
    SBOMs carry the result; versions already signed keep the SBOM they were signed with."""
    unknown = set(fields) - ANNEX_XII_FIELDS - MODEL_FIELDS
    if unknown:
        raise ApplicationError(f"Can't change {', '.join(sorted(unknown))} here.")
    bad = sorted(name for name in TEXT_FIELDS & set(fields)
                 if holds_unstorable_text(fields[name] or ""))
    if bad:
        raise ApplicationError("The text holds a NUL character or an unpaired surrogate, "
                               "which can't be stored: remove it.",
                               field_errors={name: ["Holds a character that can't be stored."]
                                             for name in bad})
    with transaction.atomic():
        model = Model.objects.select_for_update().get(pk=model.pk)
        info, _ = AnnexXIIInformation.objects.select_for_update().get_or_create(model=model)
        changed = []
        for name, value in fields.items():
            target = model if name in MODEL_FIELDS else info
            if isinstance(value, str):
                value = value.strip()
            if getattr(target, name) != value:
                setattr(target, name, value)
                changed.append(name)
        info.updated_by = actor
        full_clean_or_refuse(model)
        full_clean_or_refuse(info, exclude=["model"])
        model.save()
        info.save()
        audit.record(action="model.annex_xii_updated", actor=actor, target=model,
                     details={"fields": sorted(changed)})
    return info
