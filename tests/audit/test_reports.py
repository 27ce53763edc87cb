"""Compliance reports: figures equal the database, the PDF has every section, bundles prove
themselves with the public key alone, and tampering shows up."""

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from pypdf import PdfReader

import audit
from audit import services
from audit.bundle_verify import main as verify_main
from audit.bundle_verify import verify_bundle
from audit.models import AuditEvent, ComplianceReport, ReportOrigin, ReportStatus
from audit.reports.periods import parse_period
from audit.reports.sections import registered_keys
from portal import signing
from tenants import services as tenant_services
from tenants.models import TenantRole
from tests.factories import MembershipFactory, UserFactory

PERIOD = "2025-03"
IN_PERIOD = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
SECTION_TITLES = ["Access review", "Security events", "Tenant lifecycle", "Audit-chain integrity"]


def _at(when: datetime):
    return mock.patch("audit.services.timezone.now", return_value=when)


@pytest.fixture
def seeded(tenant, other_tenant, msp_admin, tenant_admin):
    """Events before, inside and after March 2025, in both tenants and the platform."""
    with _at(datetime(2025, 2, 27, tzinfo=UTC)):
        audit.record(action="auth.login_failed", actor="anonymous", details={"email": "x@y.z"})
        services.checkpoint_create()
    for i in range(25):
        with _at(IN_PERIOD + timedelta(hours=i)):
            audit.record(action="auth.login_failed", actor="anonymous",
                         details={"email": "mallory@example.test" if i < 21 else "bob@x.test"})
    with _at(IN_PERIOD + timedelta(days=2)):
        audit.record(action="model.rejected", actor=msp_admin, tenant=tenant,
                     details={"reason": "pickle"})
        audit.record(action="budget.blocked", actor="system:gateway", tenant=other_tenant)
        audit.record(action="token.refused", actor="system:api", tenant=tenant)
        tenant_services.tenant_set_status(actor=msp_admin, tenant=other_tenant,
                                          status="suspended", reason="unpaid")
        audit.record(action="tenant.updated", actor=msp_admin, tenant=tenant, target=tenant,
                     details={"changes": {"name": "x"}})
        MembershipFactory(tenant=tenant, role=TenantRole.DEVELOPER,
                          user=UserFactory(email="new@acme.test"))
        audit.record(action="membership.created", actor=msp_admin, tenant=tenant)
        services.checkpoint_create()
    with _at(IN_PERIOD + timedelta(days=3)):
        audit.record(action="auth.login_succeeded", actor=tenant_admin, target=tenant_admin,
                     details={"method": "oidc", "acr": "eidas-high"})
    with _at(datetime(2025, 4, 2, tzinfo=UTC)):
        audit.record(action="auth.login_failed", actor="anonymous", details={"email": "late@x"})
        audit.record(action="model.rejected", actor=msp_admin, tenant=tenant)
    return {"tenant": tenant, "other": other_tenant}


def _generate(tmp_path, period=PERIOD, tenant=""):
    out = tmp_path / "out"
    call_command("report_generate", "--period", period, "--out", str(out),
                 *(["--tenant", tenant] if tenant else []), stdout=io.StringIO())
    report = ComplianceReport.objects.latest("id")
    return report, out / report.pdf_name, out / report.bundle_name


def _report_json(bundle) -> dict:
    with zipfile.ZipFile(bundle) as archive:
        return json.loads(archive.read("report.json"))


def _section(doc, key) -> dict:
    return next(s for s in doc["sections"] if s["key"] == key)


def _public_key_file(tmp_path):
    path = tmp_path / "platform.pem"
    path.write_bytes(signing.public_key_pem(signing.platform_public_key()))
    return path


def test_report_figures_equal_the_database(tmp_path, seeded):
    report, pdf, bundle = _generate(tmp_path)
    assert report.status == ReportStatus.READY
    doc = _report_json(bundle)
    assert [s["key"] for s in doc["sections"]] == registered_keys()
    in_period = AuditEvent.objects.filter(created_at__gte=datetime(2025, 3, 1, tzinfo=UTC),
                                          created_at__lt=datetime(2025, 4, 1, tzinfo=UTC))
    security = _section(doc, "security_events")["figures"]
    truth = {a: in_period.filter(action=a).count() for a in
             ["auth.login_failed", "model.rejected", "budget.blocked", "token.refused"]}
    assert truth == {"auth.login_failed": 25, "model.rejected": 1, "budget.blocked": 1,
                     "token.refused": 1}
    assert security["Security events"] == sum(truth.values())
    assert {k[2:]: v for k, v in security.items() if k.startswith("· ")} == truth
    findings = _section(doc, "security_events")["findings"]
    assert any("mallory@example.test had 21 failed sign-ins" in f for f in findings)

    lifecycle = _section(doc, "tenant_lifecycle")["figures"]
    tenant_changes = in_period.filter(action__startswith="tenant.").count()
    assert lifecycle["Tenant changes"] == tenant_changes == 2
    assert lifecycle["· tenant.suspended"] == 1

    access = _section(doc, "access_review")
    # Every person with a role: platform grants + memberships (fixtures plus the new member).
    from tenants.models import Membership, PlatformRoleGrant

    people = set(PlatformRoleGrant.objects.values_list("user_id", flat=True)) | set(
        Membership.objects.values_list("user_id", flat=True))
    assert access["figures"]["People with access"] == len(people)
    tenant_rows = {row[1]: row for row in access["tables"][1]["rows"]}
    assert tenant_rows["admin@acme.test"][5] == "eidas-high"  # acr of the last sign-in
    assert "admin@acme.test" in access["findings"][0]  # a tenant admin without MFA
    msp_row = next(r for r in access["tables"][0]["rows"] if r[0] == "msp@example.test")
    assert msp_row[3] == "authenticator app"

    integrity = _section(doc, "audit_integrity")["figures"]
    assert integrity["Status"] == "intact"
    assert integrity["Events verified"] == AuditEvent.objects.count() - 1  # minus report.generated
    assert integrity["Signed checkpoints matched"] >= 2


