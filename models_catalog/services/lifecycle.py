"""Lifecycle of what is published: a version is deprecated (no new deployments), retired (no
serving) or reinstated; a model as a whole is active, deprecated or retired. The gateway
applies each change at once.

A deprecation may carry a sunset date and a successor model. The gateway then answers
requests for a deprecated model with `Deprecation` and `Sunset` headers and, after the sunset,
with an error naming the successor. Once such a deprecation is committed, the listeners
registered with `on_deprecation` are told (billing's: notify every tenant whose keys used it;
the catalog does not know who did).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

import audit
from models_catalog.models import (
    VERSION_TRANSITIONS,
    Model,
    ModelLifecycle,
    ModelVersion,
    VersionStatus,
)
from models_catalog.services.gate import transition
from portal.api import ApplicationError, full_clean_or_refuse
from portal.dates import OUT_OF_RANGE, is_supported
from portal.gateway_config import bump_gateway_config

LIFECYCLE_ACTIONS = {
    VersionStatus.DEPRECATED: "deprecated",
    VersionStatus.RETIRED: "retired",
    VersionStatus.PUBLISHED: "reinstated",
}

DeprecationListener = Callable[..., None]
_listeners: list[DeprecationListener] = []


def on_deprecation(listener: DeprecationListener) -> DeprecationListener:
    """Call `listener(model_id=…, version_id=…)` (version_id None for a whole model) after a
    deprecation with a sunset date is committed."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def _announce_after_commit(*, model_id: int, version_id: int | None) -> None:
    def announce() -> None:
        for listener in _listeners:
            listener(model_id=model_id, version_id=version_id)

    transaction.on_commit(announce)


def _check_sunset(*, deprecating: bool, sunset_at: datetime | None,
                  successor: Model | None, model: Model) -> None:
    if sunset_at is not None and not deprecating:
        raise ApplicationError("Only a deprecation has a sunset date.",
                               field_errors={"sunset_at": ["Deprecate it to set a sunset."]})
    if sunset_at is not None and not is_supported(sunset_at):
        raise ApplicationError(OUT_OF_RANGE, field_errors={"sunset_at": [OUT_OF_RANGE]})
    if successor is not None:
        if successor.pk == model.pk:
            raise ApplicationError("A model can't succeed itself.",
                                   field_errors={"successor": ["Choose another model."]})
        if successor.lifecycle == ModelLifecycle.RETIRED:
            raise ApplicationError(f"{successor.slug} is retired: it can't be the successor.",
                                   field_errors={"successor": ["Choose a model that serves."]})


def version_set_lifecycle(*, actor, version: ModelVersion, status: str,
                          sunset_at: datetime | None = None,
                          successor: Model | None = None) -> ModelVersion:
    """Deprecate (no new deployments), retire (no serving) or reinstate a published version. A
    deprecation may name a sunset date and a successor model: the tenants whose keys used the
    version in the last 90 days are then told."""
    if status not in LIFECYCLE_ACTIONS or status not in VERSION_TRANSITIONS[version.status]:
        raise ApplicationError(f"A {version.get_status_display().lower()} version can't become "
                               f"{status}.", field_errors={"status": ["Not allowed from here."]})
    deprecating = status == VersionStatus.DEPRECATED
    _check_sunset(deprecating=deprecating, sunset_at=sunset_at, successor=successor,
                  model=version.model)
    dates = {"sunset_at": sunset_at, "successor": successor}
    if deprecating:
        dates["deprecated_at"] = timezone.now()
    elif status == VersionStatus.PUBLISHED:
        dates["deprecated_at"] = None
    details = {"sunset_at": sunset_at, "successor": successor.slug if successor else None}
    with transaction.atomic():
        if not transition(version, to=status, actor=actor, action=LIFECYCLE_ACTIONS[status],
                          details=details if deprecating else None, **dates):
            raise ApplicationError("The version changed meanwhile; reload and try again.")
        bump_gateway_config()
        if deprecating and sunset_at is not None:
            _announce_after_commit(model_id=version.model_id, version_id=version.pk)
    return version


@transaction.atomic
def model_set_lifecycle(*, actor, model: Model, lifecycle: str,
                        sunset_at: datetime | None = None,
                        successor: Model | None = None) -> Model:
    """Set a model's lifecycle. Deprecated may carry a sunset date (after it, the gateway
    refuses the model's requests, naming the successor) and a successor; deprecating with a
    sunset date tells the tenants whose keys used the model in the last 90 days. Deprecating
    an already deprecated model again changes its sunset date or successor."""
    previous = model.lifecycle
    deprecating = lifecycle == ModelLifecycle.DEPRECATED
    _check_sunset(deprecating=deprecating, sunset_at=sunset_at, successor=successor,
                  model=model)
    model.lifecycle = lifecycle
    if deprecating:
        model.deprecated_at = model.deprecated_at if previous == lifecycle else timezone.now()
    elif lifecycle == ModelLifecycle.ACTIVE:
        model.deprecated_at = None
    model.sunset_at = sunset_at
    model.successor = successor if lifecycle != ModelLifecycle.ACTIVE else None
    full_clean_or_refuse(model)
    model.save(update_fields=["lifecycle", "deprecated_at", "sunset_at", "successor",
                              "updated_at"])
    audit.record(action=f"model.{lifecycle}", actor=actor, target=model,
                 details={"from": previous, "to": lifecycle, "sunset_at": sunset_at,
                          "successor": successor.slug if successor else None})
    bump_gateway_config()
    if deprecating and sunset_at is not None:
        _announce_after_commit(model_id=model.pk, version_id=None)
    return model
