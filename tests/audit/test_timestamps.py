"""RFC 3161 timestamps on checkpoints and evidence bundles, from a real TSA (`openssl ts`).

A timestamp covers exactly the bytes the platform signs (a checkpoint's payload, a bundle's
manifest.json); it is verified by the portal, by the offline bundle verifier and by the
openssl CLI alike. A TSA that is down never holds a checkpoint up."""

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

import audit
from audit import services, tsa
from audit.bundle_verify import main as verify_main
from audit.chain import canonical_time, checkpoint_payload
from audit.models import AuditCheckpoint, CheckpointTimestamp, ComplianceReport, ReportStatus
from audit.timestamps import TimestampError, trust_from_pem, verify
from portal import signing
from tests.support.processes import ROOT
from tests.support.tsa import POLICY, dead_url, start_tsa

PERIOD = "2025-03"


@pytest.fixture
def test_tsa(tmp_path):
    running = start_tsa(tmp_path / "tsa")
    yield running
    running.stop()


@pytest.fixture
def other_tsa(tmp_path):
    """Another authority, with a CA of its own."""
    running = start_tsa(tmp_path / "other-tsa", common_name="Someone Else's TSA")
    yield running
    running.stop()


@pytest.fixture
def timestamps_on(settings, test_tsa):
    settings.TSA_URL = test_tsa.url
    settings.TSA_CA_FILE = str(test_tsa.ca_file)
    settings.TSA_POLICY_OID = POLICY
    return test_tsa


def _record(n: int) -> None:
    for i in range(n):
        audit.record(action=f"test.event_{i}", actor="system:test", details={"i": i})


def _payload(checkpoint: AuditCheckpoint) -> bytes:
    return checkpoint_payload(last_seq=checkpoint.last_seq, head_hash=checkpoint.head_hash,
                              created_at=canonical_time(checkpoint.created_at))


def _trust(test_tsa):
    return trust_from_pem(test_tsa.ca_file.read_bytes(), source="the test TSA's CA")


def _stored_response(checkpoint: AuditCheckpoint) -> bytes:
    return bytes(CheckpointTimestamp.objects.get(checkpoint=checkpoint).response)


