"""Provenance queries: which versions, deployments and tenants derive from X — a dataset, an
external base model, or a catalog version — transitively through base-model chains.

The catalog answers for its versions; who runs them is owned by other apps, which register a
*downstream provider* in their `AppConfig.ready()` (deployments names its deployments and the
tenants they serve), so the catalog never imports them. The answer can be exported as signed
evidence: an in-toto Statement in a DSSE envelope signed with the platform key
(`models_catalog.provenance_verify` checks it offline).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from models_catalog.models import DatasetReference, ModelVersion
from models_catalog.provenance_verify import (
    DSSE_PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    pae,
)
from portal import signing
from portal.api import ApplicationError

MAX_DEPTH = 64  # base-model chains longer than this are cut (and say so)


class ProvenanceKind(models.TextChoices):
    DATASET = "dataset", "Dataset"
    BASE_MODEL = "base_model", "External base model"
    VERSION = "version", "Catalog version"


@dataclass(frozen=True)
class ProvenanceQuery:
    kind: str
    identifier: str
    digest: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "identifier": self.identifier, "digest": self.digest}

    def describe(self) -> str:
        what = ProvenanceKind(self.kind).label.lower()
        return f"{what} “{self.identifier}”" + (f" ({self.digest})" if self.digest else "")


@dataclass
class DerivedVersion:
    version: ModelVersion
    depth: int  # 0: references X itself (or is X); n: through n base-version links
    derives_from: str  # what it names that makes it downstream of X

    def as_dict(self) -> dict[str, Any]:
        v = self.version
        return {"model": v.model.slug, "version": v.version, "status": v.status,
                "artifact_kind": v.artifact_kind, "depth": self.depth,
                "derives_from": self.derives_from,
                "repository": v.trusted_repository or v.landing_repository,
                "manifest_digest": v.manifest_digest}


@dataclass
class Downstream:
    """What another app reports for a set of versions: deployments running them and the
    tenants those deployments serve (each with why)."""

    deployments: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProvenanceAnswer:
    query: ProvenanceQuery
    versions: list[DerivedVersion]
    deployments: list[dict[str, Any]]
    tenants: list[dict[str, Any]]
    answered_at: datetime
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query.as_dict(), "answered_at": self.answered_at.isoformat(),
                "versions": [v.as_dict() for v in self.versions],
                "deployments": self.deployments, "tenants": self.tenants,
                "chain_cut_at_depth": MAX_DEPTH if self.truncated else None}


DownstreamProvider = Callable[[list[ModelVersion]], Downstream]
_providers: list[DownstreamProvider] = []


def register_downstream(provider: DownstreamProvider) -> DownstreamProvider:
    if provider not in _providers:
        _providers.append(provider)
    return provider


def _versions():
    return ModelVersion.objects.select_related("model", "base_version__model")


def _roots(query: ProvenanceQuery) -> list[DerivedVersion]:
    identifier, digest = query.identifier.strip(), query.digest.strip()
    if query.kind == ProvenanceKind.DATASET:
        refs = DatasetReference.objects.filter(identifier=identifier)
        if digest:
            refs = refs.filter(digest=digest)
        # Versions from before lineage references named their data in `training_data`.
        legacy = Q() if digest else Q(training_data=identifier)
        found = _versions().filter(Q(pk__in=refs.values("version_id")) | legacy)
        return [DerivedVersion(v, 0, f"dataset {identifier}" + (f" ({digest})" if digest
                                                                   else "")) for v in found]
    if query.kind == ProvenanceKind.BASE_MODEL:
        found = _versions().filter(base_model=identifier)
        if digest:
            found = found.filter(base_model_digest=digest)
        return [DerivedVersion(v, 0, f"base model {v.base_model}"
                               + (f" ({v.base_model_digest})" if v.base_model_digest else ""))
                for v in found]
    if query.kind == ProvenanceKind.VERSION:
        slug, _, label = identifier.partition(":")
        version = _versions().filter(model__slug=slug, version=label).first()
        if version is None:
            raise ApplicationError(
                f"No catalog version “{identifier}”: name it as <model slug>:<version>.",
                field_errors={"identifier": ["No such catalog version."]})
        if digest and version.manifest_digest != digest:
            raise ApplicationError(
                f"{identifier} has the digest {version.manifest_digest or '(none yet)'}, "
                f"not {digest}.", field_errors={"digest": ["Not this version's digest."]})
        return [DerivedVersion(version, 0, "is the version asked about")]
    raise ApplicationError("Ask about a dataset, an external base model or a catalog version.",
                           field_errors={"kind": ["Unknown kind."]})


def provenance_query(*, kind: str, identifier: str, digest: str = "") -> ProvenanceAnswer:
    """Every version downstream of X (breadth first through base-version links), and what
    the registered providers say runs them."""
    if not identifier.strip():
        raise ApplicationError("Name what to trace.",
                               field_errors={"identifier": ["This field is required."]})
    query = ProvenanceQuery(kind=kind, identifier=identifier.strip(), digest=digest.strip())
    found: dict[int, DerivedVersion] = {}
    frontier = []
    for derived in _roots(query):
        found.setdefault(derived.version.pk, derived)
    frontier = list(found)
    depth, truncated = 0, False
    while frontier:
        depth += 1
        if depth > MAX_DEPTH:
            truncated = True
            break
        children = [v for v in _versions().filter(base_version_id__in=frontier)
                    if v.pk not in found]
        for child in children:
            found[child.pk] = DerivedVersion(child, depth, f"base version {child.base_version}")
        frontier = [child.pk for child in children]
    versions = sorted(found.values(), key=lambda d: (d.depth, d.version.model.slug,
                                                     d.version.version))
    downstream = Downstream()
    for provider in _providers:
        answer = provider([d.version for d in versions])
        downstream.deployments += answer.deployments
        downstream.tenants += answer.tenants
    return ProvenanceAnswer(query=query, versions=versions, deployments=downstream.deployments,
                            tenants=_merge_tenants(downstream.tenants),
                            answered_at=timezone.now(), truncated=truncated)


def _merge_tenants(tenants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for tenant in tenants:
        entry = merged.setdefault(tenant["slug"], {**tenant, "via": []})
        for via in tenant.get("via", []):
            if via not in entry["via"]:
                entry["via"].append(via)
    return sorted(merged.values(), key=lambda t: t["slug"])


# --- Signed evidence -----------------------------------------------------------------------

def _subjects(answer: ProvenanceAnswer) -> list[dict[str, Any]]:
    subjects = []
    for derived in answer.versions:
        v = derived.version
        if v.manifest_digest:
            subjects.append({"name": f"{v.trusted_repository or v.landing_repository}"
                                     f"@{v.manifest_digest}",
                             "digest": {"sha256": v.manifest_digest.split(":", 1)[1]}})
    if not subjects:  # in-toto wants a subject: then the question itself is it
        question = json.dumps(answer.query.as_dict(), sort_keys=True).encode()
        subjects.append({"name": "provenance-query",
                         "digest": {"sha256": hashlib.sha256(question).hexdigest()}})
    return subjects


def evidence_envelope(answer: ProvenanceAnswer, *, exported_by: str) -> dict[str, Any]:
    """The answer as an in-toto Statement in a DSSE envelope, signed with the platform key."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": _subjects(answer),
        "predicateType": PREDICATE_TYPE,
        "predicate": {**answer.as_dict(), "exported_by": exported_by,
                      "key_id": signing.platform_key_id()},
    }
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode()
    return {"payloadType": DSSE_PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": signing.platform_key_id(),
                            "sig": signing.sign(pae(DSSE_PAYLOAD_TYPE, payload))}]}
