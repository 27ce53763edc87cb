import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection

from billing.budgets import services as budgets
from billing.budgets.alerts import alert_email_send
from billing.budgets.counters import budget_consumption, budget_reconcile, counter_key
from billing.models import Budget, BudgetAlert, Notification
from tests.billing.budget_helpers import event, ingest, make_model


@pytest.fixture
def chat(db):
    return make_model()  # 2 EUR / 6 EUR per million tokens: 1000+500 tokens cost 0.005 EUR


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def test_threshold_alerts_once_each_with_notification_and_email(
        tenant, tenant_admin, chat, django_capture_on_commit_callbacks, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Monthly",
                                   amount=Decimal("0.02"), currency="EUR")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat), event(tenant, chat))  # 0.010 EUR = 50 %
    assert list(BudgetAlert.objects.values_list("threshold", flat=True)) == [50]
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat))  # 75 %: nothing new
        ingest(event(tenant, chat), event(tenant, chat))  # 125 %: 80 and 100 at once
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    assert Notification.objects.filter(user=tenant_admin).count() == 3
    # The worker's task sends each alert's e-mail once, however often it runs.
    for alert in BudgetAlert.objects.all():
        assert alert_email_send(alert_id=alert.pk) is True
        assert alert_email_send(alert_id=alert.pk) is False
    assert len(mail.outbox) == 3
    assert mail.outbox[-1].to == [tenant_admin.email]
    assert "reached" in mail.outbox[-1].subject
    # Reconciling recomputes the same figure and raises nothing again.
    assert budget_reconcile(budget=budget) == int(Decimal("0.025") * 10**8)
    assert BudgetAlert.objects.count() == 3


def test_token_budget_per_key_and_model_counts_only_its_usage(tenant, tenant_admin, chat,
                                                              django_capture_on_commit_callbacks):
    other = make_model("other-model")
    from gateway import services as gateway_services

    key, _ = gateway_services.apikey_create(actor=tenant_admin, tenant=tenant, name="ci")
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="CI tokens",
                                   unit="tokens", amount=Decimal(10000), api_key_id=key.pk,
                                   model=chat)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat, key_id=key.pk), event(tenant, other, key_id=key.pk),
               event(tenant, chat, key_id=None))
    assert budget_consumption(budget)["consumed"] == 1500
    assert _redis().get(counter_key(budget.pk, datetime.now(UTC).date().replace(day=1))) == b"1500"


def test_counters_lost_by_redis_are_rebuilt_from_the_records(tenant, tenant_admin, chat,
                                                             django_capture_on_commit_callbacks):
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Tokens",
                                   unit="tokens", amount=Decimal(100000))
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat), event(tenant, chat))
    _redis().flushdb()
    assert budgets.budgets_reconcile() == 1
    assert budget_consumption(budget)["consumed"] == 3000


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingest_alerts_each_threshold_exactly_once(tenant, tenant_admin):
    chat = make_model()
    budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Tokens", unit="tokens",
                          amount=Decimal(15000), thresholds=[10, 20, 30, 50, 80, 100])
    barrier = threading.Barrier(4)
    errors = []

    def drain(n):
        try:
            barrier.wait()
            for _ in range(5):
                ingest(*[event(tenant, chat) for _ in range(n)])
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain, args=(2,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # 40 requests × 1500 tokens = 60,000 tokens: every threshold crossed, each alerted once.
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [
        10, 20, 30, 50, 80, 100]
    assert Notification.objects.count() == 6


@pytest.mark.parametrize("values,field", [
    ({"amount": Decimal("-5")}, "amount"),
    ({"amount": Decimal("1e12")}, "amount"),
    ({"thresholds": [0, 50]}, "thresholds"),
    ({"thresholds": [50, 150]}, "thresholds"),
    ({"currency": ""}, "currency"),
    ({"period": "custom"}, "period_start"),
    ({"period": "custom", "period_start": date(2026, 5, 1), "period_end": date(2026, 4, 1)},
     "period_end"),
    ({"unit": "tokens", "amount": Decimal("10.5")}, "amount"),
    ({"api_key_id": 999999}, "api_key_id"),
])
def test_bad_budgets_are_refused_with_field_errors(tenant, tenant_admin, values, field):
    arguments = {"name": "Bad", "amount": Decimal("10"), "currency": "EUR", **values}
    with pytest.raises(ValidationError) as caught:
        budgets.budget_create(actor=tenant_admin, tenant=tenant, **arguments)
    assert field in caught.value.message_dict
    assert not Budget.objects.exists()


def test_custom_period(tenant, tenant_admin, chat, django_capture_on_commit_callbacks):
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Pilot",
                                   unit="tokens", amount=Decimal(4000), period="custom",
                                   period_start=date(2026, 3, 1), period_end=date(2026, 3, 15))
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat, when=datetime(2026, 3, 10, tzinfo=UTC)),
               event(tenant, chat, when=datetime(2026, 3, 16, tzinfo=UTC)))
    assert budget_consumption(
        budget, now=datetime(2026, 3, 12, tzinfo=UTC))["consumed"] == 1500
    assert not budget_consumption(budget, now=datetime(2026, 4, 1, tzinfo=UTC))["active"]


