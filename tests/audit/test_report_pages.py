"""The reports page: who may see and generate, form errors, progress, downloads."""

from unittest import mock

import pytest
from django.urls import reverse

from audit import services
from audit.models import ComplianceReport, ReportStatus
from audit.reports.periods import parse_period

PEOPLE = ["anonymous", "outsider", "viewer", "developer", "tenant_admin", "compliance_officer",
          "msp_admin"]
STAFF = {"anonymous": "login", "msp_admin": None, "compliance_officer": None, "default": 403}


@pytest.fixture
def people(request, tenant, tenant_admin, developer, viewer, outsider, msp_admin,
           compliance_officer):
    return {name: (None if name == "anonymous" else request.getfixturevalue(name))
            for name in PEOPLE}


@pytest.fixture
def ready_report(tmp_path, settings, msp_admin):
    settings.COMPLIANCE_REPORTS_DIR = tmp_path / "reports"
    report = services.report_request(actor=msp_admin, period=parse_period("2025-01"),
                                     enqueue=False)
    return services.report_generate(report_id=report.pk)


@pytest.mark.parametrize("person", PEOPLE)
@pytest.mark.parametrize("method,url,success", [
    ("get", "/compliance/reports/", 200),
    ("post", "/compliance/reports/new/", 302),
    ("get", "/compliance/reports/{pk}/report.pdf", 200),
    ("get", "/compliance/reports/{pk}/bundle.zip", 200),
    ("post", "/compliance/reports/{pk}/retry/", 302),
])
def test_permission_matrix(client, people, ready_report, person, method, url, success):
    if people[person]:
        client.force_login(people[person])
    with mock.patch("audit.tasks.generate_report.delay"):
        response = getattr(client, method)(url.format(pk=ready_report.pk),
                                           {"period": "2025-02"} if method == "post" else None)
    expected = STAFF.get(person, STAFF["default"])
    expected = success if expected is None else expected
    if expected == "login":
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login"))
    else:
        assert response.status_code == expected


@pytest.mark.parametrize("data,field,message", [
    ({"period": "2999-01"}, "period", "still in the future"),
    ({"period": "2025-03-10..2025-03-01"}, "period", "reversed"),
    ({"period": "soon"}, "period", "is not a period"),
    ({"period": "2025-01", "tenant": "no-such"}, "tenant", "No tenant has the slug"),
])
def test_bad_requests_are_form_errors(client, compliance_officer, data, field, message):
    client.force_login(compliance_officer)
    response = client.post("/compliance/reports/new/", data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert not ComplianceReport.objects.exists()


def test_generate_enqueues_after_commit_and_shows_progress(
        client, compliance_officer, tenant, django_capture_on_commit_callbacks):
    client.force_login(compliance_officer)
    with mock.patch("audit.tasks.generate_report.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            client.post("/compliance/reports/new/", {"period": "2025-01", "tenant": tenant.slug})
    report = ComplianceReport.objects.get()
    assert delay.call_args.args == (report.pk,)
    assert (report.tenant_slug, report.status) == (tenant.slug, ReportStatus.PENDING)
    partial = client.get("/compliance/reports/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 3s"' in partial and "Queued" in partial


def test_unfinished_report_offers_no_download(client, compliance_officer):
    report = services.report_request(actor="system:test", period=parse_period("2025-01"),
                                     enqueue=False)
    client.force_login(compliance_officer)
    assert client.get(f"/compliance/reports/{report.pk}/bundle.zip").status_code == 404
    assert client.get("/compliance/reports/999/report.pdf").status_code == 404


def test_ready_report_downloads(client, compliance_officer, ready_report):
    client.force_login(compliance_officer)
    response = client.get(f"/compliance/reports/{ready_report.pk}/report.pdf")
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    page = client.get("/compliance/reports/").content.decode()
    assert ready_report.bundle_sha256[:17] in page and "Evidence bundle" in page


@pytest.mark.django_db(transaction=True)
def test_ready_report_downloads_stream_under_asgi(compliance_officer, ready_report, settings):
    """Under ASGI the bundle is read in chunks by an async iterator — Django's FileResponse
    would read the whole file into memory first — and arrives byte for byte."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from audit.reports import generate

    client = AsyncClient()
    client.force_login(compliance_officer)

    async def fetch():
        response = await client.get(f"/compliance/reports/{ready_report.pk}/bundle.zip")
        assert response.is_async
        return response, [chunk async for chunk in response.streaming_content]

    response, chunks = async_to_sync(fetch)()
    expected = (generate.reports_dir() / ready_report.bundle_name).read_bytes()
    assert b"".join(chunks) == expected
    assert response["Content-Length"] == str(len(expected))
    assert response["Content-Disposition"] == (
        f'attachment; filename="{ready_report.bundle_name}"')
