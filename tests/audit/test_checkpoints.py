"""Signed checkpoints catch what the hash chain alone cannot: a rewritten history."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

import audit
from audit import services
from audit.chain import GENESIS_HASH, HASHED_FIELDS, link_hash
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import chain_verify
from portal import signing


def _record(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        audit.record(action=f"test.event_{i}", actor="system:test", details={"i": i})


def _rewrite_history_from(seq: int, *, new_details: dict) -> None:
    """A database owner's forgery: edit one event, then recompute every hash after it so the
    chain is internally consistent again."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        prev = AuditEvent.objects.filter(seq__lt=seq).order_by("-seq").values_list(
            "hash", flat=True).first() or GENESIS_HASH
        for row in AuditEvent.objects.filter(seq__gte=seq).order_by("seq").values(
                *HASHED_FIELDS):
            if row["seq"] == seq:
                row["details"] = new_details
            row["prev_hash"] = prev
            new_hash = link_hash(row)
            cursor.execute(
                "UPDATE audit_auditevent SET details = %s, prev_hash = %s, hash = %s "
                "WHERE seq = %s",
                [json.dumps(row["details"]), prev, new_hash, row["seq"]])
            prev = new_hash
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_checkpoint_signs_the_head_and_skips_when_nothing_is_new():
    _record(3)
    checkpoint = services.checkpoint_create()
    head = AuditEvent.objects.get(seq=3)
    assert (checkpoint.last_seq, checkpoint.head_hash) == (3, head.hash)
    assert checkpoint.key_id == signing.platform_key_id()
    assert services.checkpoint_create() is None
    _record(1, start=3)
    assert services.checkpoint_create().last_seq == 4
    result = chain_verify()
    assert result.ok and result.checkpoints_matched == 2


@pytest.mark.django_db
def test_rewritten_history_with_recomputed_hashes_is_caught_by_the_checkpoint(capsys):
    _record(5)
    services.checkpoint_create()
    _record(2, start=5)
    _rewrite_history_from(2, new_details={"i": "forged"})
    assert AuditEvent.objects.get(seq=2).details == {"i": "forged"}
    with pytest.raises(CommandError, match=r"#5 differs from the signed checkpoint"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_rewrite_after_the_last_checkpoint_is_caught_once_the_next_one_is_compared():
    """Events after the newest checkpoint are protected by the chain; a rewrite there that
    recomputes hashes leaves a consistent chain — until compared to a checkpoint made
    before the rewrite, which is why checkpoints are taken at a fixed interval."""
    _record(4)
    services.checkpoint_create()
    _rewrite_history_from(1, new_details={"i": "forged"})
    result = chain_verify()
    assert not result.ok and result.broken_seq == 4


@pytest.mark.django_db
def test_truncated_tail_is_caught():
    _record(5)
    services.checkpoint_create()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM audit_auditevent WHERE seq >= 4")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    with pytest.raises(CommandError, match=r"events #4–#5 are missing"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_forged_checkpoint_signature_is_caught():
    _record(3)
    checkpoint = services.checkpoint_create()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditcheckpoint DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_auditcheckpoint SET head_hash = %s WHERE id = %s",
                       ["f" * 64, checkpoint.pk])
        cursor.execute("ALTER TABLE audit_auditcheckpoint ENABLE TRIGGER USER")
    with pytest.raises(CommandError, match="invalid signature"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_checkpoints_are_append_only():
    _record(1)
    checkpoint = services.checkpoint_create()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).delete()


@pytest.mark.django_db
def test_on_demand_checkpoint_by_a_person_is_recorded(msp_admin):
    _record(2)
    checkpoint = services.checkpoint_create(actor=msp_admin)
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "audit.checkpoint_created"
    assert event.details["last_seq"] == checkpoint.last_seq


@pytest.mark.django_db
def test_audit_verify_reports_checkpoints_and_speed(capsys):
    _record(3)
    services.checkpoint_create()
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "1 matched" in out and "events/s" in out
