"""The compliance report's deployments section: by cluster and jurisdiction, and the
data-residency statement with its exceptions."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.reports.periods import Period
from audit.reports.sections import ReportScope, build_sections
from deployments import services
from tests.deployments.test_kserve_lifecycle import deploy


def _section(tenant_id=None):
    now = timezone.now()
    period = Period("custom", "test", now - timedelta(days=1), now + timedelta(minutes=1))
    sections = {s.key: s for s in build_sections(ReportScope(period, tenant_id, "", now))}
    return sections["deployments"]


def test_every_deployment_inside_policy_is_stated(msp_admin, cluster, version):
    deploy(msp_admin, cluster, version)
    section = _section()
    assert section.figures["KServe deployments"] == 1
    assert section.figures["Outside the allowed jurisdictions"] == 0
    assert any("every KServe deployment" in f and "DE, EU" in f for f in section.findings)
    assert section.tables[0].rows == [["fra-gpu-1", "DE", "yes", 1]]


def test_exceptions_are_listed_when_the_policy_changed(msp_admin, cluster, version, settings,
                                                       gpu_tenant, other_tenant):
    deploy(msp_admin, cluster, version)
    settings.ALLOWED_JURISDICTIONS = ["FR"]
    second = services.kserve_deployment_build(
        version=version, cluster=cluster, tenant=gpu_tenant, runtime="kserve-vllmserver",
        cpu="1", memory="1Gi", name="second")
    with pytest.raises(ValidationError, match="outside the allowed jurisdictions"):
        services.kserve_deployment_create(actor=msp_admin, deployment=second)
    section = _section()
    assert section.figures["Outside the allowed jurisdictions"] == 1
    assert section.figures["Deployments refused"] == 1
    assert section.tables[1].rows[0][:5] == [version.model.slug, version.model.slug, "1.0",
                                             "fra-gpu-1", "DE"]
    # Another tenant's report sees the shared deployment but not the acme refusal.
    assert _section(other_tenant.pk).figures["Deployments refused"] == 0
