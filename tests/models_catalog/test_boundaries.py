"""Other apps use the catalog through its services, selectors and models only (DESIGN.md,
"Cross-app imports"): never its signing, registry client, views or private helpers. `portal`
wires everything and may import anything."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ["tenants", "deployments", "gateway", "billing", "audit"]
PUBLIC = ("models_catalog.services", "models_catalog.selectors", "models_catalog.models")


def _catalog_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "models_catalog":
                yield from (f"models_catalog.{alias.name}" for alias in node.names)
            elif node.module.startswith("models_catalog."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("models_catalog."))


def test_other_apps_import_only_the_catalogs_public_modules():
    offending = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            offending += [f"{path.relative_to(ROOT)}: {module}"
                          for module in _catalog_imports(path)
                          if not module.startswith(PUBLIC)]
    assert offending == []
