"""Report periods: a month (2026-11), an ISO week (2026-W47), a day (2026-11-21) or a range
of days (2026-11-01..2026-11-15, both included). All in UTC; the end is exclusive."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from portal.dates import FIRST_DAY, LAST_DAY, OUT_OF_RANGE


class PeriodError(ValueError):
    """The text is not a period, or not one a report can cover."""


@dataclass(frozen=True)
class Period:
    kind: str  # daily, weekly, monthly, custom
    label: str
    start: datetime
    end: datetime  # exclusive


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _day(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{text!r} is not a date (use YYYY-MM-DD).") from None
    _check_year(value.year)
    return value


def _check_year(year: int) -> None:
    # Far from datetime's limits, so a period's end (the day after, the next month) exists.
    if not FIRST_DAY.year <= year <= LAST_DAY.year:
        raise PeriodError(OUT_OF_RANGE)


def month(year: int, month_number: int) -> Period:
    start = datetime(year, month_number, 1, tzinfo=UTC)
    end = datetime(year + month_number // 12, month_number % 12 + 1, 1, tzinfo=UTC)
    return Period("monthly", f"{year:04d}-{month_number:02d}", start, end)


def iso_week(year: int, week: int) -> Period:
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise PeriodError(f"{year} has no ISO week {week}.") from None
    start = _midnight(monday)
    return Period("weekly", f"{year:04d}-W{week:02d}", start, start + timedelta(days=7))


def day(on: date) -> Period:
    start = _midnight(on)
    return Period("daily", on.isoformat(), start, start + timedelta(days=1))


def parse_period(text: str) -> Period:
    text = (text or "").strip()
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        year, month_number = int(m[1]), int(m[2])
        if not 1 <= month_number <= 12:
            raise PeriodError(f"{text!r}: there is no month {month_number}.")
        _check_year(year)
        return month(year, month_number)
    if m := re.fullmatch(r"(\d{4})-W(\d{2})", text):
        _check_year(int(m[1]))
        return iso_week(int(m[1]), int(m[2]))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return day(_day(text))
    if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text):
        first, last = _day(m[1]), _day(m[2])
        if last < first:
            raise PeriodError(f"{text!r} is reversed: the first day comes after the last.")
        return Period("custom", text, _midnight(first), _midnight(last) + timedelta(days=1))
    raise PeriodError(f"{text!r} is not a period: use 2026-11 (month), 2026-W47 (ISO week), "
                      "2026-11-21 (day) or 2026-11-01..2026-11-15 (days, both included).")


def ensure_over(period: Period, *, now: datetime) -> None:
    """A report covers a period that has ended: its figures never change afterwards."""
    if period.end > now:
        raise PeriodError(
            f"{period.label} ends {period.end:%Y-%m-%d %H:%M} UTC, which is still in the "
            "future: pick a period that has ended.")


def previous_periods(now: datetime) -> list[Period]:
    """What beat generates at `now`: yesterday; last week on Mondays; last month on the 1st."""
    today = now.astimezone(UTC).date()
    yesterday = today - timedelta(days=1)
    periods = [day(yesterday)]
    if today.isoweekday() == 1:
        year, week, _ = yesterday.isocalendar()
        periods.append(iso_week(year, week))
    if today.day == 1:
        periods.append(month(yesterday.year, yesterday.month))
    return periods