def test_pdf_contains_every_section(tmp_path, seeded):
    _, pdf, _ = _generate(tmp_path)
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    for title in ["Compliance report", "Findings", *SECTION_TITLES]:
        assert title in text
    assert "mallory@example.test" in text


def test_bundle_verifies_with_the_public_key_alone(tmp_path, seeded, capsys):
    _, _, bundle = _generate(tmp_path)
    key_file = _public_key_file(tmp_path)
    assert verify_main([str(bundle), "--public-key", str(key_file)]) == 0
    out = capsys.readouterr().out
    assert "Bundle verified." in out and "signed checkpoints matched" in out
    call_command("report_verify", str(bundle), "--public-key", str(key_file),
                 stdout=io.StringIO())
    with zipfile.ZipFile(bundle) as archive:
        lines = [json.loads(line) for line in archive.read("audit-events.jsonl").splitlines()]
        manifest = json.loads(archive.read("manifest.json"))
    full = [line for line in lines if not line.get("redacted")]
    march = [line for line in full if line["created_at"].startswith("2025-03")]
    assert march == full and len(full) == manifest["audit_extract"]["events_in_scope"]
    # Anchored at both ends by signed checkpoints: before the period and after it.
    from audit.models import AuditCheckpoint

    february = AuditCheckpoint.objects.order_by("last_seq").first()
    assert lines[0]["seq"] == february.last_seq + 1
    assert AuditCheckpoint.objects.filter(last_seq=lines[-1]["seq"]).exists()
    assert manifest["audit_extract"]["links"] == len(lines)


def test_another_key_does_not_verify(tmp_path, seeded):
    _, _, bundle = _generate(tmp_path)
    other = signing.load_private_key(signing.write_new_key(tmp_path / "other.pem"))
    check = verify_bundle(bundle, other.public_key())
    assert not check.ok and "archive signature" in check.problems[0]


