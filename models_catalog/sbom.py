"""CycloneDX 1.6 ML-BOM of a ModelCar: the image, the model with its model card, every file.

cyclonedx-python-lib 11 knows the `machine-learning-model` component type but not yet the
`modelCard` object, so the card is added to the serialized JSON and the result is checked
with the library's strict 1.6 JSON-schema validator (offline, the schema ships with it)
before it is returned.

The card is filled from the model, the version's lineage and the model's EU AI Act Annex XII
information: every section of the 1.6 `modelCard` the platform has facts for —
`modelParameters` (approach, task, architecture family and architecture, datasets, input and
output formats), `considerations` (users, use cases, technical limitations, environmental
considerations with the training energy) and `properties` for what 1.6 has no field for
(acceptable use, parameter count, context window, licence, source commit, hyperparameters).
`quantitativeAnalysis` is left out: the platform measures no model quality, and a card states
no invented metric.

The lineage is CycloneDX data, not properties: each dataset reference is a `data` component
(identifier, digest as a CycloneDX hash) that `modelCard.modelParameters.datasets` refers to
by bom-ref, and the base model — a catalog version or an external model — is the model's
`pedigree.ancestors` entry, with its digest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from models_catalog.scanning.report import ScanReport

WEIGHT_FORMATS = frozenset({"safetensors", "gguf", "pickle", "pytorch_zip", "pytorch_legacy",
                            "numpy", "numpy_object", "numpy_npz"})
PROPERTY_PREFIX = "sovereign-portal"


class SbomError(Exception):
    """The SBOM failed schema validation (a bug: the message names the problem)."""


def _oci_purl(image_reference: str, manifest_digest: str) -> PackageURL:
    """pkg:oci/<name>@sha256:<hex>?repository_url=<registry>/<repository> (the purl spec's
    form for OCI images: pinned by digest, the tag left out)."""
    repository = image_reference.split("@", 1)[0]
    head, _, last = repository.rpartition("/")
    if ":" in last:  # a tag, not part of the name
        repository = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    name = repository.rsplit("/", 1)[-1].lower()
    return PackageURL(type="oci", name=name, version=manifest_digest,
                      qualifiers={"repository_url": repository})


def _attr(obj: Any, name: str, default: Any = "") -> Any:
    value = getattr(obj, name, default) if obj is not None else default
    return default if value is None else value


def build_sbom(*, model: Any, image_reference: str, manifest_digest: str,
               report: ScanReport, version: Any = None, annex_xii: Any = None) -> str:
    """The SBOM as validated JSON text."""
    image = Component(
        type=ComponentType.CONTAINER, name=image_reference.split("@", 1)[0],
        version=manifest_digest, bom_ref="image",
        purl=_oci_purl(image_reference, manifest_digest),
        hashes=[HashType(alg=HashAlgorithm.SHA_256,
                         content=manifest_digest.removeprefix("sha256:"))])
    files = []
    for entry in report.files:
        kind = (ComponentType.MACHINE_LEARNING_MODEL if entry.format in WEIGHT_FORMATS
                else ComponentType.FILE)
        files.append(Component(
            type=kind, name=entry.path, bom_ref=f"file:{entry.path}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=entry.sha256)],
            properties=[Property(name=f"{PROPERTY_PREFIX}:format", value=entry.format),
                        Property(name=f"{PROPERTY_PREFIX}:size", value=str(entry.size))]))
    label = str(_attr(version, "version", "")) or None
    model_component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=str(_attr(model, "slug")),
        version=label, bom_ref="model", description=str(_attr(model, "description")) or None,
        publisher=str(_attr(model, "provider")) or None, components=files)
    bom = Bom(components=[model_component])
    bom.metadata.component = image
    bom.metadata.properties.update([
        Property(name=f"{PROPERTY_PREFIX}:scan:verdict", value=report.verdict),
        Property(name=f"{PROPERTY_PREFIX}:scan:policy", value=report.policy),
        Property(name=f"{PROPERTY_PREFIX}:scan:passes_policy",
                 value=str(report.passes_policy).lower()),
    ])
    bom.register_dependency(image, [model_component])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    datasets = _dataset_components(version)
    for component in document.get("components", []):
        if component.get("bom-ref") == "model":
            component["modelCard"] = _model_card(model, version, annex_xii,
                                                 dataset_refs=[d["bom-ref"] for d in datasets])
            license_name = str(_attr(model, "license"))
            if license_name:
                component["licenses"] = [{"license": {"name": license_name}}]
            ancestor = _base_model_component(version)
            if ancestor is not None:
                component["pedigree"] = {"ancestors": [ancestor]}
    document.setdefault("components", []).extend(datasets)
    text = json.dumps(document, indent=2, sort_keys=True)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"The SBOM does not validate against CycloneDX 1.6: {error}")
    return text


# CycloneDX's hash algorithms by the names lineage digests use (`algorithm:value`, lower case,
# without separators), and the hex length each has.
HASH_ALGORITHMS = {"md5": ("MD5", 32), "sha1": ("SHA-1", 40), "sha256": ("SHA-256", 64),
                   "sha384": ("SHA-384", 96), "sha512": ("SHA-512", 128),
                   "sha3256": ("SHA3-256", 64), "sha3384": ("SHA3-384", 96),
                   "sha3512": ("SHA3-512", 128), "blake2b256": ("BLAKE2b-256", 64),
                   "blake2b384": ("BLAKE2b-384", 96), "blake2b512": ("BLAKE2b-512", 128),
                   "blake3": ("BLAKE3", 64)}
HEX_DIGITS = frozenset("0123456789abcdef")
LINEAGE_PREFIX = f"{PROPERTY_PREFIX}:lineage"


def _digest_fields(digest: str) -> dict[str, Any]:
    """A lineage digest as CycloneDX `hashes` when it is one of CycloneDX's algorithms in hex;
    anything else (`git:<commit>`, base64 values) as a property that keeps it verbatim."""
    if not digest:
        return {}
    algorithm, _, value = digest.partition(":")
    known = HASH_ALGORITHMS.get("".join(c for c in algorithm.lower() if c.isalnum()))
    value = value.lower()
    if known and len(value) == known[1] and set(value) <= HEX_DIGITS:
        return {"hashes": [{"alg": known[0], "content": value}]}
    return {"properties": [{"name": f"{LINEAGE_PREFIX}:digest", "value": digest}]}


def _dataset_components(version: Any) -> list[dict[str, Any]]:
    """One `data` component per dataset reference of the version (identifier and digest)."""
    references = _attr(version, "datasets", ()) or ()
    if hasattr(references, "all"):  # a related manager
        references = references.all()
    unique = sorted({(str(r.identifier), str(r.digest or "")) for r in references})
    return [{"type": "data", "bom-ref": f"dataset:{index}", "name": identifier,
             "data": [{"type": "dataset", "name": identifier}], **_digest_fields(digest)}
            for index, (identifier, digest) in enumerate(unique, start=1)]


def _base_model_component(version: Any) -> dict[str, Any] | None:
    """The base model as a pedigree ancestor: a catalog version by model slug, version label
    and image digest, or an external model by identifier and digest."""
    base = _attr(version, "base_version", None)
    if base is not None:
        slug, label = str(_attr(base.model, "slug")), str(_attr(base, "version"))
        digest = _digest_fields(str(_attr(base, "manifest_digest")))
        digest["properties"] = [*digest.get("properties", []), {
            "name": f"{LINEAGE_PREFIX}:base_version", "value": f"{slug}:{label}"}]
        return {"type": "machine-learning-model", "bom-ref": "base-model", "name": slug,
                "version": label, "description": f"Catalog version {slug}:{label}", **digest}
    name = str(_attr(version, "base_model"))
    if not name:
        return None
    return {"type": "machine-learning-model", "bom-ref": "base-model", "name": name,
            "description": "External base model",
            **_digest_fields(str(_attr(version, "base_model_digest")))}


# What a task's model reads and writes when the Annex XII information names no modality.
TASK_FORMATS = {"chat": ("text", "text"), "completion": ("text", "text"),
                "embeddings": ("text", "embedding vector")}
ANNEX_PREFIX = f"{PROPERTY_PREFIX}:annex-xii"


def _formats(value: str, default: str) -> list[dict[str, str]]:
    names = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return [{"format": name} for name in names or [default]]


def _model_parameters(model: Any, version: Any, annex: Any,
                      dataset_refs: Sequence[str]) -> dict[str, Any]:
    """The card's `modelParameters`: task, training approach, architecture family and
    architecture, datasets (the lineage's `data` components by bom-ref, then the training data
    as described) and input and output formats (the Annex XII modalities, else the task's)."""
    task = str(_attr(model, "task")) or "unknown"
    parameters: dict[str, Any] = {"task": task}
    approach = str(_attr(annex, "training_approach"))
    if approach:
        parameters["approach"] = {"type": approach}
    family = str(_attr(model, "provider"))
    if family:
        parameters["architectureFamily"] = family
    architecture = str(_attr(annex, "architecture"))
    if architecture:
        parameters["modelArchitecture"] = architecture
    training_data = str(_attr(version, "training_data"))
    data_summary = str(_attr(annex, "training_data_summary"))
    datasets: list[dict[str, Any]] = [{"ref": ref} for ref in dataset_refs]
    if training_data or data_summary:
        dataset: dict[str, Any] = {"type": "dataset",
                                   "name": training_data or "Training data"}
        if data_summary:
            dataset["description"] = data_summary
        datasets.append(dataset)
    if datasets:
        parameters["datasets"] = datasets
    input_format, output_format = TASK_FORMATS.get(task, ("text", "text"))
    parameters["inputs"] = _formats(str(_attr(annex, "input_modalities")), input_format)
    parameters["outputs"] = _formats(str(_attr(annex, "output_modalities")), output_format)
    return parameters


def _card_properties(model: Any, version: Any, annex: Any) -> list[dict[str, str]]:
    """The card's `properties`, for what CycloneDX 1.6 has no field for: lineage (base model,
    source commit, hyperparameters), the context length and the Annex XII values."""
    properties = []
    # The base model's name also stays a property, as SBOMs carried it before the pedigree did,
    # so readers of those keep finding it.
    for field in ("base_model", "source_commit"):
        value = str(_attr(version, field))
        if value:
            properties.append({"name": f"{LINEAGE_PREFIX}:{field}", "value": value})
    hyperparameters = _attr(version, "hyperparameters", {}) or {}
    if hyperparameters:
        properties.append({"name": f"{LINEAGE_PREFIX}:hyperparameters",
                           "value": json.dumps(hyperparameters, sort_keys=True)})
    context_length = _attr(model, "context_length", None)
    if context_length:
        properties.append({"name": f"{PROPERTY_PREFIX}:context_length",
                           "value": str(context_length)})
    annex_values = {
        "acceptable_use": str(_attr(annex, "acceptable_use")),
        "parameter_count": str(_attr(annex, "parameter_count", "") or ""),
        "context_window": str(context_length or ""),
        "license": str(_attr(model, "license")),
        "intended_tasks": str(_attr(annex, "intended_tasks")),
    }
    properties += [{"name": f"{ANNEX_PREFIX}:{name}", "value": value}
                   for name, value in annex_values.items() if value]
    return properties


def _considerations(model: Any, annex: Any) -> dict[str, Any]:
    """The card's `considerations`: who may deploy the model, its use cases, its technical
    limitations and the training energy; only the sections with facts."""
    considerations: dict[str, Any] = {}
    available_to_all = _attr(model, "available_to_all_tenants", None)
    if available_to_all is not None:
        considerations["users"] = [
            "Deployers: every tenant of the platform" if available_to_all
            else "Deployers: the tenants of the platform entitled to the model"]
    intended = str(_attr(annex, "intended_tasks"))
    summary = intended or str(_attr(model, "model_card")) or str(_attr(model, "description"))
    if summary:
        considerations["useCases"] = [summary[:2000]]
    limitations = str(_attr(annex, "limitations"))
    if limitations:
        considerations["technicalLimitations"] = [limitations]
    energy = _attr(annex, "training_energy_kwh", None)
    if energy is not None:
        considerations["environmentalConsiderations"] = {"energyConsumptions": [{
            "activity": "training", "energyProviders": [],
            "activityEnergyCost": {"value": float(energy), "unit": "kWh"}}]}
    return considerations


def _model_card(model: Any, version: Any, annex: Any = None, *,
                dataset_refs: Sequence[str] = ()) -> dict[str, Any]:
    """The CycloneDX 1.6 `modelCard` of the model component; sections without facts are left
    out."""
    parameters = _model_parameters(model, version, annex, dataset_refs)
    properties = _card_properties(model, version, annex)
    considerations = _considerations(model, annex)
    card: dict[str, Any] = {"bom-ref": "model-card", "modelParameters": parameters}
    if considerations:
        card["considerations"] = considerations
    if properties:
        card["properties"] = properties
    return card
