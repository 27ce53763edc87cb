import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, close_old_connections, connection, transaction

import audit
from audit.chain import GENESIS_HASH, link_hash
from audit.models import AuditEvent
from audit.selectors import chain_verify
from portal import request_context


def _record_some(n: int = 3) -> list[AuditEvent]:
    return [audit.record(action=f"test.event_{i}", actor="system:test",
                         details={"i": i, "note": "ünïcode ✓", "amount": "12.50"})
            for i in range(n)]


@pytest.mark.django_db
def test_events_form_a_chain_from_genesis():
    first, second, third = _record_some()
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    stored = AuditEvent.objects.values().get(seq=2)
    assert link_hash(stored) == stored["hash"]
    result = chain_verify()
    assert result.ok and result.count == 3 and result.head_hash == third.hash


@pytest.mark.django_db
def test_record_captures_actor_tenant_target_and_request_context(tenant, msp_admin):
    token = request_context.bind(request_context.RequestContext("req-abc12345", "192.0.2.7"))
    try:
        event = audit.record(action="tenant.updated", actor=msp_admin, tenant=tenant,
                             target=tenant, details={"changes": {"name": "x"}})
    finally:
        request_context.reset(token)
    event = AuditEvent.objects.get(seq=event.seq)
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        "user", str(msp_admin.pk), msp_admin.email)
    assert (event.tenant_id, event.tenant_slug) == (tenant.pk, tenant.slug)
    assert (event.target_type, event.target_id) == ("tenants.tenant", str(tenant.pk))
    assert (event.request_id, event.client_ip) == ("req-abc12345", "192.0.2.7")


@pytest.mark.django_db
@pytest.mark.parametrize("statement", [
    "UPDATE audit_auditevent SET action = 'forged' WHERE seq = 1",
    "DELETE FROM audit_auditevent WHERE seq = 1",
    "TRUNCATE audit_auditevent",
])
def test_database_refuses_changes(statement):
    _record_some(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEvent.objects.get(seq=1).action == "test.event_0"


@pytest.mark.django_db
def test_orm_delete_is_refused_too():
    event = _record_some(1)[0]
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def _with_triggers_disabled(sql: str, params: list) -> None:
    """What someone with table-owner rights can do: switch the triggers off and tamper."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_audit_verify_reports_range_and_head(capsys):
    events = _record_some(4)
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "#1–#4 (4 events) verified" in out
    assert events[-1].hash in out


@pytest.mark.django_db
def test_audit_verify_detects_an_edited_row():
    _record_some(5)
    _with_triggers_disabled(
        "UPDATE audit_auditevent SET details = %s WHERE seq = 3", ['{"i": 99}'])
    with pytest.raises(CommandError, match=r"#1–#2 \(2 events\) verified, then #3 was altered"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_audit_verify_detects_a_deleted_row():
    _record_some(5)
    _with_triggers_disabled("DELETE FROM audit_auditevent WHERE seq = %s", [4])
    with pytest.raises(CommandError, match=r"event\(s\) 4 missing before #5"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_audit_verify_detects_a_relinked_row():
    """Deleting a row and re-pointing the next one's prev_hash still breaks that row's hash."""
    events = _record_some(4)
    _with_triggers_disabled(
        "DELETE FROM audit_auditevent WHERE seq = 2; "
        "UPDATE audit_auditevent SET seq = 2, prev_hash = %s WHERE seq = 3",
        [events[0].hash])
    with pytest.raises(CommandError, match="#2 was altered"):
        call_command("audit_verify")


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain():
    """Eight threads, each with its own connection and transactions, append at once."""
    threads_count, per_thread = 8, 25
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with transaction.atomic():
                    audit.record(action="test.concurrent", actor=f"system:worker-{worker}",
                                 details={"worker": worker, "i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    result = chain_verify()
    assert result.ok, result.error
    assert result.count == threads_count * per_thread
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, threads_count * per_thread + 1))


@pytest.mark.parametrize("value", [
    {"k" + chr(cp): "v" + chr(cp) for cp in range(0, 0x3000, 7)},
    {"b": [1, {"d": None, "c": True}], "a": "ü\u2028\U0001f600"},
    {"small": 1e-05, "big": 1e16, "plain": 12.5, "neg": -0.0},
    {"huge": 2**80, "n": -(2**63)},
])
def test_fast_canonical_json_writes_exactly_what_the_standard_library_writes(value):
    import json

    from audit.chain import canonical_json

    expected = json.dumps(value, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()
    assert canonical_json(value) == expected


@pytest.mark.django_db
def test_fast_chain_reader_round_trips_awkward_values():
    """The COPY-based reader that audit_verify uses decodes escapes exactly."""
    from audit.selectors import chain_rows

    awkward = "tab\there, newline\nthere, back\\slash, \\N, quote\", \x0b\x0c\r, ✓ \U0001f600"
    token = request_context.bind(request_context.RequestContext("req\tid", "2001:db8::1"))
    try:
        audit.record(action="test.awkward", actor=awkward, details={
            "text": awkward, "nested": {"z": [1, None, True, awkward]}, "n": 2**40})
    finally:
        request_context.reset(token)
    audit.record(action="test.plain", actor="system:test", target=("a\tb", "c\\d"))
    rows = list(chain_rows())
    stored = list(AuditEvent.objects.order_by("seq").values(*rows[0].keys()))
    for row, orm in zip(rows, stored, strict=True):
        orm["created_at"] = row["created_at"]
        assert row == orm
    result = chain_verify()
    assert result.ok, result.error
