"""The one way the portal writes CSV: every export (usage tables, statements, the audit
explorer's export) goes through `csv_writer`, which keeps spreadsheets from running cells as
formulas (CSV injection, OWASP).

The rule, cell by cell:

* numbers the portal computes (int, float, Decimal) are written as they are, negative ones
  included: a spreadsheet reads `-3.20` as a number, not as a formula, and statements need
  their corrections to stay numeric;
* every other value is text, and text whose first character — or first after leading
  spaces — is `=`, `+`, `-`, `@`, a tab, a carriage return or a line feed (or the fullwidth
  `＝ ＋ － ＠`, which some spreadsheets treat alike) gets a leading single quote, so
  `=HYPERLINK(…)` arrives as the text `'=HYPERLINK(…)`. A name like "-2" typed by a person is
  text too, and is neutralised like any other.

Quoting, doubled quotes and line breaks inside cells are the standard library's.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def safe_cell(value: Any) -> Any:
    """`value` as a CSV cell a spreadsheet shows and never evaluates."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    text = str(value)
    if text[:1] in FORMULA_STARTS or text.lstrip(" ")[:1] in FORMULA_STARTS:
        return "'" + text
    return text


class _Line:
    """A file-like target whose `write` hands the CSV line back (for streaming)."""

    def write(self, value: str) -> str:
        return value


class _SafeWriter:
    def __init__(self, out=None):
        self._writer = csv.writer(out if out is not None else _Line())

    def writerow(self, row: Iterable[Any]) -> Any:
        """Write one row; without a target, return it as one CSV line (for streaming)."""
        return self._writer.writerow([safe_cell(value) for value in row])


def csv_writer(out=None) -> _SafeWriter:
    """A writer onto `out` (a response, a StringIO, …), or, without one, a writer whose
    `writerow` returns each line."""
    return _SafeWriter(out)
