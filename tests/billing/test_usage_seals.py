import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from audit.reports.periods import Period
from audit.reports.sections import ReportScope, build_sections
from billing.models import UsageRecord
from billing.usage.seals import SEAL_ACTION
from billing.usage.services import usage_records_ingest
from gateway import services as gateway_services
from models_catalog import services as catalog_services

pytestmark = pytest.mark.django_db


def _event(tenant, model, n: int, **extra) -> dict:
    return {"request_id": f"req_{n:04d}", "ts": time.time(), "tenant_id": tenant.pk,
            "key_id": None, "model_id": model.pk, "model": model.slug, "deployment_id": None,
            "endpoint": "chat/completions", "status": 200, "streamed": False,
            "input_tokens": 10 + n, "output_tokens": 5, "estimated": False, "latency_ms": 3,
            "ttft_ms": 3, **extra}


@pytest.fixture
def model(db):
    model = catalog_services.model_create(actor="system:test", slug="chat-small",
                                          name="Chat Small", task="chat")
    catalog_services.price_set(actor="system:test", model=model,
                               input_per_million=Decimal("0.5"),
                               output_per_million=Decimal("1.5"))
    return model


def test_each_batch_is_sealed_once_and_verifies(tenant, model):
    assert usage_records_ingest(events=[_event(tenant, model, n) for n in range(5)]) == 5
    seal = AuditEvent.objects.get(action=SEAL_ACTION)
    assert seal.details["records"] == 5
    assert set(UsageRecord.objects.values_list("sealed_by", flat=True)) == {seal.seq}
    # Redelivery stores nothing and seals nothing.
    assert usage_records_ingest(events=[_event(tenant, model, 1)]) == 0
    assert AuditEvent.objects.filter(action=SEAL_ACTION).count() == 1
    out = StringIO()
    call_command("usage_verify", stdout=out)
    assert "1 sealed usage batches verified" in out.getvalue()


def test_charged_at_the_price_in_force(tenant, model):
    usage_records_ingest(events=[_event(tenant, model, 0)])  # 10 in, 5 out
    record = UsageRecord.objects.get()
    assert record.cost == Decimal("0.0000125")  # (10 × 0.5 + 5 × 1.5) / 1e6
    assert (record.input_price_per_million, record.currency) == (Decimal("0.5"), "EUR")


def test_an_edited_or_deleted_record_breaks_its_seal(tenant, model):
    usage_records_ingest(events=[_event(tenant, model, n) for n in range(3)])
    UsageRecord.objects.filter(request_id="req_0001").update(output_tokens=1)
    with pytest.raises(CommandError, match="was altered"):
        call_command("usage_verify")
    UsageRecord.objects.filter(request_id="req_0001").update(output_tokens=5)
    call_command("usage_verify", stdout=StringIO())
    UsageRecord.objects.filter(request_id="req_0002").delete()
    with pytest.raises(CommandError, match="held 3 records; 2 remain"):
        call_command("usage_verify")


