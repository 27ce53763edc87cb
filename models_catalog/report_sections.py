"""Compliance report section for the model supply chain (registered by
`ModelsCatalogConfig.ready()`): models onboarded, scans and their verdicts, approvals and who
approved, signatures — for the report's period."""

from __future__ import annotations

import json
from collections import Counter

from audit.reports.sections import Chart, ReportScope, Section, Table, register_section
from models_catalog import oms
from models_catalog.models import VersionStatus
from models_catalog.selectors import annex_xii_document, versions_in_period
from models_catalog.signing import version_verify


def _in(value, scope: ReportScope) -> bool:
    return value is not None and scope.period.start <= value < scope.period.end


def _visible(versions: list, scope: ReportScope) -> list:
    """A tenant's report covers only the models it may use."""
    if scope.is_platform:
        return versions
    from models_catalog.selectors import model_list_for_tenant
    from tenants.models import Tenant

    tenant = Tenant.objects.get(pk=scope.tenant_id)
    allowed = set(model_list_for_tenant(tenant=tenant).values_list("pk", flat=True))
    return [v for v in versions if v.model_id in allowed]


def _signatures(approved: list) -> tuple[list[list], list[str]]:
    """(table rows, findings) of the approved versions' signatures, each checked now: the
    report is evidence, so it does not rely on a check recorded earlier."""
    rows, findings = [], []
    for v in approved:
        result = version_verify(v) if v.status in (VersionStatus.PUBLISHED,
                                                   VersionStatus.DEPRECATED) else None
        if result is not None and not result:
            findings.append(f"{v}: signature does not verify ({result.reason}).")
        rows.append([str(v), v.manifest_digest, v.signature_key_id, v.signature_artifact_digest,
                     v.model_signature_artifact_digest or ("in the database" if
                                                           v.model_signature else "none"),
                     "verified" if result else (result.reason if result is not None
                                                else v.status)])
    return rows, findings


def _attach_evidence(section: Section, versions: list) -> None:
    """The evidence behind the tables: each version's SBOM, scan report and OMS signature,
    each model's Annex XII information, and the public key the OMS signatures verify with
    (vouched for by the bundle's own platform signature)."""
    for v in {v.pk: v for v in versions}.values():
        stem = f"{v.model.slug}-{v.version}"
        if v.sbom:
            section.attachments[f"sboms/{stem}.cdx.json"] = v.sbom.encode()
        if v.scan_report:
            section.attachments[f"scans/{stem}.json"] = json.dumps(
                v.scan_report, indent=1, sort_keys=True).encode()
        if v.model_signature:
            section.attachments[f"model-signatures/{stem}.sigstore.json"] = \
                v.model_signature.encode()
            section.attachments["model-signatures/model-signing-key.pub.pem"] = \
                oms.platform_public_key_pem()
    for model in {v.model_id: v.model for v in versions}.values():
        section.attachments[f"annex-xii/{model.slug}.json"] = json.dumps(
            annex_xii_document(model), indent=1, sort_keys=True).encode()


@register_section("model_supply_chain", order=35)
def model_supply_chain(scope: ReportScope) -> Section:
    versions = _visible(list(versions_in_period(start=scope.period.start,
                                                end=scope.period.end)), scope)
    onboarded = [v for v in versions if _in(v.created_at, scope)]
    scanned = [v for v in versions if _in(v.scanned_at, scope)]
    approved = [v for v in versions if _in(v.approved_at, scope)]
    rejected = [v for v in versions if v.status == VersionStatus.REJECTED]
    verdicts = Counter(v.scan_verdict for v in scanned)
    signature_rows, findings = _signatures(approved)
    findings += [f"{v}: approved by the person who uploaded or submitted it." for v in approved
                 if v.approved_by_id and v.approved_by_id in (v.uploaded_by_id,
                                                              v.submitted_by_id)]
    section = Section(
        key="model_supply_chain",
        title="Model supply chain",
        intro=("ModelCar images onboarded through the supply-chain gate: quarantined in the "
               "landing repository, scanned (inventory, pickle and header checks, SBOM), "
               "approved by a second MSP admin, signed with the platform key (the approval "
               "statement, and the model files in the OpenSSF Model Signing format) and copied "
               "by digest to the trusted repository. Each model's EU AI Act Annex XII "
               "information is attached."),
        figures={"Versions onboarded": len(onboarded), "Versions scanned": len(scanned),
                 "Clean": verdicts.get("clean", 0), "Suspicious": verdicts.get("suspicious", 0),
                 "Malicious": verdicts.get("malicious", 0),
                 "Approved and published": len(approved), "Rejected": len(rejected)},
        findings=findings,
    )
    section.tables += [
        Table("Scans", ["Version", "Scanned", "Verdict", "Files", "Findings", "SBOM digest"],
              [[str(v), v.scanned_at.isoformat(), v.scan_verdict, v.files.count(),
                len((v.scan_report or {}).get("findings") or []), v.sbom_digest]
               for v in scanned]),
        Table("Approvals", ["Version", "Uploaded by", "Approved by", "Approved", "Image digest"],
              [[str(v), v.uploaded_by.email if v.uploaded_by else "",
                v.approved_by.email if v.approved_by else "", v.approved_at.isoformat(),
                v.manifest_digest] for v in approved]),
        Table("Signatures", ["Version", "Image digest", "Key", "Signature artifact",
                             "OMS signature artifact", "Verification"], signature_rows),
        Table("Rejections", ["Version", "Reason"], [[str(v), v.status_reason] for v in rejected]),
    ]
    _attach_evidence(section, [*scanned, *approved])
    if scanned:
        section.charts.append(Chart("Scan verdicts", list(verdicts), list(verdicts.values()),
                                    unit="versions"))
    return section
