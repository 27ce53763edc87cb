"""The audit explorer: who sees what, filters, keyset pages, detail, streaming exports, API."""

import csv
import html
import io
import json
from datetime import timedelta

import pytest
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

import audit
from audit.models import AuditEvent
from audit.selectors import EXPORT_FIELDS

PEOPLE = ["anonymous", "outsider", "viewer", "developer", "tenant_admin", "compliance_officer",
          "msp_admin"]

# (method, url, {person: expected}); "login" = redirect to sign-in.
MATRIX = [
    ("get", "/audit/", {"anonymous": "login", "msp_admin": 200, "compliance_officer": 200,
                        "default": 403}),
    ("get", "/audit/events/{seq}/", {"anonymous": "login", "msp_admin": 200,
                                     "compliance_officer": 200, "default": 403}),
    ("get", "/audit/export.csv", {"anonymous": "login", "msp_admin": 200,
                                  "compliance_officer": 200, "default": 403}),
    ("get", "/audit/export.jsonl", {"anonymous": "login", "msp_admin": 200,
                                    "compliance_officer": 200, "default": 403}),
    ("get", "/compliance/checkpoints/", {"anonymous": "login", "msp_admin": 200,
                                         "compliance_officer": 200, "default": 403}),
    ("post", "/compliance/checkpoints/new/", {"anonymous": "login", "msp_admin": 302,
                                              "compliance_officer": 302, "default": 403}),
    ("get", "/audit/public-key.pem", {"default": 200}),
    ("get", "/t/{slug}/audit/", {"anonymous": "login", "outsider": 404,
                                 "compliance_officer": 404, "viewer": 403, "developer": 403,
                                 "default": 200}),
    ("get", "/t/{slug}/audit/events/{seq}/", {"anonymous": "login", "outsider": 404,
                                              "compliance_officer": 404, "viewer": 403,
                                              "developer": 403, "default": 200}),
    ("get", "/t/{slug}/audit/export.csv", {"anonymous": "login", "outsider": 404,
                                           "compliance_officer": 404, "viewer": 403,
                                           "developer": 403, "default": 200}),
    ("get", "/api/audit/events/", {"anonymous": 401, "msp_admin": 200,
                                   "compliance_officer": 200, "default": 403}),
    ("get", "/api/audit/events/{seq}/", {"anonymous": 401, "msp_admin": 200,
                                         "compliance_officer": 200, "default": 403}),
    ("get", "/api/tenants/{slug}/audit/events/", {"anonymous": 401, "outsider": 404,
                                                  "compliance_officer": 404, "viewer": 403,
                                                  "developer": 403, "default": 200}),
]


@pytest.fixture
def people(request, tenant, tenant_admin, developer, viewer, outsider, msp_admin,
           compliance_officer):
    return {name: (None if name == "anonymous" else request.getfixturevalue(name))
            for name in PEOPLE}


@pytest.mark.parametrize("person", PEOPLE)
@pytest.mark.parametrize("method,url,rule", MATRIX, ids=[f"{m.upper()} {u}" for m, u, _ in MATRIX])
def test_permission_matrix(client, people, tenant, person, method, url, rule):
    event = audit.record(action="tenant.updated", actor="system:test", tenant=tenant,
                         target=tenant)
    if people[person]:
        client.force_login(people[person])
    response = getattr(client, method)(url.format(slug=tenant.slug, seq=event.seq))
    expected = rule.get(person, rule["default"])
    if expected == "login":
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login"))
    else:
        assert response.status_code == expected


@pytest.fixture
def trail(tenant, other_tenant, msp_admin):
    """60 events over three days, in two tenants and the platform."""
    base = timezone.now() - timedelta(days=3)
    events = []
    for i in range(60):
        owner = [tenant, other_tenant, None][i % 3]
        events.append(audit.record(
            action=["tenant.updated", "membership.created", "auth.login_failed"][i % 3],
            actor=msp_admin if i % 2 else "system:test", tenant=owner,
            target=("tenants.tenant", str(i % 5)),
            details={"i": i, "note": "needle" if i in (7, 42) else "hay"}))
    # Spread them over time as if recorded across three days (a test-only rewrite).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        for i, event in enumerate(events):
            cursor.execute("UPDATE audit_auditevent SET created_at = %s WHERE seq = %s",
                           [base + timedelta(hours=i), event.seq])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    return {"events": events, "base": base}


def _seqs(response) -> list[int]:
    return [e.seq for e in response.context["page"].events]


