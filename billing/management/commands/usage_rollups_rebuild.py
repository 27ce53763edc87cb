"""Recompute the usage rollups of a range of days from the raw usage records (repair)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.core.management.base import BaseCommand, CommandError

from billing.usage.rollups import rollups_rebuild
from portal.dates import OUT_OF_RANGE, is_supported


def _day(value: str) -> datetime:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise CommandError(f"{value!r} is not a day like 2026-11-01.") from None
    if not is_supported(day):
        raise CommandError(f"{value}: {OUT_OF_RANGE}")
    return datetime.combine(day, time(), tzinfo=UTC)


class Command(BaseCommand):
    help = ("Recompute the hourly and daily usage rollups of the UTC days SINCE through UNTIL "
            "from the usage records. Safe while the gateway drains: it runs in one transaction.")

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--until", required=True, help="last day (included), YYYY-MM-DD")

    def handle(self, *args, since: str, until: str, **options):
        start, end = _day(since), _day(until)
        if end < start:
            raise CommandError("--until is before --since.")
        count = rollups_rebuild(since=start, until=end)
        self.stdout.write(f"Rebuilt the rollups of {since} – {until} from {count} usage records.")
