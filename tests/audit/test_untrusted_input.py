"""What untrusted input may write into the audit trail is bounded in `audit.record` itself:
strings, nesting and the size of an event's details, and the number of anonymous events a
client (or everybody) can cause per minute. What is stored still hashes to its link."""

import json
import uuid

import jwt
import pytest
from django.core.management import call_command

import audit
from audit.chain import canonical_json, link_hash
from audit.limits import DETAILS_LIMIT_BYTES, TEXT_LIMIT, THROTTLED_ACTION, TRUNCATED_KEY
from audit.models import AuditEvent
from audit.selectors import chain_verify
from portal import request_context

pytestmark = pytest.mark.django_db


def _strings(value):
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _assert_bounded(event: AuditEvent) -> None:
    assert all(len(s) <= TEXT_LIMIT for s in _strings(event.details))
    assert len(canonical_json(event.details)) <= DETAILS_LIMIT_BYTES
    stored = AuditEvent.objects.values().get(seq=event.seq)
    assert link_hash(stored) == stored["hash"]


def _verified() -> None:
    result = chain_verify()
    assert result.ok, result.error
    call_command("audit_verify")


def _bearer(client, token: str, *, remote_addr: str = "127.0.0.1"):
    return client.get("/api/tenants/", headers={"Authorization": f"Bearer {token}"},
                      REMOTE_ADDR=remote_addr)


def _token(issuer: str) -> str:
    return jwt.encode({"iss": issuer, "aud": "portal-api", "jti": uuid.uuid4().hex},
                      "k" * 32, algorithm="HS256")


def test_a_60_kb_issuer_is_cut_in_the_rejection_event(client):
    issuer = "https://" + "i" * 60_000 + ".example"

    response = _bearer(client, _token(issuer))

    assert response.status_code == 401
    event = AuditEvent.objects.get(action="api.token_rejected")
    _assert_bounded(event)
    assert len(json.dumps(event.details)) < 1500
    for field in ("issuer", "reason"):
        assert event.details[field].endswith("chars]")
        assert "[truncated" in event.details[field]
    assert f"[truncated, {len(issuer)} chars]" in event.details["issuer"]
    assert event.details["issuer"].startswith("https://iiii")
    _verified()


def test_nested_details_are_bounded_at_every_level():
    deep = current = {}
    for level in range(20):
        current["next"] = current = {"level": level}
    details = {
        "k" * 1000: "v" * 1000,
        "list": ["x" * 5000, {"inner": ["y" * 300, ["z" * 257]]}],
        "deep": deep,
        "number": 12, "flag": True, "nothing": None, "nan": float("nan"),
    }

    event = audit.record(action="test.nested", actor="system:test", details=details)

    _assert_bounded(event)
    stored = AuditEvent.objects.get(seq=event.seq).details
    long_key = next(key for key in stored if key.startswith("kkk"))
    assert long_key.endswith("[truncated, 1000 chars]")
    assert stored[long_key].endswith("[truncated, 1000 chars]")
    assert stored["list"][0].endswith("[truncated, 5000 chars]")
    assert stored["list"][1]["inner"][1][0].endswith("[truncated, 257 chars]")
    assert stored["list"][1]["inner"][0].endswith("[truncated, 300 chars]")
    assert _depth(stored) <= 9
    assert "nested deeper than" in json.dumps(stored)
    assert (stored["number"], stored["flag"], stored["nothing"], stored["nan"]) == (
        12, True, None, "nan")
    _verified()


def test_non_ascii_and_unstorable_characters_are_kept_bounded():
    details = {
        "accents": "é" * 300,
        "emoji": "🔐" * 400,
        "nul": "before\x00after",
        "surrogate": "lone \ud800 half",
        "control": "\x01" * 600,
    }

    event = audit.record(action="test.unicode", actor="system:test", details=details,
                         target=("Zielobjekt-ß" * 20, "ид" * 100))

    _assert_bounded(event)
    stored = AuditEvent.objects.get(seq=event.seq)
    assert stored.details["accents"].startswith("é" * 200)
    assert stored.details["accents"].endswith("[truncated, 300 chars]")
    assert stored.details["emoji"].startswith("🔐" * 200)
    assert stored.details["nul"] == "before\ufffdafter"
    assert stored.details["surrogate"] == "lone \ufffd half"
    assert len(stored.target_type) <= 64 and stored.target_type.endswith("chars]")
    assert len(stored.target_id) <= 64 and stored.target_id.startswith("идид")
    _verified()