def test_tenant_admin_sees_only_their_tenant(client, trail, tenant, tenant_admin, other_tenant):
    client.force_login(tenant_admin)
    response = client.get(f"/t/{tenant.slug}/audit/")
    seqs = _seqs(response)
    assert seqs and set(AuditEvent.objects.filter(seq__in=seqs).values_list(
        "tenant_id", flat=True)) == {tenant.pk}
    # A query parameter cannot widen the scope.
    response = client.get(f"/t/{tenant.slug}/audit/?tenant={other_tenant.slug}")
    assert set(AuditEvent.objects.filter(seq__in=_seqs(response)).values_list(
        "tenant_id", flat=True)) == {tenant.pk}
    other = AuditEvent.objects.filter(tenant_id=other_tenant.pk).first()
    assert client.get(f"/t/{tenant.slug}/audit/events/{other.seq}/").status_code == 404
    exported = client.get(f"/t/{tenant.slug}/audit/export.jsonl")
    rows = [json.loads(line) for line in b"".join(exported.streaming_content).splitlines()]
    assert rows and {r["tenant_id"] for r in rows} == {tenant.pk}
    api = client.get(f"/api/tenants/{tenant.slug}/audit/events/").json()
    assert {r["tenant_id"] for r in api["results"]} == {tenant.pk}


@pytest.mark.parametrize("query,expected", [
    ("action=auth.login_failed", lambda e: e.action == "auth.login_failed"),
    ("action=membership.", lambda e: e.action.startswith("membership.")),
    ("tenant=acme", lambda e: e.tenant_slug == "acme"),
    ("actor=MSP@example.test", lambda e: e.actor_label == "msp@example.test"),
    ("target=tenants.tenant:3", lambda e: (e.target_type, e.target_id) == ("tenants.tenant", "3")),
    ("q=NEEDLE", lambda e: e.details.get("note") == "needle"),
])
def test_filters_match_the_database(client, trail, compliance_officer, query, expected):
    client.force_login(compliance_officer)
    response = client.get(f"/audit/?{query}")
    truth = [e.seq for e in AuditEvent.objects.order_by("-seq") if expected(e)]
    assert truth and _seqs(response) == truth[:50]


def test_time_range_filter(client, trail, compliance_officer):
    client.force_login(compliance_officer)
    since = trail["base"] + timedelta(hours=10)
    until = trail["base"] + timedelta(hours=20)
    response = client.get("/audit/", {"since": since.strftime("%Y-%m-%dT%H:%M:%S"),
                                      "until": until.strftime("%Y-%m-%dT%H:%M:%S")})
    truth = list(AuditEvent.objects.filter(created_at__gte=since.replace(microsecond=0),
                                           created_at__lt=until.replace(microsecond=0))
                 .order_by("-seq").values_list("seq", flat=True))
    assert len(truth) == 10 and _seqs(response) == truth


def test_keyset_pages_walk_the_whole_set_both_ways(client, compliance_officer):
    for i in range(120):
        audit.record(action="test.page", actor="system:test", details={"i": i})
    client.force_login(compliance_officer)
    seen, before = [], None
    while True:
        response = client.get("/audit/", {"action": "test.page", **({"before": before}
                                                                    if before else {})})
        page = response.context["page"]
        seen += [e.seq for e in page.events]
        if page.older_cursor is None:
            break
        before = page.older_cursor
    assert seen == list(range(120, 0, -1))
    newer = client.get("/audit/", {"action": "test.page", "after": 20}).context["page"]
    assert [e.seq for e in newer.events] == list(range(70, 20, -1))
    assert newer.newer_cursor == 70 and newer.older_cursor == 21


@pytest.mark.parametrize("query", ["since=yesterday", "before=-3", "tenant=no-such-tenant",
                                   "since=2026-11-10T00:00&until=2026-11-01T00:00",
                                   "q=" + "x" * 500])
def test_bad_filters_are_form_errors_not_500(client, trail, compliance_officer, query):
    client.force_login(compliance_officer)
    response = client.get(f"/audit/?{query}")
    assert response.status_code == 200 and response.context["form"].errors
    assert client.get(f"/audit/export.csv?{query}").status_code == 400
    assert client.get(f"/api/audit/events/?{query}").status_code == 400


def test_htmx_request_gets_the_partial(client, trail, compliance_officer):
    client.force_login(compliance_officer)
    response = client.get("/audit/?action=tenant.", HTTP_HX_REQUEST="true")
    assert response.content.startswith(b'<div id="event-table">')


def test_event_detail_shows_chain_position(client, trail, compliance_officer):
    client.force_login(compliance_officer)
    event = trail["events"][10]
    body = client.get(f"/audit/events/{event.seq}/").content.decode()
    assert event.hash in body and event.prev_hash in body
    assert f"/audit/events/{event.seq - 1}/" in body and f"/audit/events/{event.seq + 1}/" in body
    assert client.get("/audit/events/999999/").status_code == 404


