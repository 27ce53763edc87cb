"""Deprecations that reach people: a deprecation with a sunset date tells every tenant whose
keys used the model (or version) in the last 90 days — in the portal, by e-mail and through
its webhooks — once, through a Celery task; each notice is audited."""

import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

from audit.models import AuditEvent
from billing.models import DeprecationNotice, Notification, WebhookDelivery
from billing.notifications.models import WebhookEndpoint
from billing.notifications.tasks import deprecation_notice_email, deprecation_notify
from deployments.models import Backend, Deployment, DeploymentStatus
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from portal import crypto
from portal.api import ApplicationError
from tenants.models import TenantRole
from tests.billing.budget_helpers import event, ingest, make_model
from tests.factories import MembershipFactory, TenantFactory, UserFactory, published_version

SUNSET = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def announced(callbacks) -> int:
    """How many deprecations the catalog announced (its other callbacks tell the gateway)."""
    return sum(1 for callback in callbacks if callback.__name__ == "announce")


@pytest.fixture
def mailbox(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return mail.outbox


@pytest.fixture
def usage(db, tenant, other_tenant, tenant_admin, developer):
    """acme used chat-small last week (a developer's key); globex 100 days ago; initech used
    only another model."""
    chat = make_model("chat-small")
    successor = make_model("chat-large")
    other = make_model("embed-small")
    key, _token = gateway_services.apikey_create(actor="system:test", tenant=tenant,
                                                 owner=developer, name="ci pipeline")
    old_key, _token = gateway_services.apikey_create(actor="system:test", tenant=other_tenant,
                                                     name="old")
    initech = TenantFactory(slug="initech", name="Initech")
    now = datetime.now(UTC)
    ingest(event(tenant, chat, key_id=key.pk, when=now - timedelta(days=7)),
           event(tenant, chat, key_id=key.pk, when=now - timedelta(days=1)),
           event(other_tenant, chat, key_id=old_key.pk, when=now - timedelta(days=100)),
           event(initech, other, when=now - timedelta(days=1)))
    WebhookEndpoint.objects.create(tenant=tenant, name="Ops", url="https://hooks.example/x",
                                   secret_encrypted=crypto.encrypt("whsec_test"))
    return chat, successor, key, initech


def test_a_sunset_tells_the_tenants_that_used_the_model_once(
        usage, tenant, other_tenant, tenant_admin, developer, mailbox,
        django_capture_on_commit_callbacks):
    chat, successor, key, initech = usage
    with django_capture_on_commit_callbacks(execute=False) as queued:
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="deprecated", sunset_at=SUNSET,
                                             successor=successor)
    assert announced(queued) == 1  # the task is enqueued after commit
    chat.refresh_from_db()
    assert chat.deprecated_at is not None and chat.sunset_at == SUNSET
    assert chat.successor == successor
    change = AuditEvent.objects.filter(action="model.deprecated").get()
    assert change.details["successor"] == "chat-large"

    with django_capture_on_commit_callbacks(execute=False) as emails:
        assert deprecation_notify(chat.pk, None) == 1
    notice = DeprecationNotice.objects.get()
    assert (notice.tenant, notice.model, notice.version) == (tenant, chat, None)
    assert notice.api_key_ids == [key.pk] and notice.successor_slug == "chat-large"
    # In the portal: the tenant's admins and the owner of the key that used it.
    told = Notification.objects.filter(tenant=tenant)
    assert {n.user for n in told} == {tenant_admin, developer}
    first = told.first()
    assert first.title == "chat-small is deprecated: it stops serving on 01 Mar 2027"
    assert "Move to chat-large." in first.body and "ci pipeline" in first.body
    assert not Notification.objects.exclude(tenant=tenant).exists()
    # Through its webhooks.
    delivery = WebhookDelivery.objects.get()
    assert delivery.tenant == tenant and delivery.event == "model.deprecated"
    assert delivery.payload["model"] == "chat-small"
    assert delivery.payload["successor"] == "chat-large"
    assert delivery.payload["sunset_at"] == SUNSET.isoformat()
    # In the audit trail: one event per tenant told.
    audited = AuditEvent.objects.get(action="billing.deprecation_notice")
    assert audited.tenant_id == tenant.pk and audited.details["api_key_ids"] == [key.pk]
    # By e-mail, once.
    assert len(emails) == 2  # the webhook delivery and the e-mail, sent by the worker
    assert deprecation_notice_email(notice.pk) is True
    assert deprecation_notice_email(notice.pk) is False
    [message] = mailbox
    assert sorted(message.to) == sorted([tenant_admin.email, developer.email])
    assert "chat-small is deprecated" in message.subject and "chat-large" in message.body

    # Idempotent: a second run (a retry, a second worker) tells nobody again.
    assert deprecation_notify(chat.pk, None) == 0
    assert DeprecationNotice.objects.count() == 1 and WebhookDelivery.objects.count() == 1
    assert AuditEvent.objects.filter(action="billing.deprecation_notice").count() == 1

    # A new sunset date is news: told again. The deprecation's own date stays.
    deprecated_at = chat.deprecated_at
    later = SUNSET + timedelta(days=30)
    with django_capture_on_commit_callbacks(execute=False):
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="deprecated", sunset_at=later,
                                             successor=successor)
        assert deprecation_notify(chat.pk, None) == 1
    chat.refresh_from_db()
    assert chat.deprecated_at == deprecated_at and chat.sunset_at == later


