"""Every entry of the beat schedule names a task a worker knows. A wrong name fails quietly in
production: beat sends the message and the worker drops it as unregistered."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

# What a worker registers: the Celery app loaded the way `celery -A portal worker` loads it
# (Django set up, then the app's imports and autodiscovery), in a fresh interpreter so that
# nothing this test session imported counts.
WORKER_TASKS = """
import json, django
django.setup()
from portal.celery import app
app.loader.import_default_modules()
print(json.dumps(sorted(name for name in app.tasks if not name.startswith("celery."))))
"""


def test_every_beat_entry_names_a_task_the_worker_registers():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    out = subprocess.run([sys.executable, "-c", WORKER_TASKS], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    registered = set(json.loads(out.stdout.strip().splitlines()[-1]))

    scheduled = {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}

    assert scheduled  # the schedule is read from settings, not an empty stand-in
    assert {name: task for name, task in scheduled.items() if task not in registered} == {}
