"""The calendar the portal accepts from outside: days from 2000-01-01 to 2999-12-31 (UTC).

Python's dates stop at 9999-12-31, so "the day after", "the end of that month" or a time zone
shift of a day near that limit raises OverflowError. Every date, month and time range that
comes from a form, a query string, an API body or a command is checked against this range
first (`validate_supported_date`, `parse_month`), so it answers with a message, not a 500,
and everything computed from it stays far from the limits.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.core.exceptions import ValidationError

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2999, 12, 31)
OUT_OF_RANGE = f"Use a date from {FIRST_DAY:%Y-%m-%d} to {LAST_DAY:%Y-%m-%d}."


def is_supported(value: date | datetime) -> bool:
    if isinstance(value, datetime):
        try:
            value = value.astimezone(UTC).date() if value.tzinfo else value.date()
        except OverflowError:  # an offset that moves it past year 1 or 9999
            return False
    return FIRST_DAY <= value <= LAST_DAY


def validate_supported_date(value: date | datetime | None) -> None:
    """Validator for form and serializer date/time fields (DRF accepts Django validators)."""
    if value is not None and not is_supported(value):
        raise ValidationError(OUT_OF_RANGE, code="date_out_of_range")


def parse_month(text: str) -> date:
    """`YYYY-MM` → its first day. ValueError, with a message for people, when it is not a
    month or lies outside the supported range."""
    try:
        month = datetime.strptime(text or "", "%Y-%m").date()
    except ValueError:
        raise ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2026-10.") from None
    if not is_supported(month):
        raise ValueError(f"Use a month from {FIRST_DAY:%Y-%m} to {LAST_DAY:%Y-%m}.")
    return month


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
