"""Check a manifest against KServe's own published v1beta1 API types.

KServe publishes its API types as the generated OpenAPI models of its Python SDK (the `kserve`
wheel on PyPI). The SDK's runtime dependencies are heavy (numpy, pandas, grpc), so
`scripts/test.sh` downloads only the wheel (`pip download --no-deps`) and this module reads the
model classes' `openapi_types` / `attribute_map` and required-field checks with `ast`, without
importing them. `V1*` types (ObjectMeta, ResourceRequirements) are Kubernetes' own and come
from the installed `kubernetes` client.

`problems(manifest)` returns every field that is not in the API, has the wrong type, or is
required and missing — an empty list means KServe's types accept the manifest.

The v0.20.0 wheel carries `V1alpha2LLMInferenceService` and `…Config` but not the
`V1alpha2LLMInferenceServiceSpec` they refer to (`UNPUBLISHED`): for those kinds the types check
the envelope and `metadata`, and `spec` is left to the CRD schema (`tests.support.crd_schema`),
which controller-gen generates from the same Go types.
"""

from __future__ import annotations

import ast
import os
import re
import zipfile
from functools import cache
from pathlib import Path

import kubernetes.client

KSERVE_VERSION = "0.20.0"
WHEEL_ENV = "KSERVE_SDK_WHEEL"


def wheel_path() -> Path:
    path = Path(os.environ.get(WHEEL_ENV) or Path(__file__).resolve().parents[2] / "var"
                / "kserve-sdk" / f"kserve-{KSERVE_VERSION}-py3-none-any.whl")
    if not path.is_file():
        raise RuntimeError(f"KServe's SDK wheel is missing at {path}: scripts/test.sh downloads "
                           f"it (pip download --no-deps kserve=={KSERVE_VERSION}).")
    return path


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@cache
def _kserve_models() -> dict[str, tuple[dict, dict, set]]:
    """class name → (openapi_types, attribute_map, required python attributes)."""
    models = {}
    with zipfile.ZipFile(wheel_path()) as wheel:
        for name in wheel.namelist():
            if not re.fullmatch(r"kserve/models/v1(?:beta1|alpha2)_\w+\.py", name):
                continue
            source = wheel.read(name).decode()
            for node in ast.parse(source).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                found = {}
                for item in node.body:
                    if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name) \
                            and item.targets[0].id in {"openapi_types", "attribute_map"}:
                        found[item.targets[0].id] = ast.literal_eval(item.value)
                required = set(re.findall(
                    r"client_side_validation and (\w+) is None:", source))
                if len(found) == 2:
                    models[node.name] = (found["openapi_types"], found["attribute_map"],
                                         required)
    if "V1beta1CanarySpec" not in models:
        raise RuntimeError("This KServe SDK has no V1beta1CanarySpec: it is not v0.20.")
    return models


# Types the wheel's models refer to but do not define.
UNPUBLISHED = {"V1alpha2LLMInferenceServiceSpec"}
ROOT_TYPES = {"InferenceService": "V1beta1InferenceService",
              "LLMInferenceService": "V1alpha2LLMInferenceService",
              "LLMInferenceServiceConfig": "V1alpha2LLMInferenceServiceConfig"}


def _schema(type_name: str) -> tuple[dict, dict, set]:
    if type_name.startswith(("V1beta1", "V1alpha2")):
        return _kserve_models()[type_name]
    cls = getattr(kubernetes.client, type_name)
    return cls.openapi_types, cls.attribute_map, set()


def _normalise(type_name: str) -> str:
    """The SDKs spell containers `list[T]`/`dict(K, V)` or, newer, `List[T]`/`Dict[K, V]`."""
    match = re.fullmatch(r"(?:Dict\[|dict\()\w+, (.+)[\])]", type_name)
    if match:
        return f"dict(str, {match.group(1)})"
    match = re.fullmatch(r"[Ll]ist\[(.+)\]", type_name)
    return f"list[{match.group(1)}]" if match else type_name


def _check(value, type_name: str, path: str, out: list[str]) -> None:
    type_name = _normalise(type_name)
    if type_name.startswith("list["):
        if not isinstance(value, list):
            out.append(f"{path}: expected a list")
            return
        for index, item in enumerate(value):
            _check(item, type_name[5:-1], f"{path}[{index}]", out)
        return
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            out.append(f"{path}: expected a map")
            return
        for key, item in value.items():
            _check(item, inner, f"{path}.{key}", out)
        return
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float)}.get(type_name)
    if scalar is not None:
        if not isinstance(value, scalar) or (scalar is int and isinstance(value, bool)):
            out.append(f"{path}: expected {type_name}, got {type(value).__name__}")
        return
    if type_name == "object" or type_name in UNPUBLISHED:
        return
    if not isinstance(value, dict):
        out.append(f"{path}: expected an object of {type_name}")
        return
    types, attribute_map, required = _schema(type_name)
    json_to_attr = {json: attr for attr, json in attribute_map.items()}
    for key, item in value.items():
        attr = json_to_attr.get(key)
        if attr is None:
            out.append(f"{path}.{key}: not a field of {type_name}")
            continue
        _check(item, types[attr], f"{path}.{key}", out)
    for attr in required:
        if attribute_map.get(attr, attr) not in value:
            out.append(f"{path}.{attribute_map.get(attr, _snake(attr))}: required by "
                       f"{type_name}")


def problems(manifest: dict) -> list[str]:
    out: list[str] = []
    _check(manifest, ROOT_TYPES[manifest.get("kind")], "", out)
    return out