def test_oversized_details_keep_what_fits_and_say_what_was_cut():
    details = {f"field_{i:03d}": "x" * 200 for i in range(60)}
    details["files"] = [f"layer-{i}.tar" for i in range(2000)]

    event = audit.record(action="test.big", actor="system:test", details=details)

    _assert_bounded(event)
    stored = AuditEvent.objects.get(seq=event.seq).details
    summary = stored[TRUNCATED_KEY]
    assert summary["original_bytes"] > 4 * DETAILS_LIMIT_BYTES
    kept = [key for key in stored if key != TRUNCATED_KEY]
    assert kept == [f"field_{i:03d}" for i in range(len(kept))] and kept
    assert summary["omitted_count"] == 61 - len(kept)
    assert list(summary["omitted"])[0] == f"field_{len(kept):03d}"
    assert len(summary["omitted"]) == 4
    _verified()


def test_long_actor_labels_and_column_values_fit_their_columns():
    event = audit.record(action="test." + "a" * 300, actor="system:" + "s" * 1000,
                         target=("t" * 100, "9" * 100))

    stored = AuditEvent.objects.get(seq=event.seq)
    assert len(stored.action) <= 100 and len(stored.actor_label) <= 254
    assert stored.actor_label.endswith("[truncated, 1007 chars]")
    assert len(stored.target_type) <= 64 and len(stored.target_id) <= 64
    _verified()


# --- How many events anonymous clients can cause -------------------------------------------


@pytest.fixture
def budgets(settings):
    settings.OIDC_REJECTIONS_AUDITED_PER_MINUTE = 1000
    settings.AUDIT_ANONYMOUS_EVENTS_PER_CLIENT_PER_MINUTE = 3
    settings.AUDIT_ANONYMOUS_EVENTS_PER_MINUTE = 1000
    return settings


def test_one_client_records_its_budget_then_one_throttle_notice(client, budgets):
    for n in range(8):
        assert _bearer(client, _token(f"https://guess-{n}.example"),
                       remote_addr="198.51.100.7").status_code == 401
    assert _bearer(client, _token("https://other.example"),
                   remote_addr="198.51.100.8").status_code == 401

    from_first = AuditEvent.objects.filter(client_ip="198.51.100.7").order_by("seq")
    assert [e.action for e in from_first] == ["api.token_rejected"] * 3 + [THROTTLED_ACTION]
    notice = from_first.last()
    assert notice.actor_label == "system:audit"
    assert notice.details["scope"] == "client" and notice.details["client"] == "198.51.100.7"
    assert notice.details["limit_per_minute"] == 3
    assert notice.details["first_dropped_action"] == "api.token_rejected"
    assert AuditEvent.objects.filter(client_ip="198.51.100.8",
                                     action="api.token_rejected").count() == 1
    _verified()


def test_ipv6_clients_are_counted_per_64(client, budgets):
    for n in range(5):
        _bearer(client, _token(f"https://v6-{n}.example"), remote_addr=f"2001:db8:1:2::{n + 1}")

    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions == ["api.token_rejected"] * 3 + [THROTTLED_ACTION]
    assert AuditEvent.objects.get(action=THROTTLED_ACTION).details["client"] == (
        "2001:db8:1:2::/64")


def test_all_clients_together_are_bounded_too(client, budgets):
    budgets.AUDIT_ANONYMOUS_EVENTS_PER_MINUTE = 4
    for n in range(10):
        _bearer(client, _token(f"https://many-{n}.example"), remote_addr=f"203.0.113.{n + 1}")

    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions == ["api.token_rejected"] * 4 + [THROTTLED_ACTION]
    assert AuditEvent.objects.get(action=THROTTLED_ACTION).details["scope"] == "all clients"


def test_failed_sign_ins_share_the_budget(client, budgets, tenant_admin):
    for n in range(6):
        client.post("/accounts/login/", {"login": f"guess{n}@example.test",
                                         "password": "wrong"}, REMOTE_ADDR="192.0.2.99")

    actions = list(AuditEvent.objects.filter(client_ip="192.0.2.99").order_by("seq")
                   .values_list("action", flat=True))
    assert actions == ["auth.login_failed"] * 3 + [THROTTLED_ACTION]


def test_events_outside_a_request_are_not_throttled(budgets):
    for _ in range(5):
        audit.record(action="auth.login_failed", actor="anonymous", details={"email": "x@y.z"})
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == 5
    token = request_context.bind(request_context.RequestContext("req-1234567890", None))
    try:
        for _ in range(5):
            audit.record(action="auth.login_failed", actor="anonymous", details={})
    finally:
        request_context.reset(token)
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == 8
