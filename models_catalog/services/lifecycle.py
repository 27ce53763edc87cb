"""Lifecycle of what is published: a version is deprecated (no new deployments), retired (no
serving) or reinstated; a model as a whole is active, deprecated or retired. The gateway
applies each change at once."""

from __future__ import annotations

from django.db import transaction

import audit
from models_catalog.models import VERSION_TRANSITIONS, Model, ModelVersion, VersionStatus
from models_catalog.services.gate import transition
from portal.api import ApplicationError, full_clean_or_refuse
from portal.gateway_config import bump_gateway_config

LIFECYCLE_ACTIONS = {
    VersionStatus.DEPRECATED: "deprecated",
    VersionStatus.RETIRED: "retired",
    VersionStatus.PUBLISHED: "reinstated",
}


def version_set_lifecycle(*, actor, version: ModelVersion, status: str) -> ModelVersion:
    """Deprecate (no new deployments), retire (no serving) or reinstate a published version."""
    if status not in LIFECYCLE_ACTIONS or status not in VERSION_TRANSITIONS[version.status]:
        raise ApplicationError(f"A {version.get_status_display().lower()} version can't become "
                               f"{status}.", field_errors={"status": ["Not allowed from here."]})
    with transaction.atomic():
        if not transition(version, to=status, actor=actor, action=LIFECYCLE_ACTIONS[status]):
            raise ApplicationError("The version changed meanwhile; reload and try again.")
        bump_gateway_config()
    return version


@transaction.atomic
def model_set_lifecycle(*, actor, model: Model, lifecycle: str) -> Model:
    previous = model.lifecycle
    model.lifecycle = lifecycle
    full_clean_or_refuse(model)
    model.save(update_fields=["lifecycle", "updated_at"])
    audit.record(action=f"model.{lifecycle}", actor=actor, target=model,
                 details={"from": previous, "to": lifecycle})
    bump_gateway_config()
    return model
