"""A version's lineage: its base model (another catalog version, or an external identifier with
its digest) and the datasets it was trained or tuned on (identifier and snapshot digest).

Set in the upload wizard and the API when a version is created, corrected by MSP admins
later; every change is audited with what it was before. Provenance queries
(`models_catalog.provenance`) walk these references downstream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction

import audit
from models_catalog.models import DatasetReference, ModelVersion
from portal import locks
from portal.api import ApplicationError, full_clean_or_refuse

MAX_DATASETS = 200


@dataclass(frozen=True)
class Lineage:
    base_version: ModelVersion | None = None
    base_model: str = ""
    base_model_digest: str = ""
    datasets: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"base_version": str(self.base_version) if self.base_version else "",
                "base_model": self.base_model, "base_model_digest": self.base_model_digest,
                "datasets": [{"identifier": i, "digest": d} for i, d in self.datasets]}


def lineage_of(version: ModelVersion) -> Lineage:
    return Lineage(base_version=version.base_version, base_model=version.base_model,
                   base_model_digest=version.base_model_digest,
                   datasets=tuple(sorted((d.identifier, d.digest)
                                         for d in version.datasets.all())))


def version_by_reference(reference: str, *, field_name: str = "base_version") -> ModelVersion:
    """The catalog version `<model slug>:<version>` names; refused with a field error when
    there is none."""
    slug, _, label = (reference or "").strip().partition(":")
    version = (ModelVersion.objects.select_related("model")
               .filter(model__slug=slug, version=label).first() if slug and label else None)
    if version is None:
        message = (f"No catalog version “{reference}”: name it as <model slug>:<version>, "
                   "e.g. mistral-7b:1.0.")
        raise ApplicationError(message, field_errors={field_name: [message]})
    return version


def make_lineage(*, version: ModelVersion | None = None, base_version: ModelVersion | None,
                 base_model: str = "", base_model_digest: str = "",
                 datasets: Iterable[tuple[str, str]] = ()) -> Lineage:
    """Check a lineage for `version` (None: a version not created yet) and normalise it."""
    base_model, base_model_digest = base_model.strip(), base_model_digest.strip()
    errors: dict[str, list[str]] = {}
    if base_version is not None and base_model:
        errors["base_model"] = ["Name the base model once: a catalog version, or an external "
                                "model — not both."]
    if base_model_digest and not base_model:
        errors["base_model_digest"] = ["A digest needs the external base model it belongs to."]
    if base_version is not None and version is not None and version.pk:
        ancestor, seen = base_version.pk, set()
        while ancestor is not None and ancestor not in seen:  # as stored, not as loaded
            if ancestor == version.pk:
                errors["base_version"] = [f"{base_version} derives from {version} already: a "
                                          "version can't be its own ancestor."]
                break
            seen.add(ancestor)
            ancestor = (ModelVersion.objects.filter(pk=ancestor)
                        .values_list("base_version_id", flat=True).first())
    unique: dict[tuple[str, str], None] = {}
    for identifier, digest in datasets:
        identifier, digest = identifier.strip(), digest.strip()
        if not identifier:
            errors.setdefault("datasets", []).append("Every dataset needs an identifier.")
            continue
        unique[(identifier, digest)] = None
    if len(unique) > MAX_DATASETS:
        errors.setdefault("datasets", []).append(f"Name at most {MAX_DATASETS} datasets.")
    if errors:
        raise ApplicationError("The lineage is not valid.", field_errors=errors)
    references = [DatasetReference(version=version or ModelVersion(), identifier=i, digest=d)
                  for i, d in unique]
    for reference in references:
        try:
            full_clean_or_refuse(reference, exclude=["version"])
        except ApplicationError as exc:
            raise ApplicationError(
                f"Dataset “{reference.identifier}”: {exc.message}",
                field_errors={"datasets": [f"{reference}: {m}" for messages in
                                           exc.field_errors.values() for m in messages]}
            ) from None
    return Lineage(base_version=base_version, base_model=base_model,
                   base_model_digest=base_model_digest, datasets=tuple(sorted(unique)))


def store_lineage(version: ModelVersion, lineage: Lineage) -> None:
    """Write `lineage` onto a saved version (inside the caller's transaction)."""
    version.base_version = lineage.base_version
    version.base_model = lineage.base_model
    version.base_model_digest = lineage.base_model_digest
    full_clean_or_refuse(version)
    ModelVersion.objects.filter(pk=version.pk).update(
        base_version=lineage.base_version, base_model=lineage.base_model,
        base_model_digest=lineage.base_model_digest)
    DatasetReference.objects.filter(version=version).delete()
    DatasetReference.objects.bulk_create(
        DatasetReference(version=version, identifier=i, digest=d) for i, d in lineage.datasets)


def version_set_lineage(*, actor, version: ModelVersion, base_version: ModelVersion | None,
                        base_model: str = "", base_model_digest: str = "",
                        datasets: Iterable[tuple[str, str]] = ()) -> ModelVersion:
    """Correct a version's lineage (any status: lineage describes where the weights came
    from, not what was signed). Audited with the lineage before and after.

    Corrections are serialized by the LINEAGE lock (taken before the row lock and the audit
    chain's): the cycle check walks the base versions as stored, and two corrections at once
    (X from Y, Y from X) would each find no cycle in what the other had not committed yet.
    Creating a version needs no lock: nothing derives from a row that doesn't exist yet."""
    with transaction.atomic():
        locks.hold(locks.LINEAGE)
        version = ModelVersion.objects.select_for_update(of=("self",)).select_related("model").get(
            pk=version.pk)
        before = lineage_of(version)
        lineage = make_lineage(version=version, base_version=base_version,
                               base_model=base_model, base_model_digest=base_model_digest,
                               datasets=datasets)
        if lineage.as_dict() == before.as_dict():
            return version
        store_lineage(version, lineage)
        audit.record(action="model_version.lineage_changed", actor=actor, target=version,
                     details={"model": version.model.slug, "version": version.version,
                              "before": before.as_dict(), "after": lineage.as_dict()})
    version.refresh_from_db()
    return version


def provenance_export(*, actor, kind: str, identifier: str, digest: str = "") -> bytes:
    """Answer a provenance query and sign the answer (a DSSE envelope around an in-toto
    Statement, see `models_catalog.provenance`); the export is audited with its digest."""
    from models_catalog.provenance import evidence_envelope, provenance_query

    answer = provenance_query(kind=kind, identifier=identifier, digest=digest)
    envelope = evidence_envelope(answer, exported_by=getattr(actor, "email", "") or "")
    data = json.dumps(envelope, indent=1).encode() + b"\n"
    with transaction.atomic():
        audit.record(action="provenance.exported", actor=actor, details={
            **answer.query.as_dict(), "versions": len(answer.versions),
            "deployments": len(answer.deployments), "tenants": len(answer.tenants),
            "sha256": hashlib.sha256(data).hexdigest()})
    return data