def test_explorer_shows_values_and_targets_for_people(client, compliance_officer, tenant,
                                                    tenant_admin):
    budget = audit.record(action="billing.budget_update", actor="system:test", tenant=tenant,
                          target=("billing.budget", "1"),
                          details={"api_key_id": None, "notify_email": True,
                                   "all_tenants": False, "scopes": ["chat", "embeddings"],
                                   "changes": {"amount": ["10.00", "20.00"]}, "note": ""})
    client.force_login(compliance_officer)
    body = client.get("/audit/").content.decode()
    assert "Budget #1" in body and 'title="billing.budget 1"' in body
    assert "=None" not in body and "=True" not in body and "=False" not in body
    assert "tenants.user 1" not in body and "billing.budget 1</" not in body
    for text in ("<dt>api_key_id</dt><dd>—</dd>", "<dt>notify_email</dt><dd>yes</dd>",
                 "<dt>all_tenants</dt><dd>no</dd>", "<dt>scopes</dt><dd>chat, embeddings</dd>",
                 "<dt>note</dt><dd>—</dd>"):
        assert text in body
    assert "{&quot;amount&quot;: [&quot;10.00&quot;, &quot;20.00&quot;]}" in body
    assert '<div class="table-wrap">' in body
    # The same in a tenant's explorer and in the htmx partial.
    client.force_login(tenant_admin)
    body = client.get(f"/t/{tenant.slug}/audit/", HTTP_HX_REQUEST="true").content.decode()
    assert "Budget #1" in body and "<dt>notify_email</dt><dd>yes</dd>" in body

    # The detail page: humanised details, and the exact stored record.
    client.force_login(compliance_officer)
    body = client.get(f"/audit/events/{budget.seq}/").content.decode()
    assert "Budget #1" in body and "<dt>notify_email</dt><dd>yes</dd>" in body
    assert "(billing.budget 1)" in body
    raw = body.split('id="audit-raw-record">')[1].split("</pre>")[0]

    record = json.loads(html.unescape(raw))
    assert record["details"] == budget.details and record["hash"] == budget.hash
    assert record["target_type"] == "billing.budget" and record["target_id"] == "1"
    exported = client.get("/audit/export.jsonl?action=billing.budget_update")
    row = json.loads(b"".join(exported.streaming_content))
    assert row == record  # the page's raw record is the export's row


def _filtered_truth(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("seq"))


def test_export_streams_exactly_the_filtered_set(client, trail, compliance_officer, tenant):
    client.force_login(compliance_officer)
    response = client.get(f"/audit/export.jsonl?tenant={tenant.slug}&action=tenant.")
    assert response.streaming
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    truth = _filtered_truth(tenant_id=tenant.pk, action__startswith="tenant.")
    assert [r["seq"] for r in rows] == [e.seq for e in truth]
    assert [r["hash"] for r in rows] == [e.hash for e in truth]
    response = client.get(f"/audit/export.csv?tenant={tenant.slug}&action=tenant.")
    assert response["Content-Disposition"].startswith("attachment;")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0] == list(EXPORT_FIELDS)
    assert [int(r[0]) for r in table[1:]] == [e.seq for e in truth]
    assert client.get("/audit/export.xml").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_export_under_asgi_streams_an_async_iterator(compliance_officer):
    """Under ASGI the rows are pulled in batches, never collected first."""
    for i in range(1200):
        audit.record(action="test.asgi", actor="system:test", details={"i": i})
    client = AsyncClient()
    client.force_login(compliance_officer)
    from asgiref.sync import async_to_sync

    async def fetch():
        response = await client.get("/audit/export.jsonl?action=test.asgi")
        assert response.is_async
        chunks = [chunk async for chunk in response.streaming_content]
        return response, chunks

    response, chunks = async_to_sync(fetch)()
    assert len(chunks) >= 3  # 1200 rows in batches of 500
    rows = [json.loads(line) for line in b"".join(chunks).splitlines()]
    assert [r["details"]["i"] for r in rows] == list(range(1200))


def test_api_pages_with_the_same_filters(client, trail, compliance_officer):
    client.force_login(compliance_officer)
    data = client.get("/api/audit/events/?action=auth.login_failed").json()
    truth = [e.seq for e in _filtered_truth(action="auth.login_failed")][::-1]
    assert [r["seq"] for r in data["results"]] == truth
    event = client.get(f"/api/audit/events/{truth[0]}/").json()
    assert event["hash"] == AuditEvent.objects.get(seq=truth[0]).hash


def test_public_key_is_the_platform_key(client):
    from portal import signing

    response = client.get("/audit/public-key.pem")
    assert response.content == signing.public_key_pem(signing.platform_public_key())
