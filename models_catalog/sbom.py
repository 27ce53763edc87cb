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
(acceptable use, parameter count, context window, licence, lineage). `quantitativeAnalysis`
is left out: the platform measures no model quality, and a card states no invented metric.
"""

from __future__ import annotations

import json
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
    for component in document.get("components", []):
        if component.get("bom-ref") == "model":
            component["modelCard"] = _model_card(model, version, annex_xii)
            license_name = str(_attr(model, "license"))
            if license_name:
                component["licenses"] = [{"license": {"name": license_name}}]
    text = json.dumps(document, indent=2, sort_keys=True)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"The SBOM does not validate against CycloneDX 1.6: {error}")
    return text


# What a task's model reads and writes when the Annex XII information names no modality.
TASK_FORMATS = {"chat": ("text", "text"), "completion": ("text", "text"),
                "embeddings": ("text", "embedding vector")}
ANNEX_PREFIX = f"{PROPERTY_PREFIX}:annex-xii"


def _formats(value: str, default: str) -> list[dict[str, str]]:
    names = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return [{"format": name} for name in names or [default]]


def _model_card(model: Any, version: Any, annex: Any = None) -> dict[str, Any]:
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
    if training_data or data_summary:
        dataset: dict[str, Any] = {"type": "dataset",
                                   "name": training_data or "Training data"}
        if data_summary:
            dataset["description"] = data_summary
        parameters["datasets"] = [dataset]
    input_format, output_format = TASK_FORMATS.get(task, ("text", "text"))
    parameters["inputs"] = _formats(str(_attr(annex, "input_modalities")), input_format)
    parameters["outputs"] = _formats(str(_attr(annex, "output_modalities")), output_format)

    properties = []
    for field in ("base_model", "source_commit"):
        value = str(_attr(version, field))
        if value:
            properties.append({"name": f"{PROPERTY_PREFIX}:lineage:{field}", "value": value})
    hyperparameters = _attr(version, "hyperparameters", {}) or {}
    if hyperparameters:
        properties.append({"name": f"{PROPERTY_PREFIX}:lineage:hyperparameters",
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

    card: dict[str, Any] = {"bom-ref": "model-card", "modelParameters": parameters}
    if considerations:
        card["considerations"] = considerations
    if properties:
        card["properties"] = properties
    return card
