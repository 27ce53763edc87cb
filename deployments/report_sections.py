"""Compliance report section: where models ran, and whether that was inside the residency
policy (registered by `DeploymentsConfig.ready()`)."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from audit.models import AuditEvent
from audit.reports.sections import ReportScope, Section, Table, register_section
from deployments.models import CLUSTER_BACKENDS, Backend, Deployment, DeploymentStatus


def _deployments_in(scope: ReportScope):
    qs = Deployment.objects.filter(created_at__lt=scope.period.end).filter(
        ~Q(status=DeploymentStatus.DELETED) | Q(status_changed_at__gte=scope.period.start))
    if scope.tenant_id is not None:
        qs = qs.filter(Q(tenant_id=scope.tenant_id) | Q(tenant__isnull=True))
    return qs.select_related("cluster", "tenant", "model", "version")


@register_section("deployments", order=40)
def deployments(scope: ReportScope) -> Section:
    from deployments.services import jurisdiction_allowed

    live = list(_deployments_in(scope))
    kserve = [d for d in live if d.backend in CLUSTER_BACKENDS]
    external = [d for d in live if d.backend == Backend.EXTERNAL]
    outside = [d for d in kserve if not jurisdiction_allowed(d.cluster.jurisdiction)]
    refused = AuditEvent.objects.filter(action="deployment.refused",
                                        created_at__gte=scope.period.start,
                                        created_at__lt=scope.period.end)
    if scope.tenant_id is not None:
        refused = refused.filter(tenant_id=scope.tenant_id)
    allowed = ", ".join(settings.ALLOWED_JURISDICTIONS) or "none"
    section = Section(
        key="deployments",
        title="Deployments and data residency",
        intro=f"Model deployments during the period, by cluster and jurisdiction. Allowed "
              f"jurisdictions (ALLOWED_JURISDICTIONS): {allowed}.",
        figures={"KServe deployments": len(kserve), "External endpoints": len(external),
                 "Outside the allowed jurisdictions": len(outside),
                 "Deployments refused": refused.count()},
    )
    if outside:
        section.findings.append(
            f"{len(outside)} deployment(s) ran on clusters outside the allowed jurisdictions "
            "(listed below); the policy changed after they were deployed.")
    else:
        section.findings.append(
            f"Data residency: every KServe deployment of the period ran inside the allowed "
            f"jurisdictions ({allowed}).")
    if external:
        section.findings.append(
            f"{len(external)} external endpoint(s) are served from hosts the portal does not "
            "manage: their location must be confirmed by the operator.")
    by_cluster: dict[tuple, int] = {}
    for d in kserve:
        key = (d.cluster.name, d.cluster.jurisdiction)
        by_cluster[key] = by_cluster.get(key, 0) + 1
    section.tables.append(Table(
        "Deployments by cluster", ["Cluster", "Jurisdiction", "Allowed", "Deployments"],
        [[name, code, "yes" if jurisdiction_allowed(code) else "NO", count]
         for (name, code), count in sorted(by_cluster.items())]))
    if outside:
        section.tables.append(Table(
            "Deployments outside the allowed jurisdictions",
            ["Deployment", "Model", "Version", "Cluster", "Jurisdiction", "Audience"],
            [[d.name, d.model.slug, d.version.version if d.version else "", d.cluster.name,
              d.cluster.jurisdiction, d.tenant.slug if d.tenant else "shared"]
             for d in outside]))
    return section
