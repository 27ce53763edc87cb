"""Producing a report's files: sections → report.json → PDF → signed bundle, each written
under a temporary name and moved into place only when complete."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings

from audit.bundle_verify import BUNDLE_FORMAT
from audit.chain import canonical_time
from audit.reports.bundle import write_bundle
from audit.reports.pdf import render_pdf
from audit.reports.periods import Period
from audit.reports.sections import ReportScope, build_sections
from portal import signing


@dataclass(frozen=True)
class ReportFiles:
    pdf_name: str
    pdf_size: int
    bundle_name: str
    bundle_size: int
    bundle_sha256: str


def reports_dir() -> Path:
    path = Path(settings.COMPLIANCE_REPORTS_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def produce(*, report_id: int, period: Period, tenant_id: int | None, tenant_slug: str,
            generated_at: datetime, directory: Path) -> ReportFiles:
    scope = ReportScope(period=period, tenant_id=tenant_id, tenant_slug=tenant_slug,
                        generated_at=generated_at)
    meta = {
        "id": report_id,
        "site_name": settings.SITE_NAME,
        "period": {"label": period.label, "kind": period.kind,
                   "start": canonical_time(period.start), "end": canonical_time(period.end)},
        "scope": {"tenant": tenant_slug or None},
        "generated_at": canonical_time(generated_at),
        "key_id": signing.platform_key_id(),
    }
    sections = build_sections(scope)
    document = {"format": BUNDLE_FORMAT, "report": meta,
                "sections": [section.as_dict() for section in sections]}
    attachments = {name: data for section in sections
                   for name, data in section.attachments.items()}
    report_json = json.dumps(document, indent=1, ensure_ascii=False, default=str).encode()
    pdf = render_pdf(json.loads(report_json))

    stem = f"report-{report_id}-{period.label.replace('..', '_')}-{tenant_slug or 'platform'}"
    pdf_path, bundle_path = directory / f"{stem}.pdf", directory / f"{stem}.zip"
    temporary = [directory / f".{stem}.{uuid.uuid4().hex}.part" for _ in range(2)]
    try:
        temporary[0].write_bytes(pdf)
        write_bundle(temporary[1], scope=scope, report_json=report_json, pdf=pdf,
                     report_meta=meta, attachments=attachments)
        os.replace(temporary[0], pdf_path)
        os.replace(temporary[1], bundle_path)
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)
    return ReportFiles(pdf_path.name, pdf_path.stat().st_size, bundle_path.name,
                       bundle_path.stat().st_size, _sha256_file(bundle_path))