def _replace_stored_response(checkpoint: AuditCheckpoint, response: bytes) -> None:
    """What only a table owner could do: the stored timestamp is final."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending foreign-key checks
        cursor.execute("ALTER TABLE audit_checkpointtimestamp DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_checkpointtimestamp SET response = %s "
                       "WHERE checkpoint_id = %s", [response, checkpoint.pk])
        cursor.execute("ALTER TABLE audit_checkpointtimestamp ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_a_checkpoint_carries_a_verified_timestamp_from_the_tsa(timestamps_on,
                                                                django_capture_on_commit_callbacks):
    _record(3)
    with mock.patch("audit.tasks.timestamp_checkpoint.delay") as enqueue, \
            django_capture_on_commit_callbacks(execute=True):
        checkpoint = services.checkpoint_create()
    enqueue.assert_called_once_with(checkpoint.pk)  # the TSA is asked by a task, afterwards
    assert not CheckpointTimestamp.objects.get(checkpoint=checkpoint).is_stamped

    before = timezone.now()
    stamp_row = services.checkpoint_timestamp(checkpoint_id=checkpoint.pk)
    assert stamp_row.is_stamped and stamp_row.attempts == 1 and stamp_row.last_error == ""
    assert timestamps_on.queries == 1
    # Verified independently of what the portal stored: the TSA signed the checkpoint's payload.
    stamp = verify(_stored_response(checkpoint), _payload(checkpoint), _trust(timestamps_on))
    assert stamp.tsa == "CN=Portal Test TSA,O=Portal tests" == stamp_row.tsa
    assert stamp.policy == POLICY and stamp.hash_algorithm == "sha256"
    assert before - timedelta(seconds=5) <= stamp.time <= timezone.now() + timedelta(seconds=5)
    assert stamp_row.time == stamp.time
    assert services.checkpoint_timestamp(checkpoint_id=checkpoint.pk) is None  # stamped once

    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert "Timestamps: 1 checkpoint timestamps verified; the latest, of #3, dated" in \
           out.getvalue()
    assert "CN=Portal Test TSA" in out.getvalue()


@pytest.mark.django_db
def test_one_changed_byte_in_the_data_or_the_token_fails_verification(timestamps_on):
    _record(2)
    checkpoint = services.checkpoint_create()
    services.checkpoint_timestamp(checkpoint_id=checkpoint.pk)
    response, payload, trust = (_stored_response(checkpoint), _payload(checkpoint),
                                _trust(timestamps_on))
    verify(response, payload, trust)

    changed_data = bytearray(payload)
    changed_data[payload.index(b'"head_hash":"') + 13] ^= 0x01
    with pytest.raises(TimestampError, match="imprint is not the hash of the timestamped data"):
        verify(response, bytes(changed_data), trust)

    # Inside the token: one byte of the signed imprint, and one of the signed time (genTime,
    # a GeneralizedTime "YYYYMMDDhhmmssZ": flip a digit of the seconds).
    imprint_at = response.index(hashlib.sha256(payload).digest())
    time_at = response.index(b"\x18\x0f" + str(datetime.now(UTC).year).encode()) + 2 + 12
    for position in (imprint_at + 7, time_at):
        token = bytearray(response)
        token[position] ^= 0x01
        with pytest.raises(TimestampError, match="signature does not verify"):
            verify(bytes(token), payload, trust)

    token = bytearray(response)
    token[imprint_at] ^= 0x01
    _replace_stored_response(checkpoint, bytes(token))
    with pytest.raises(CommandError, match=r"the timestamp of the checkpoint at #2 does not "
                                           r"verify: the TSA's signature does not verify"):
        call_command("audit_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_a_stored_timestamp_is_final(timestamps_on):
    _record(1)
    checkpoint = services.checkpoint_create()
    services.checkpoint_timestamp(checkpoint_id=checkpoint.pk)
    with pytest.raises(DatabaseError, match="final"), transaction.atomic():
        CheckpointTimestamp.objects.filter(checkpoint=checkpoint).update(response=b"forged")
    with pytest.raises(DatabaseError, match="final"), transaction.atomic():
        CheckpointTimestamp.objects.filter(checkpoint=checkpoint).delete()


@pytest.mark.django_db
def test_tsa_down_the_checkpoint_is_made_flagged_and_stamped_later(
        settings, timestamps_on, client, compliance_officer):
    settings.TSA_URL = dead_url()
    _record(3)
    checkpoint = services.checkpoint_create()
    assert checkpoint is not None and checkpoint.signature  # made and signed as ever
    now = timezone.now()
    row = services.checkpoint_timestamp(checkpoint_id=checkpoint.pk, now=now)
    assert not row.is_stamped and row.attempts == 1
    assert "cannot be reached" in row.last_error
    assert row.next_attempt_at == now + timedelta(minutes=1)

    # Flagged everywhere: audit_verify, the API, the checkpoints page.
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert "Audit chain intact" in out.getvalue()
    assert "Not yet timestamped: #3 (1)" in out.getvalue()
    client.force_login(compliance_officer)
    listed = client.get("/api/audit/checkpoints/").json()["results"][0]
    assert listed["timestamp_status"] == "not_yet_timestamped"
    assert "cannot be reached" in listed["timestamp"]["last_error"]
    page = client.get("/compliance/checkpoints/").content.decode()
    assert "Not yet timestamped" in page and "1 attempt" in page

    # Not before its next attempt is due; then with backoff: 1, 2, 4 … minutes.
    assert services.checkpoint_timestamps_retry(now=now + timedelta(seconds=30)) == []
    services.checkpoint_timestamps_retry(now=now + timedelta(minutes=1))
    row.refresh_from_db()
    assert row.attempts == 2 and row.next_attempt_at == now + timedelta(minutes=3)

    settings.TSA_URL = timestamps_on.url  # the TSA is back
    assert services.checkpoint_timestamps_retry(now=now + timedelta(minutes=3)) == [3]
    row.refresh_from_db()
    assert row.is_stamped and row.attempts == 3 and row.last_error == ""
    verify(bytes(row.response), _payload(checkpoint), _trust(timestamps_on))
    detail = client.get("/api/audit/checkpoints/3/").json()
    assert detail["timestamp_status"] == "timestamped"
    assert verify(base64.b64decode(detail["timestamp_response"]),
                  detail["payload"].encode(), _trust(timestamps_on)).serial
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert "1 checkpoint timestamps verified" in out.getvalue()
    assert "Not yet timestamped" not in out.getvalue()


@pytest.mark.django_db
def test_beat_runs_the_retry_task_every_minute(timestamps_on, settings):
    from audit import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["audit-timestamp-pending-checkpoints"]
    assert entry["task"] == tasks.timestamp_pending_checkpoints.name and entry["schedule"] == 60
    _record(2)
    checkpoint = services.checkpoint_create()  # due at once; its own task never ran
    assert tasks.timestamp_pending_checkpoints() == [checkpoint.last_seq]
    assert tasks.timestamp_checkpoint(checkpoint.pk) is False  # nothing left to do


@pytest.mark.django_db
def test_the_checkpoint_api_is_for_platform_staff(timestamps_on, client, tenant_admin):
    _record(1)
    services.checkpoint_create()
    client.force_login(tenant_admin)
    assert client.get("/api/audit/checkpoints/").status_code == 403
    assert client.get("/api/audit/checkpoints/1/").status_code == 403


@pytest.mark.django_db
def test_checkpoint_api_pages_and_refuses_bad_cursors(client, compliance_officer):
    client.force_login(compliance_officer)
    assert client.get("/api/audit/checkpoints/?before=abc").status_code == 400
    assert client.get("/api/audit/checkpoints/99/").status_code == 404
    _record(1)
    services.checkpoint_create()
    listed = client.get("/api/audit/checkpoints/").json()
    assert listed["results"][0]["timestamp_status"] == "none"
    assert listed["older_cursor"] is None
    assert client.get("/api/audit/checkpoints/?before=1").json()["results"] == []


@pytest.mark.django_db(transaction=True)
def test_the_tsa_is_called_outside_every_transaction(timestamps_on, tmp_path, settings):
    settings.COMPLIANCE_REPORTS_DIR = tmp_path / "reports"
    seen = []
    real_post = tsa.post_timestamp_query

    def spy(*args, **kwargs):
        seen.append(connection.in_atomic_block)
        return real_post(*args, **kwargs)

    with mock.patch("audit.tsa.post_timestamp_query", side_effect=spy), \
            mock.patch("audit.tasks.timestamp_checkpoint.delay"):
        _seed_period()
        for checkpoint in AuditCheckpoint.objects.all():
            services.checkpoint_timestamp(checkpoint_id=checkpoint.pk)
        report = services.report_request(actor="system:test", period=_period(), enqueue=False)
        report = services.report_generate(report_id=report.pk)
    assert report.status == ReportStatus.READY, report.error
    assert len(seen) >= 3 and not any(seen)


@pytest.mark.django_db
def test_an_answer_from_another_tsa_is_refused(settings, timestamps_on, other_tsa):
    """The portal trusts TSA_CA_FILE; an authority under another CA is not it."""
    settings.TSA_URL = other_tsa.url
    _record(1)
    checkpoint = services.checkpoint_create()
    row = services.checkpoint_timestamp(checkpoint_id=checkpoint.pk)
    assert not row.is_stamped and other_tsa.queries == 1
    assert "was refused: the TSA's signature does not verify against TSA_CA_FILE" in \
           row.last_error
    # A pinned signing certificate refuses another certificate of the same CA, too.
    settings.TSA_URL = timestamps_on.url
    settings.TSA_CERT_FILE = str(other_tsa.cert_file)
    settings.TSA_CA_FILE = str(timestamps_on.ca_file)
    row = services.checkpoint_timestamp(checkpoint_id=checkpoint.pk,
                                        now=timezone.now() + timedelta(minutes=2))
    assert not row.is_stamped and "refused" in row.last_error


@pytest.mark.django_db
def test_timestamps_off_by_default(settings):
    assert settings.TSA_URL == "" and not tsa.enabled()
    _record(1)
    checkpoint = services.checkpoint_create()
    assert not CheckpointTimestamp.objects.exists()
    assert services.checkpoint_timestamps_retry() == []
    assert checkpoint.timestamp_or_none is None


# --- Evidence bundles ----------------------------------------------------------------------


def _at(when: datetime):
    return mock.patch("audit.services.timezone.now", return_value=when)


def _period():
    from audit.reports.periods import parse_period

    return parse_period(PERIOD)


def _seed_period() -> None:
    with _at(datetime(2025, 2, 27, tzinfo=UTC)):
        _record(2)
        services.checkpoint_create()
    with _at(datetime(2025, 3, 10, tzinfo=UTC)):
        _record(5)
        services.checkpoint_create()
    with _at(datetime(2025, 4, 2, tzinfo=UTC)):
        _record(1)


def _bundle(tmp_path) -> tuple[ComplianceReport, object]:
    out = tmp_path / "out"
    call_command("report_generate", "--period", PERIOD, "--out", str(out),
                 stdout=io.StringIO())
    report = ComplianceReport.objects.latest("id")
    return report, out / report.bundle_name


def _public_key_file(tmp_path):
    path = tmp_path / "platform.pem"
    path.write_bytes(signing.public_key_pem(signing.platform_public_key()))
    return path


@pytest.fixture
def stamped_bundle(timestamps_on, tmp_path, settings):
    settings.COMPLIANCE_REPORTS_DIR = tmp_path / "reports"
    _seed_period()
    for checkpoint in AuditCheckpoint.objects.all():
        services.checkpoint_timestamp(checkpoint_id=checkpoint.pk)
    report, bundle = _bundle(tmp_path)
    assert report.status == ReportStatus.READY, report.error
    return bundle


@pytest.mark.django_db
def test_a_bundle_carries_its_timestamp_and_report_verify_checks_it_offline(
        stamped_bundle, timestamps_on, tmp_path):
    with zipfile.ZipFile(stamped_bundle) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        checkpoints = json.loads(archive.read("checkpoints.json"))
    assert {"manifest.tsr", "tsa-ca.pem"} <= names
    assert manifest["timestamp"]["covers"] == "manifest.json"
    assert "tsa-ca.pem" in {entry["name"] for entry in manifest["files"]}
    assert all(cp["timestamp"] for cp in checkpoints)

    # Offline: a separate Python process with no settings, database or network access.
    key = _public_key_file(tmp_path)
    offline = subprocess.run(
        [sys.executable, "-m", "audit.bundle_verify", str(stamped_bundle), "--public-key",
         str(key), "--tsa-ca", str(timestamps_on.ca_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert offline.returncode == 0, offline.stderr
    assert "ok: manifest.json timestamped at 20" in offline.stdout
    assert "by CN=Portal Test TSA,O=Portal tests" in offline.stdout
    assert "2 checkpoint timestamps verified" in offline.stdout
    assert f"note: Timestamps were checked against the TSA certificates in " \
           f"{timestamps_on.ca_file}" in offline.stdout
    assert "Bundle verified." in offline.stdout

    # Without --tsa-ca: the bundle's own certificates, and it says what that rests on.
    out = io.StringIO()
    with mock.patch("django.conf.settings.TSA_CA_FILE", ""):
        call_command("report_verify", str(stamped_bundle), stdout=out)
    assert "note: Timestamps were checked against the bundle's tsa-ca.pem" in out.getvalue()
    assert "Only the platform's signature vouches for these certificates" in out.getvalue()


@pytest.mark.django_db
def test_a_wrong_tsa_certificate_is_refused_by_the_verifier(stamped_bundle, other_tsa,
                                                            tmp_path, capsys):
    key = _public_key_file(tmp_path)
    assert verify_main([str(stamped_bundle), "--public-key", str(key), "--tsa-ca",
                        str(other_tsa.ca_file)]) == 1
    err = capsys.readouterr().err
    assert "FAILED: manifest.tsr does not vouch for manifest.json: the TSA's signature does " \
           "not verify against the TSA certificates in" in err
    with pytest.raises(CommandError, match="manifest.tsr does not vouch"):
        call_command("report_verify", str(stamped_bundle), "--tsa-ca", str(other_tsa.ca_file),
                     stdout=io.StringIO())


@pytest.mark.django_db
def test_exported_timestamps_verify_with_the_openssl_cli(stamped_bundle, timestamps_on,
                                                         tmp_path):
    exported = tmp_path / "exported"
    out = io.StringIO()
    call_command("report_verify", str(stamped_bundle), "--export-timestamps", str(exported),
                 stdout=out)
    assert "openssl ts -verify -data" in out.getvalue()
    tokens = sorted(exported.glob("*.tsr"))
    assert [t.name for t in tokens][-1] == "manifest.tsr" and len(tokens) == 3
    for token in tokens:
        data = token.with_suffix(".json" if token.stem == "manifest" else ".payload")
        assert _openssl_verify(data, token, timestamps_on.ca_file), token.name
        changed = bytearray(data.read_bytes())
        changed[len(changed) // 2] ^= 0x01
        tampered = tmp_path / f"tampered-{data.name}"
        tampered.write_bytes(bytes(changed))
        assert not _openssl_verify(tampered, token, timestamps_on.ca_file), token.name
    manifest = exported / "manifest.tsr"
    assert manifest.read_bytes() == zipfile.ZipFile(stamped_bundle).read("manifest.tsr")


def _openssl_verify(data, token, ca_file) -> bool:
    completed = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(data), "-in", str(token), "-CAfile",
         str(ca_file)], capture_output=True, text=True, timeout=60)
    return completed.returncode == 0 and "Verification: OK" in completed.stdout


@pytest.mark.django_db
def test_a_bundle_is_not_sealed_without_its_timestamp_and_the_retry_works(
        settings, timestamps_on, tmp_path, msp_admin):
    settings.COMPLIANCE_REPORTS_DIR = tmp_path / "reports"
    _seed_period()
    settings.TSA_URL = dead_url()
    report = services.report_request(actor="system:test", period=_period(), enqueue=False)
    report = services.report_generate(report_id=report.pk)
    assert report.status == ReportStatus.FAILED
    assert "the evidence bundle could not be timestamped" in report.error
    assert "Retry the report once the time-stamping authority answers" in report.error
    assert not list((tmp_path / "reports").glob("*.zip"))

    settings.TSA_URL = timestamps_on.url
    with mock.patch("audit.tasks.generate_report.delay"):
        services.report_retry(actor=msp_admin, report=report)
    report = services.report_generate(report_id=report.pk)
    assert report.status == ReportStatus.READY
    call_command("report_verify", str(tmp_path / "reports" / report.bundle_name),
                 stdout=io.StringIO())


@pytest.mark.django_db
def test_a_bundle_made_with_timestamps_off_says_so(tmp_path, settings, test_tsa, capsys):
    settings.COMPLIANCE_REPORTS_DIR = tmp_path / "reports"
    _seed_period()
    _, bundle = _bundle(tmp_path)
    key = _public_key_file(tmp_path)
    assert verify_main([str(bundle), "--public-key", str(key)]) == 0
    assert "ok: the bundle carries no RFC 3161 timestamps (they were off)" in \
           capsys.readouterr().out
    # An auditor who expects timestamps is told there are none.
    assert verify_main([str(bundle), "--public-key", str(key), "--tsa-ca",
                        str(test_tsa.ca_file)]) == 1
    assert "the bundle carries no timestamp" in capsys.readouterr().err