def test_report_sections_hold_inference_volume_and_keys(tenant, other_tenant, model,
                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        gateway_services.apikey_create(actor="system:test", tenant=tenant, name="forever")
        gateway_services.apikey_create(actor="system:test", tenant=tenant, name="short",
                                       expires_at=timezone.now() + timedelta(days=3))
    usage_records_ingest(events=[_event(tenant, model, n) for n in range(4)]
                         + [_event(other_tenant, model, 10, status=502, input_tokens=0,
                                   output_tokens=0)])
    now = datetime.now(UTC)
    period = Period("custom", "test", now - timedelta(days=1), now + timedelta(days=1))
    platform = {s.key: s for s in build_sections(ReportScope(period, None, "", now))}
    volume = platform["inference_volume"]
    assert volume.figures["Requests"] == 5
    assert volume.figures["Input tokens"] == sum(10 + n for n in range(4))
    assert volume.figures["Failed requests"] == 1
    assert volume.figures["Usage batches failing their seal"] == 0
    assert platform["api_keys"].figures["Created"] == 2
    assert platform["api_keys"].figures["Active keys without expiry"] == 1
    scoped = {s.key: s for s in build_sections(ReportScope(period, other_tenant.pk,
                                                           other_tenant.slug, now))}
    assert scoped["inference_volume"].figures["Requests"] == 1
    assert scoped["api_keys"].figures["Created"] == 0


def test_postgresql_writes_each_record_line_as_the_seal_did(tenant, model):
    """The seal check builds the canonical lines in SQL: byte for byte canonical_line's."""
    from django.db import connection

    from billing.usage.seals import canonical_line, line_sql

    whole_second = datetime(2026, 10, 1, 12, 0, 0, tzinfo=UTC)
    records = UsageRecord.objects.bulk_create([
        UsageRecord(tenant=tenant, request_id="plain", created_at=whole_second,
                    model_slug="m", endpoint="chat/completions", status_code=200),
        UsageRecord(tenant=tenant, request_id='quote"and\\backslash', api_key_id=7,
                    created_at=whole_second + timedelta(microseconds=1200), model_id=3,
                    model_slug="m/x y", deployment_id=9, endpoint="embeddings",
                    status_code=502, streamed=True, estimated=True, input_tokens=2**31 - 1,
                    output_tokens=1, cached_input_tokens=5, reasoning_tokens=1, latency_ms=0,
                    ttft_ms=0, input_price_per_million=Decimal("0"),
                    output_price_per_million=Decimal("123456.000001"),
                    cached_input_price_per_million=Decimal("0.05"), currency="EUR",
                    cost=Decimal("12345678.00000001")),
        UsageRecord(tenant=tenant, request_id="zero-cached-price", created_at=whole_second,
                    model_slug="m", endpoint="responses", status_code=200,
                    cached_input_price_per_million=Decimal("0"), cost=Decimal("0")),
    ])
    line, plain = line_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT request_id, {line}, {plain} FROM billing_usagerecord")
        found = {request_id: (text, is_plain) for request_id, text, is_plain in cursor}
    for record in UsageRecord.objects.filter(pk__in=[r.pk for r in records]):
        assert found[record.request_id] == (canonical_line(record).decode(), True)


def test_a_batch_with_strings_json_escapes_is_checked_too(tenant, model):
    usage_records_ingest(events=[_event(tenant, model, 0, request_id="réq\t0"),
                                 _event(tenant, model, 1)])
    call_command("usage_verify", stdout=StringIO())
    UsageRecord.objects.filter(request_id="réq\t0").update(input_tokens=1)
    with pytest.raises(CommandError, match="was altered"):
        call_command("usage_verify")


def test_inference_volume_shows_cached_and_reasoning_tokens(tenant, other_tenant, model):
    usage_records_ingest(events=[
        _event(tenant, model, 0, input_tokens=100, cached_input_tokens=40, output_tokens=30,
               reasoning_tokens=12),
        _event(tenant, model, 1, input_tokens=50, cached_input_tokens=10),
        _event(other_tenant, model, 2, input_tokens=20, output_tokens=9, reasoning_tokens=9)])
    now = datetime.now(UTC)
    period = Period("custom", "test", now - timedelta(days=1), now + timedelta(days=1))
    volume = {s.key: s for s in build_sections(ReportScope(period, None, "", now))}[
        "inference_volume"]
    assert (volume.figures["Input tokens"], volume.figures["Cached input tokens"]) == (170, 50)
    assert (volume.figures["Output tokens"], volume.figures["Reasoning tokens"]) == (44, 21)
    [table] = volume.tables
    cached, reasoning = table.columns.index("of them cached"), table.columns.index(
        "of them reasoning")
    assert {(row[0], row[cached], row[reasoning]) for row in table.rows} == {
        (tenant.slug, 50, 12), (other_tenant.slug, 0, 9)}
    scoped = {s.key: s for s in build_sections(ReportScope(period, other_tenant.pk,
                                                           other_tenant.slug, now))}
    assert scoped["inference_volume"].figures["Cached input tokens"] == 0
    assert scoped["inference_volume"].figures["Reasoning tokens"] == 9


def test_a_record_added_to_a_sealed_batch_breaks_its_seal(tenant, model):
    usage_records_ingest(events=[_event(tenant, model, n) for n in range(2)])
    seal = AuditEvent.objects.get(action=SEAL_ACTION)
    UsageRecord.objects.create(tenant=tenant, request_id="req_forged", created_at=timezone.now(),
                               model_slug=model.slug, endpoint="chat/completions",
                               status_code=200, sealed_by=seal.seq)
    with pytest.raises(CommandError, match="held 2 records; 3 remain"):
        call_command("usage_verify")