def test_changing_any_byte_of_the_bundle_fails_verification(tmp_path, seeded):
    _, _, bundle = _generate(tmp_path)
    public_key = signing.platform_public_key()
    original = bundle.read_bytes()
    tampered = tmp_path / "tampered.zip"
    step = max(1, len(original) // 1500)
    positions = sorted(set(range(0, len(original), step)) | set(range(len(original) - 300,
                                                                      len(original))))
    for position in positions:
        data = bytearray(original)
        data[position] ^= 0x01
        tampered.write_bytes(bytes(data))
        assert not verify_bundle(tampered, public_key).ok, f"byte {position} went unnoticed"
    with pytest.raises(CommandError, match="NOT verified"):
        call_command("report_verify", str(tampered), stdout=io.StringIO())


def test_rewritten_member_with_a_valid_zip_is_caught(tmp_path, seeded):
    """Rebuild the zip with one audit line changed: the zip is well-formed, the file's
    hash no longer matches the signed manifest, and the link no longer verifies."""
    _, _, bundle = _generate(tmp_path)
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(forged, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "audit-events.jsonl":
                data = data.replace(b"mallory@example.test", b"someone@example.test", 1)
            target.writestr(name, data)
    check = verify_bundle(forged, signing.platform_public_key())
    assert "archive carries no signature" in " ".join(check.problems)
    # Past the archive signature, each member check stands on its own.
    from audit.bundle_verify import BundleCheck, _verify_members

    members = BundleCheck()
    with zipfile.ZipFile(forged) as archive:
        _verify_members(archive, signing.platform_public_key(), members)
    problems = " ".join(members.problems)
    assert "audit-events.jsonl does not match its SHA-256" in problems
    assert "was altered" in problems


def test_tenant_bundle_holds_only_the_tenant_in_full(tmp_path, seeded):
    _, _, bundle = _generate(tmp_path, tenant="acme")
    assert verify_bundle(bundle, signing.platform_public_key()).ok
    with zipfile.ZipFile(bundle) as archive:
        lines = [json.loads(line) for line in archive.read("audit-events.jsonl").splitlines()]
    full = [line for line in lines if not line.get("redacted")]
    assert full and {line["tenant_slug"] for line in full} == {"acme"}
    assert any(line.get("redacted") for line in lines)
    doc = _report_json(bundle)
    assert _section(doc, "security_events")["figures"]["Security events"] == 2


def test_tampering_is_flagged_in_the_next_report(tmp_path, seeded):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_auditevent SET details = '{\"email\": \"x\"}' "
                       "WHERE seq = 5")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    _, pdf, bundle = _generate(tmp_path)
    integrity = _section(_report_json(bundle), "audit_integrity")
    assert integrity["figures"]["Status"] == "BROKEN"
    assert "#5 was altered" in integrity["findings"][0]
    assert "The audit chain is broken" in "".join(p.extract_text() for p in PdfReader(pdf).pages)
    # The bundle's extract holds the altered row, so it fails verification too.
    assert not verify_bundle(bundle, signing.platform_public_key()).ok


@pytest.mark.parametrize("text,message", [
    ("2999-01", "still in the future"),
    ("2025-03-10..2025-03-01", "reversed"),
    ("2025-13", "no month 13"),
    ("last month", "is not a period"),
])
def test_bad_periods_are_refused(text, message):
    from audit.reports.periods import PeriodError, ensure_over

    with pytest.raises(PeriodError, match=message):
        ensure_over(parse_period(text), now=datetime(2026, 11, 22, tzinfo=UTC))


def test_periods_cover_the_right_days():
    week = parse_period("2026-W47")
    assert (week.start.date().isoformat(), week.end.date().isoformat()) == (
        "2026-11-16", "2026-11-23")
    december = parse_period("2026-12")
    assert december.end == datetime(2027, 1, 1, tzinfo=UTC)
    custom = parse_period("2026-11-01..2026-11-15")
    assert (custom.end - custom.start).days == 15


def test_failed_report_shows_why_and_can_be_retried(tmp_path, seeded, settings, msp_admin,
                                                    django_capture_on_commit_callbacks):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings.COMPLIANCE_REPORTS_DIR = blocker
    report = services.report_request(actor=msp_admin, period=parse_period(PERIOD),
                                     enqueue=False)
    report = services.report_generate(report_id=report.pk)
    assert report.status == ReportStatus.FAILED and "FileExistsError" in report.error
    assert not report.pdf_name and not report.bundle_name
    settings.COMPLIANCE_REPORTS_DIR = tmp_path / "reports"
    with mock.patch("audit.tasks.generate_report.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            services.report_retry(actor=msp_admin, report=report)
    assert len(callbacks) == 1 and delay.call_args.args == (report.pk,)
    assert services.report_generate(report_id=report.pk).status == ReportStatus.READY
    # Generating twice is a no-op: the claim is a compare-and-set.
    assert services.report_generate(report_id=report.pk) is None


def test_scheduled_reports_are_created_once(db, django_capture_on_commit_callbacks):
    monday_first = datetime(2025, 12, 1, 0, 20, tzinfo=UTC)  # a Monday and the 1st
    with django_capture_on_commit_callbacks(execute=False):
        created = services.reports_schedule_due(now=monday_first)
        again = services.reports_schedule_due(now=monday_first)
    assert sorted(r.period_label for r in created) == ["2025-11", "2025-11-30", "2025-W48"]
    assert again == []
    assert ComplianceReport.objects.filter(origin=ReportOrigin.SCHEDULED).count() == 3


def test_a_report_whose_worker_died_is_failed_and_a_lost_task_resent(seeded, msp_admin):
    now = datetime(2025, 4, 2, 12, 0, tzinfo=UTC)
    with _at(now - timedelta(hours=2)):
        abandoned = services.report_request(actor=msp_admin, period=parse_period(PERIOD),
                                            enqueue=False)
        lost = services.report_request(actor=msp_admin, period=parse_period("2025-03-10"),
                                       enqueue=False)
    ComplianceReport.objects.filter(pk=abandoned.pk).update(
        status=ReportStatus.RUNNING, started_at=now - timedelta(hours=1, minutes=5))
    with _at(now - timedelta(minutes=10)):
        working = services.report_request(actor=msp_admin, period=parse_period("2025-03-11"),
                                          enqueue=False)
    ComplianceReport.objects.filter(pk=working.pk).update(
        status=ReportStatus.RUNNING, started_at=now - timedelta(minutes=10))
    with mock.patch("audit.tasks.generate_report.delay") as delay:
        outcome = services.reports_reclaim_stale(now=now)
    assert outcome == {"failed": [abandoned.pk], "resent": [lost.pk]}
    assert delay.call_args.args == (lost.pk,)
    abandoned.refresh_from_db()
    assert abandoned.status == ReportStatus.FAILED and "Retry the report" in abandoned.error
    assert AuditEvent.objects.filter(action="report.failed",
                                     target_id=str(abandoned.pk)).exists()
    working.refresh_from_db()
    assert working.status == ReportStatus.RUNNING
    # The retry button now works for the abandoned one.
    with mock.patch("audit.tasks.generate_report.delay"):
        assert services.report_retry(actor=msp_admin, report=abandoned).status == "pending"
