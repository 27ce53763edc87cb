"""The global advisory locks live in one module, in one documented order, and every caller
takes them through it."""

from pathlib import Path

import pytest
from django.db import connection, transaction

from portal import locks

ROOT = Path(__file__).resolve().parents[2]
APPS = ("audit", "billing", "deployments", "gateway", "models_catalog", "portal", "tenants")


def test_the_order_is_lineage_audit_rollups_budgets():
    assert [lock.name for lock in locks.ORDER] == ["lineage", "audit", "rollups", "budgets"]
    assert len({lock.key for lock in locks.ORDER}) == 4
    documented = locks.__doc__
    assert documented.index("LINEAGE") < documented.index("AUDIT") < \
        documented.index("ROLLUPS") < documented.index("BUDGETS")


def test_no_other_module_takes_an_advisory_lock_itself():
    offenders = [str(path.relative_to(ROOT)) for app in APPS
                 for path in (ROOT / app).rglob("*.py")
                 if "pg_advisory" in path.read_text() and path != ROOT / "portal/locks.py"]
    assert offenders == []


@pytest.mark.django_db(transaction=True)
def test_a_lock_outside_a_transaction_is_a_mistake():
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        locks.hold(locks.AUDIT)
    with transaction.atomic():
        locks.hold(locks.ROLLUPS, shared=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND pid = pg_backend_pid() AND mode = 'ShareLock'")
            assert cursor.fetchone()[0] == 1