def test_no_sunset_no_news_and_reinstated_is_not_told(usage, django_capture_on_commit_callbacks):
    chat, _successor, _key, _initech = usage
    with django_capture_on_commit_callbacks(execute=False) as queued:
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="deprecated")
    assert announced(queued) == 0
    with django_capture_on_commit_callbacks(execute=False) as queued:
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="deprecated", sunset_at=SUNSET)
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="active")
    assert announced(queued) == 1
    assert deprecation_notify(chat.pk, None) == 0  # reinstated before the task ran
    chat.refresh_from_db()
    assert (chat.deprecated_at, chat.sunset_at, chat.successor) == (None, None, None)


def test_refusals(usage):
    chat, successor, _key, _initech = usage
    with pytest.raises(ApplicationError, match="succeed itself"):
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="deprecated", successor=chat)
    with pytest.raises(ApplicationError, match="Only a deprecation"):
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="active", sunset_at=SUNSET)
    catalog_services.model_set_lifecycle(actor="system:test", model=successor,
                                         lifecycle="retired")
    with pytest.raises(ApplicationError, match="is retired"):
        catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                             lifecycle="deprecated", successor=successor)


def test_a_version_deprecation_tells_the_tenants_whose_requests_it_served(
        tenant, other_tenant, tenant_admin, outsider, django_capture_on_commit_callbacks):
    version = published_version(version="1.0")
    newer = published_version(version.model, version="2.0")
    on_old = Deployment.objects.create(model=version.model, version=version,
                                       backend=Backend.EXTERNAL, name="old",
                                       base_url="http://127.0.0.1:1/v1",
                                       status=DeploymentStatus.READY)
    on_new = Deployment.objects.create(model=version.model, version=newer,
                                       backend=Backend.EXTERNAL, name="new",
                                       base_url="http://127.0.0.1:1/v1",
                                       status=DeploymentStatus.READY)
    recent = datetime.now(UTC) - timedelta(days=2)
    ingest({**event(tenant, version.model, when=recent), "deployment_id": on_old.pk},
           {**event(other_tenant, version.model, when=recent), "deployment_id": on_new.pk})
    with django_capture_on_commit_callbacks(execute=False) as queued:
        catalog_services.version_set_lifecycle(actor="system:test", version=version,
                                               status="deprecated", sunset_at=SUNSET)
    assert announced(queued) == 1
    version.refresh_from_db()
    assert version.sunset_at == SUNSET and version.deprecated_at is not None
    with django_capture_on_commit_callbacks(execute=False):
        assert deprecation_notify(version.model_id, version.pk) == 1
    notice = DeprecationNotice.objects.get()
    assert (notice.tenant, notice.version) == (tenant, version)
    assert Notification.objects.get().title.startswith(f"{version.model.slug}:1.0 is deprecated")


def test_the_pages_and_the_api_set_the_sunset_and_successor(client, msp_admin, usage,
                                                            django_capture_on_commit_callbacks):
    chat, successor, _key, _initech = usage
    client.force_login(msp_admin)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        page = client.post(f"/catalog/{chat.slug}/lifecycle/", {
            "lifecycle": "deprecated", "sunset_at": "2027-03-01T12:00",
            "successor": "chat-large"})
    assert page.status_code == 302 and announced(queued) == 1
    chat.refresh_from_db()
    assert (chat.sunset_at, chat.successor) == (SUNSET, successor)
    detail = client.get(f"/catalog/{chat.slug}/").content.decode()
    assert "Sunset: 1 Mar 2027" in detail
    assert "until its sunset on 1 Mar 2027, 12:00" in detail and "<code>chat-large</code>" in detail
    api = client.post(f"/api/models/{chat.slug}/lifecycle/", json.dumps({
        "lifecycle": "deprecated", "sunset_at": "2027-04-01T00:00:00Z",
        "successor": "chat-large"}), content_type="application/json")
    assert api.status_code == 200
    assert api.json()["sunset_at"] == "2027-04-01T00:00:00Z"
    assert api.json()["successor"] == "chat-large"
    wrong = client.post(f"/api/models/{chat.slug}/lifecycle/", json.dumps({
        "lifecycle": "deprecated", "successor": "no-such-model"}),
        content_type="application/json")
    assert wrong.status_code == 400 and "successor" in wrong.json()["errors"]


def test_a_real_worker_tells_them(workers, tenant, tenant_admin, tmp_path, receiver, settings):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    url, received = receiver
    from billing.notifications.services import webhook_endpoint_create

    webhook_endpoint_create(actor=tenant_admin, tenant=tenant, name="Ops", url=url)
    chat = make_model("chat-small")
    MembershipFactory(tenant=tenant, role=TenantRole.VIEWER,
                      user=UserFactory(email="viewer@acme.test"))  # not told: no key, no admin
    ingest(event(tenant, chat, when=datetime.now(UTC) - timedelta(days=3)))
    mail_dir = tmp_path / "mail"
    worker = workers.start(EMAIL_URL=f"filemail:///{mail_dir}",
                           BUDGET_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    catalog_services.model_set_lifecycle(actor="system:test", model=chat,
                                         lifecycle="deprecated", sunset_at=SUNSET)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.poll() is None, workers.log(worker)
        mails = list(mail_dir.iterdir()) if mail_dir.exists() else []
        if received and mails:
            break
        time.sleep(0.25)
    assert received, workers.log(worker)
    payload = json.loads(received[0])
    assert payload["event"] == "model.deprecated" and payload["tenant"] == tenant.slug
    message = mails[0].read_text()
    assert f"To: {tenant_admin.email}" in message and "viewer@acme.test" not in message
    assert Notification.objects.filter(user=tenant_admin).count() == 1


@pytest.fixture
def receiver():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
