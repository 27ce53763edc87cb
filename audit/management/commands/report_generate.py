import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import services
from audit.models import ReportStatus
from audit.reports import generate
from audit.reports.periods import PeriodError, parse_period
from tenants.selectors import tenant_by_slug


class Command(BaseCommand):
    help = ("Generate a compliance report now (no worker needed) and copy its PDF and signed "
            "evidence bundle to --out.")

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True,
                            help="2026-11, 2026-W47, 2026-11-21 or 2026-11-01..2026-11-15")
        parser.add_argument("--tenant", default="", help="a tenant's slug (default: platform)")
        parser.add_argument("--out", required=True, help="directory for the PDF and bundle")

    def handle(self, *args, period, tenant, out, **options):
        try:
            parsed = parse_period(period)
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        scope = None
        if tenant:
            scope = tenant_by_slug(tenant)
            if scope is None:
                raise CommandError(f"No tenant has the slug {tenant!r}.")
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            report = services.report_request(actor="system:cli", period=parsed, tenant=scope,
                                             enqueue=False)
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        report = services.report_generate(report_id=report.pk)
        if report.status != ReportStatus.READY:
            raise CommandError(f"Report #{report.pk} failed: {report.error}")
        for name in (report.pdf_name, report.bundle_name):
            shutil.copyfile(generate.reports_dir() / name, out_dir / name)
        self.stdout.write(
            f"Report #{report.pk} ({report.period_label}, {report.scope_label}) ready:\n"
            f"  {out_dir / report.pdf_name}\n  {out_dir / report.bundle_name}\n"
            f"  bundle SHA-256 {report.bundle_sha256}")
