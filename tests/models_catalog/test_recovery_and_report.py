"""Nothing stays stuck: beat takes over pushes and scans whose worker died. And the
compliance report's model supply-chain section."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.reports.periods import Period
from audit.reports.sections import ReportScope
from models_catalog import services
from models_catalog.models import ModelVersion, UploadSession, UploadStatus, VersionStatus
from models_catalog.report_sections import model_supply_chain
from tests.factories import published_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(msp_admin):
    return services.model_create(actor=msp_admin, slug="stale", name="Stale", task="chat")


def _scanning(model, label, *, attempts, minutes_ago):
    version = ModelVersion.objects.create(
        model=model, version=label, status=VersionStatus.SCANNING, scan_attempts=attempts,
        landing_repository="landing/stale", manifest_digest="sha256:" + "a" * 64,
        progress_at=timezone.now() - timedelta(minutes=minutes_ago))
    return version


def test_a_dead_scan_is_requeued_then_rejected_after_three_attempts(
        model, settings, django_capture_on_commit_callbacks, monkeypatch):
    settings.MODEL_SCAN_STALE_MINUTES = 30
    enqueued = []
    monkeypatch.setattr(services.gate, "enqueue_scan", enqueued.append)
    dead = _scanning(model, "dead", attempts=1, minutes_ago=45)
    hopeless = _scanning(model, "hopeless", attempts=3, minutes_ago=45)
    _scanning(model, "alive", attempts=1, minutes_ago=5)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.versions_recover_stale()
    assert result == {"requeued": [dead.pk], "failed": [hopeless.pk]}
    assert enqueued == [dead.pk]
    states = dict(ModelVersion.objects.values_list("version", "status"))
    assert states == {"dead": "quarantined", "hopeless": "rejected", "alive": "scanning"}
    assert "3 attempts" in ModelVersion.objects.get(pk=hopeless.pk).status_reason


def test_a_dead_push_is_requeued(model, msp_admin, settings, monkeypatch,
                                 django_capture_on_commit_callbacks):
    settings.MODEL_SCAN_STALE_MINUTES = 30
    enqueued = []
    monkeypatch.setattr(services.gate, "enqueue_push", enqueued.append)
    version = services.version_create(actor=msp_admin, model=model, version="p")
    UploadSession.objects.create(version=version, filename="a.tar", size_bytes=1,
                                 received_bytes=1, status=UploadStatus.RECEIVED)
    ModelVersion.objects.filter(pk=version.pk).update(
        progress_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        services.versions_recover_stale()
    assert enqueued == [version.pk]


def test_a_failed_step_can_be_retried(model, msp_admin, monkeypatch,
                                      django_capture_on_commit_callbacks):
    enqueued = []
    monkeypatch.setattr(services.gate, "enqueue_scan", enqueued.append)
    version = ModelVersion.objects.create(model=model, version="r",
                                          status=VersionStatus.QUARANTINED,
                                          work_error="registry down")
    with django_capture_on_commit_callbacks(execute=True):
        services.version_retry(actor=msp_admin, version=version)
    assert enqueued == [version.pk] and version.work_error == ""


def test_report_section_lists_scans_approvals_and_signatures(msp_admin, model):
    version = published_version(model, version="1.0", approver=msp_admin)
    ModelVersion.objects.filter(pk=version.pk).update(
        scanned_at=timezone.now(), approved_at=timezone.now(), uploaded_by=msp_admin)
    ModelVersion.objects.create(model=model, version="bad", status=VersionStatus.REJECTED,
                                status_reason="Malicious content: os.system",
                                scanned_at=timezone.now(), scan_verdict="malicious")
    now = timezone.now()
    scope = ReportScope(period=Period(kind="custom", label="test",
                                      start=now - timedelta(days=1), end=now + timedelta(days=1)),
                        tenant_id=None, tenant_slug="", generated_at=now)
    section = model_supply_chain(scope)
    assert section.figures["Versions scanned"] == 2
    assert section.figures["Malicious"] == 1 and section.figures["Approved and published"] == 1
    tables = {t.title: t for t in section.tables}
    assert tables["Signatures"].rows[0][-1] == "verified"
    assert tables["Rejections"].rows == [["stale:bad", "Malicious content: os.system"]]
    # Self-approval would be a finding.
    assert any("approved by the person who uploaded" in f for f in section.findings)


def test_the_evidence_bundle_carries_sboms_and_scan_reports(msp_admin, model, tmp_path):
    import zipfile

    from audit.bundle_verify import verify_bundle
    from audit.reports.generate import produce
    from audit.services import checkpoint_create
    from portal import signing

    version = published_version(model, version="2.0", approver=msp_admin)
    report = {"verdict": "clean", "passes_policy": True, "files": [], "findings": []}
    ModelVersion.objects.filter(pk=version.pk).update(
        scanned_at=timezone.now(), approved_at=timezone.now(), scan_report=report)
    checkpoint_create()  # as report generation does first: the extract is anchored
    now = timezone.now()
    files = produce(report_id=1, period=Period(kind="custom", label="evidence",
                                               start=now - timedelta(days=1),
                                               end=now + timedelta(days=1)),
                    tenant_id=None, tenant_slug="", generated_at=now, directory=tmp_path)
    bundle = tmp_path / files.bundle_name
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        stem = f"{model.slug}-2.0"
        assert archive.read(f"evidence/sboms/{stem}.cdx.json").decode() == version.sbom
        assert json.loads(archive.read(f"evidence/scans/{stem}.json")) == report
        listed = json.loads(archive.read("report.json"))
    assert {f"evidence/sboms/{stem}.cdx.json", f"evidence/scans/{stem}.json"} <= names
    section = next(s for s in listed["sections"] if s["key"] == "model_supply_chain")
    assert f"evidence/sboms/{stem}.cdx.json" in section["attachments"]
    check = verify_bundle(bundle, signing.platform_public_key())
    assert check.problems == [] and any("files match the signed manifest" in f
                                        for f in check.facts)
