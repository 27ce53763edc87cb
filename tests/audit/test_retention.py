"""Retention purges a verified prefix up to a signed checkpoint; the chain stays verifiable."""

import io
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

import audit
from audit import services
from audit.models import AuditEvent
from audit.selectors import chain_verify

NOW = datetime(2026, 11, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def _at(when):
    return mock.patch("audit.services.timezone.now", return_value=when)


def _history(*spec):
    """spec: (days ago, action) …; a checkpoint after each group marked 'checkpoint'."""
    for item in spec:
        if item == "checkpoint":
            services.checkpoint_create()
            continue
        days, action = item
        with _at(NOW - timedelta(days=days)):
            audit.record(action=action, actor="system:test", details={"days": days})


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.AUDIT_RETENTION_DEFAULT_DAYS = 365
    settings.AUDIT_RETENTION_CLASSES = {"inference.": 183, "auth.": 730}


def test_purge_removes_the_expired_prefix_and_the_chain_still_verifies(capsys):
    _history((400, "tenant.created"), (390, "inference.batch_sealed"), "checkpoint",
             (380, "tenant.updated"), "checkpoint",
             (200, "inference.batch_sealed"), (100, "tenant.updated"), "checkpoint")
    purge = services.audit_purge(now=NOW)
    # #4 (inference, 200 days) is past its 183 days, but #5 (100 days) is within the default
    # 365: the prefix ends at the last checkpoint before #5.
    assert purge.details["first_seq"] == 1 and purge.details["through_seq"] == 3
    assert purge.details["count"] == 3
    assert AuditEvent.objects.order_by("seq").first().seq == 4
    result = chain_verify()
    assert result.ok, result.error
    assert result.purged_through == 3 and result.first_seq == 4
    call_command("audit_verify", stdout=io.StringIO())
    # Nothing more is past retention up to a checkpoint: a second run purges nothing.
    assert services.audit_purge(now=NOW) is None


def test_an_event_within_its_class_retention_stops_the_purge():
    _history((400, "tenant.created"), "checkpoint", (500, "auth.login_failed"), "checkpoint",
             (390, "tenant.updated"), "checkpoint")
    purge = services.audit_purge(now=NOW)
    # auth.* is kept 730 days, so the prefix stops at the checkpoint before it.
    assert purge.details["through_seq"] == 1
    assert AuditEvent.objects.filter(action="auth.login_failed").exists()
    assert chain_verify().ok


def test_only_checkpointed_history_is_purged():
    _history((400, "tenant.created"), (399, "tenant.updated"))
    assert services.audit_purge(now=NOW) is None
    assert AuditEvent.objects.count() == 2


def test_a_tampered_prefix_is_never_purged():
    _history((400, "tenant.created"), (399, "tenant.updated"), "checkpoint")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_auditevent SET details = '{}' WHERE seq = 1")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    assert services.audit_purge(now=NOW) is None
    assert AuditEvent.objects.filter(seq=1).exists()
    refused = AuditEvent.objects.get(action="audit.purge_refused")
    assert "#1 was altered" in refused.details["error"]


def test_deletes_beyond_the_purge_record_are_still_refused():
    _history((400, "tenant.created"), "checkpoint", (10, "tenant.updated"))
    services.audit_purge(now=NOW)
    newest = AuditEvent.objects.order_by("-seq").first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=newest.seq).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=newest.seq).update(action="forged")


def test_a_prefix_deleted_without_a_purge_record_is_caught():
    _history((400, "tenant.created"), (399, "tenant.updated"), "checkpoint", (1, "x.y"))
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM audit_auditevent WHERE seq <= 2")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    with pytest.raises(CommandError, match="no audit.purged event records their purge"):
        call_command("audit_verify")
