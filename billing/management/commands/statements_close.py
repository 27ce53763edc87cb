from django.core.management.base import BaseCommand, CommandError

from billing.statements import services as statements
from portal.api import ApplicationError
from portal.dates import parse_month


class Command(BaseCommand):
    help = ("Close a month's statements for every tenant (lines stored, never changed again; "
            "later usage becomes corrections in the next open month).")

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="The month to close, e.g. 2026-10.")

    def handle(self, *args, month: str, **options):
        try:
            start = parse_month(month)
        except ValueError as exc:
            raise CommandError(f"--month: {exc}") from None
        try:
            closed = statements.statements_close(actor="system:statements_close",
                                                 period_start=start)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Closed {start:%Y-%m}: {len(closed)} statement(s) stored.")
