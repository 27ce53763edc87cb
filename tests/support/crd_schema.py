"""What a Kubernetes API server does with a custom resource, against the CRD's own schema.

KServe's CRDs (v0.20.0, kept in `tests/support/crds/`, see the README there) carry structural
`openAPIV3Schema`s. For a create or update the API server (apiextensions-apiserver) prunes
fields the schema does not know, drops nulls of non-nullable fields, applies `default`s and
then validates: `type`, `required`, `enum`, `pattern`, lengths and bounds, `nullable`,
`additionalProperties`, `x-kubernetes-int-or-string`, `x-kubernetes-list-type` (set/map
uniqueness) and the CEL rules of `x-kubernetes-validations`.

`admit(body)` does the same: it returns the object as the API server would store it, the
fields it would prune (silently, on a real cluster: the sender's intent is lost) and the errors
it would refuse the object with. `problems(body)` lists both kinds; empty means a v0.20 API
server stores exactly what was sent. jsonschema does the standard keywords; the Kubernetes
extensions are added to its Draft 4 validator here, CEL through `tests.support.cel`.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jsonschema
from jsonschema import Draft4Validator

from tests.support import cel

CRD_DIR = Path(__file__).resolve().parent / "crds"
OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields", "selfLink"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Crd:
    name: str
    group: str
    kind: str
    plural: str
    source: dict
    schemas: dict  # version → openAPIV3Schema


@cache
def crds() -> dict[tuple[str, str], Crd]:
    """(group/version, kind) → CRD, for every version kept in tests/support/crds."""
    found = {}
    for path in sorted(CRD_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        crd = data["crd"]
        entry = Crd(name=crd["name"], group=crd["group"], kind=crd["kind"],
                    plural=crd["plural"], source=data["source"],
                    schemas={v["name"]: v["openAPIV3Schema"] for v in crd["versions"]})
        for version in entry.schemas:
            found[(f"{crd['group']}/{version}", crd["kind"])] = entry
    return found


def crd_for_path(path: str) -> tuple[Crd, str] | None:
    """The CRD and version an API path (`/apis/<group>/<version>/namespaces/<ns>/<plural>…`)
    addresses, or None."""
    parts = path.strip("/").split("/")
    if len(parts) < 6 or parts[0] != "apis" or parts[3] != "namespaces":
        return None
    for crd in crds().values():
        if crd.group == parts[1] and crd.plural == parts[5] and parts[2] in crd.schemas:
            return crd, parts[2]
    return None


# --- the validator: Draft 4 plus the Kubernetes extensions ---------------------------------

def _type(validator, types, instance, schema):
    if instance is None and schema.get("nullable"):
        return
    yield from Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


def _int_or_string(validator, value, instance, schema):
    # Quantities also spell it as anyOf [integer, string], which reports the error already.
    if value and "anyOf" not in schema and not (instance is None and schema.get("nullable")) \
            and (
            isinstance(instance, bool) or not isinstance(instance, int | str)):
        yield jsonschema.ValidationError(f"{instance!r} is neither an integer nor a string")


def _list_type(validator, value, instance, schema):
    if not isinstance(instance, list):
        return
    if value == "set":
        seen = [json.dumps(item, sort_keys=True) for item in instance]
        if len(set(seen)) != len(seen):
            yield jsonschema.ValidationError("duplicate entries in a list of type set")
    elif value == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = [tuple(json.dumps(item.get(k)) for k in keys)
                for item in instance if isinstance(item, dict)]
        if len(set(seen)) != len(seen):
            yield jsonschema.ValidationError(f"duplicate entries for map keys {keys}")


def _cel_rules(validator, rules, instance, schema):
    if instance is None:
        return
    for rule in rules:
        try:
            ok = cel.evaluate(rule["rule"], instance)
        except cel.CelError as exc:
            yield jsonschema.ValidationError(
                f"rule {rule['rule']!r} could not be evaluated: {exc}")
            continue
        if ok is not True:
            yield jsonschema.ValidationError(
                rule.get("message") or f"failed rule: {rule['rule']}")


StructuralValidator = jsonschema.validators.extend(Draft4Validator, {
    "type": _type,
    "x-kubernetes-int-or-string": _int_or_string,
    "x-kubernetes-list-type": _list_type,
    "x-kubernetes-validations": _cel_rules,
})


# --- pruning and defaulting ----------------------------------------------------------------

def _path(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _prune(value, schema: dict, parts: list, pruned: list[str]):
    """`value` without what the schema does not know; what went is added to `pruned`."""
    if value is None:
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return value
        return [_prune(item, items, [*parts, i], pruned) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    kept = {}
    for key, item in value.items():
        here = [*parts, key]
        sub = (properties or {}).get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is not None:
            if item is None and not sub.get("nullable"):
                pruned.append(f"{_path(here)}: null is dropped (not nullable)")
                continue
            kept[key] = _prune(item, sub, here, pruned)
        elif preserve or additional is True or (embedded and key in (
                "apiVersion", "kind", "metadata")):
            kept[key] = item
        else:
            pruned.append(f"{_path(here)}: not in the schema, pruned")
    return kept


def _default(value, schema: dict) -> None:
    """Apply `default`s in place where a property is absent (as the API server does)."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])
        return
    if not isinstance(value, dict):
        return
    for key, sub in (schema.get("properties") or {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            _default(value[key], sub)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for key, item in value.items():
            if key not in (schema.get("properties") or {}):
                _default(item, additional)


def _metadata_problems(meta, *, namespaced: bool) -> list[str]:
    if not isinstance(meta, dict):
        return [".metadata: required"]
    out = [f".metadata.{key}: not a field of ObjectMeta, pruned"
           for key in meta if key not in OBJECT_META_FIELDS]
    name = meta.get("name", "")
    if not name or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        out.append(f".metadata.name: {name!r} is not a DNS subdomain")
    namespace = meta.get("namespace")
    if namespaced and namespace is not None and not DNS_LABEL.match(namespace or ""):
        out.append(f".metadata.namespace: {namespace!r} is not a DNS label")
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            out.append(f".metadata.labels.{key}: {value!r} is not a label value")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            out.append(f".metadata.annotations.{key}: must be a string")
    return out


@dataclass
class Admission:
    stored: dict  # what the API server would keep: pruned and defaulted
    pruned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.pruned + self.errors


def admit(body: dict) -> Admission:
    """Prune, default and validate `body` as a KServe v0.20 API server would."""
    key = (body.get("apiVersion"), body.get("kind"))
    crd = crds().get(key)
    if crd is None:
        return Admission(stored=body, errors=[f"no CRD serves {key[1]} in {key[0]}"])
    schema = crd.schemas[key[0].split("/", 1)[1]]
    pruned: list[str] = []
    stored = {"apiVersion": body["apiVersion"], "kind": body["kind"],
              "metadata": copy.deepcopy(body.get("metadata"))}
    rest = {k: v for k, v in body.items() if k not in stored}
    stored.update(_prune(copy.deepcopy(rest), schema, [], pruned))
    errors = _metadata_problems(stored["metadata"], namespaced=True)
    _default(stored, schema)
    for error in StructuralValidator(schema).iter_errors(
            {k: v for k, v in stored.items() if k != "metadata"}):
        errors.append(f"{_path(error.absolute_path) or '.'}: {error.message}")
    return Admission(stored=stored, pruned=pruned, errors=sorted(errors))


def problems(body: dict) -> list[str]:
    """Every field a v0.20 API server would prune or refuse; empty when it keeps it all."""
    return admit(body).problems
