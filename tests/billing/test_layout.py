"""Billing's packages are wired the way Django and Celery find them: every task of every
package is registered by Celery's autodiscovery alone, and the models, which moved between
modules, need no migration."""

import ast
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]

# What a worker registers: the Celery app loaded the way `celery -A portal worker` loads it, in
# a fresh interpreter, so that nothing this test session imported counts.
WORKER_TASKS = """
import json, django
django.setup()
from portal.celery import app
app.loader.import_default_modules()
print(json.dumps(sorted(app.tasks)))
"""


def _task_names(path: Path) -> list[str]:
    """The names the `@shared_task(name=...)` functions of a module register under."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call)
                        and getattr(decorator.func, "id", "") == "shared_task"):
                    given = {k.arg: k.value.value for k in decorator.keywords if k.arg == "name"}
                    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                    names.append(given.get("name", f"{module}.{node.name}"))
    return names


def test_celery_registers_every_billing_task_without_a_hand_import():
    declared = [name for path in (ROOT / "billing").rglob("tasks.py")
                for name in _task_names(path)]
    assert len(declared) >= 5
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    out = subprocess.run([sys.executable, "-c", WORKER_TASKS], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    registered = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert sorted(set(declared) - registered) == []
    apps_py = (ROOT / "billing" / "apps.py").read_text()
    assert "tasks" not in apps_py  # found by autodiscovery (billing/tasks.py), not by hand


@pytest.mark.django_db
def test_the_models_need_no_migration():
    out = StringIO()
    call_command("makemigrations", "billing", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
