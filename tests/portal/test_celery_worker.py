"""A real Celery worker process, fed through the real Redis broker, does the background work."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tenants import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(tmp_path, transactional_db):
    mail_dir = tmp_path / "mail"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
                        f"{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "EMAIL_URL": f"filemail:///{mail_dir}",
        "PORTAL_BASE_URL": "https://portal.example.test",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield mail_dir, process
    process.terminate()
    process.wait(timeout=20)


def test_invitation_email_is_sent_by_the_worker(worker, msp_admin, tenant):
    mail_dir, process = worker
    _invitation, token = services.invitation_create(actor=msp_admin, tenant=tenant,
                                                    email="new@acme.test", role="developer")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (mail_dir.exists() and any(mail_dir.iterdir())):
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.25)
    files = list(mail_dir.iterdir()) if mail_dir.exists() else []
    assert files, "the worker did not send the invitation within 60 s"
    message = files[0].read_text()
    assert "To: new@acme.test" in message
    assert f"https://portal.example.test/invitations/{token}/" in message
