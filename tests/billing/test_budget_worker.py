"""A real Celery worker sends a budget alert's e-mail and webhook (retrying a failing
receiver with backoff), fed through the real Redis broker."""

import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from billing.budgets import services as budgets
from billing.models import WebhookDelivery
from billing.notifications import services as webhooks
from tests.billing.budget_helpers import event, ingest, make_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(500 if len(received) == 1 else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


@pytest.fixture
def worker(tmp_path, transactional_db):
    mail_dir = tmp_path / "mail"
    db = connection.settings_dict
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
                           f"{db['PORT']}/{db['NAME']}",
           "REDIS_URL": settings.REDIS_URL, "EMAIL_URL": f"filemail:///{mail_dir}",
           "BUDGET_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
           "BUDGET_WEBHOOK_RETRY_BASE_SECONDS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield mail_dir, process
    process.terminate()
    process.wait(timeout=20)


def test_worker_sends_the_alert_email_and_retries_the_webhook(worker, receiver, tenant,
                                                               tenant_admin, settings):
    import ipaddress

    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    mail_dir, process = worker
    url, received = receiver
    webhooks.webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="Ops", url=url)
    chat = make_model()
    budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Tokens", unit="tokens",
                          amount=Decimal(1500), thresholds=[100])
    ingest(event(tenant, chat))  # committed: the alert's tasks go to the broker

    deadline = time.monotonic() + 60
    delivery = None
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        delivery = WebhookDelivery.objects.first()
        mails = list(mail_dir.iterdir()) if mail_dir.exists() else []
        if delivery and delivery.status == "succeeded" and mails:
            break
        time.sleep(0.25)
    assert delivery is not None and delivery.status == "succeeded", delivery and vars(delivery)
    assert delivery.attempts == 2 and len(received) == 2
    message = mails[0].read_text()
    assert f"To: {tenant_admin.email}" in message
    assert "1500 of 1500 tokens used in the period" in message
    assert f"{settings.PORTAL_BASE_URL}/t/{tenant.slug}/budgets/" in message