def test_tenant_default_budget_becomes_a_notify_only_budget(tenant):
    tenant.default_monthly_budget = Decimal("500")
    tenant.save()
    budgets.tenant_default_budgets_sync()
    budget = Budget.objects.get(tenant=tenant)
    assert (budget.amount, budget.action, budget.from_tenant_default) == (
        Decimal("500"), "notify", True)
    tenant.default_monthly_budget = Decimal("800")
    tenant.save()
    budgets.tenant_default_budgets_sync()
    budget.refresh_from_db()
    assert budget.amount == Decimal("800") and Budget.objects.count() == 1


def test_a_block_is_a_security_event_in_the_compliance_report(tenant, tenant_admin, chat,
                                                              django_capture_on_commit_callbacks):
    from datetime import timedelta

    from audit.reports.audit_sections import security_events
    from audit.reports.periods import Period
    from audit.reports.sections import ReportScope

    budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Cap", unit="tokens",
                          amount=Decimal(1000), action="block", thresholds=[100])
    with django_capture_on_commit_callbacks(execute=True):
        ingest(event(tenant, chat))
    now = datetime.now(UTC)
    scope = ReportScope(period=Period("custom", "today", now - timedelta(hours=1),
                                      now + timedelta(hours=1)),
                        tenant_id=tenant.pk, tenant_slug=tenant.slug, generated_at=now)
    section = security_events(scope)
    assert section.figures["· billing.budget.blocked"] == 1


@pytest.mark.django_db(transaction=True)
def test_reconcile_running_during_drains_neither_loses_nor_doubles_usage(tenant, tenant_admin):
    chat = make_model()
    budget = budgets.budget_create(actor=tenant_admin, tenant=tenant, name="Tokens",
                                   unit="tokens", amount=Decimal(10**9))
    done = threading.Event()
    errors = []

    def drain():
        try:
            for _ in range(15):
                ingest(event(tenant, chat), event(tenant, chat))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    def reconcile():
        try:
            while not done.is_set():
                budget_reconcile(budget=budget)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    reconciler = threading.Thread(target=reconcile)
    reconciler.start()
    drains = [threading.Thread(target=drain) for _ in range(2)]
    for thread in drains:
        thread.start()
    for thread in drains:
        thread.join()
    done.set()
    reconciler.join()
    assert not errors
    # 2 drains × 15 batches × 2 records × 1500 tokens, counted exactly once.
    month = datetime.now(UTC).date().replace(day=1)
    assert int(_redis().get(counter_key(budget.pk, month))) == 90_000
