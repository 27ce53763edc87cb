"""The gateway reads other apps through their selectors (DESIGN.md, "Cross-app imports"): its
loader imports no other app's models, and it uses billing only through billing's interface for
it. Billing, which the gateway depends on, never imports the gateway (DESIGN.md's table)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OTHER_APPS = ("tenants", "models_catalog", "deployments", "billing", "audit")
# What the gateway may use of billing: the blocking budgets it enforces, the stream it writes
# usage events to, and the drain's listener registry (the keys' last use).
BILLING_FOR_THE_GATEWAY = ("billing.budgets.gateway", "billing.usage.events",
                           "billing.usage.drain")


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def _python_files(app: str):
    return [path for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts]


def test_the_gateways_loader_reads_other_apps_through_their_selectors():
    loader = ROOT / "gateway" / "directory.py"
    offending = [module for module in _imports(loader)
                 if module.split(".")[0] in OTHER_APPS and ".selectors." not in module
                 and not module.startswith(BILLING_FOR_THE_GATEWAY)]
    assert offending == []


def test_the_gateway_uses_billing_only_through_its_interface():
    offending = [f"{path.relative_to(ROOT)}: {module}"
                 for path in _python_files("gateway") for module in _imports(path)
                 if module.split(".")[0] == "billing"
                 and not module.startswith(BILLING_FOR_THE_GATEWAY)]
    assert offending == []


def test_billing_never_imports_the_gateway():
    offending = [f"{path.relative_to(ROOT)}: {module}"
                 for path in _python_files("billing") for module in _imports(path)
                 if module.split(".")[0] == "gateway"]
    assert offending == []
