"""Two lineage corrections at once can't make a version its own ancestor: X from Y and Y from
X, each on its own connection to PostgreSQL, each checking for a cycle before the other has
committed. The LINEAGE lock serializes them, so the second sees the first's change and is
refused."""

import threading
import time

import pytest
from django.db import connection

from models_catalog import services
from models_catalog.models import Model, ModelVersion
from models_catalog.services import lineage
from portal import locks
from portal.api import ApplicationError
from tests.factories import published_version

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_for_an_advisory_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                       "AND objid = %s AND database = (SELECT oid FROM pg_database "
                       "WHERE datname = current_database())", [locks.LINEAGE.key & 0xFFFFFFFF])
        return cursor.fetchone()[0] > 0


def _ancestors(version: ModelVersion) -> list[int]:
    seen, current = [], version.base_version_id
    while current is not None and current not in seen:
        seen.append(current)
        current = ModelVersion.objects.get(pk=current).base_version_id
    return seen


def test_crossed_corrections_on_two_connections_never_make_a_cycle(msp_admin, monkeypatch):
    x = published_version(Model.objects.create(slug="x-model", name="X", task="chat"))
    y = published_version(Model.objects.create(slug="y-model", name="Y", task="chat"))
    first_checked, second_checked, release = (threading.Event(), threading.Event(),
                                              threading.Event())
    store = lineage.store_lineage

    def store_after_the_check(version, new_lineage):
        # Each correction has passed its cycle check here and not yet written or committed.
        if version.pk == x.pk:
            first_checked.set()
            assert release.wait(timeout=30)
        else:
            second_checked.set()
        store(version, new_lineage)

    monkeypatch.setattr(lineage, "store_lineage", store_after_the_check)
    outcome: dict[str, object] = {}

    def correct(name, version, base):
        try:
            services.version_set_lineage(actor=msp_admin, version=version, base_version=base)
            outcome[name] = "changed"
        except ApplicationError as exc:
            outcome[name] = exc
        finally:
            connection.close()

    first = threading.Thread(target=correct, args=("first", x, y))
    first.start()
    assert first_checked.wait(timeout=30), "the first correction never got to its write"
    second = threading.Thread(target=correct, args=("second", y, x))
    second.start()
    deadline = time.monotonic() + 15
    while not (second_checked.is_set() or _waiting_for_an_advisory_lock()):
        assert time.monotonic() < deadline, "the second correction neither waited nor wrote"
        time.sleep(0.02)
    waited = not second_checked.is_set()
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)

    assert outcome["first"] == "changed"
    refusal = outcome["second"]
    assert isinstance(refusal, ApplicationError)
    assert refusal.field_errors["base_version"] == [
        "x-model:1.0 derives from y-model:1.0 already: a version can't be its own ancestor."]
    x.refresh_from_db()
    y.refresh_from_db()
    assert (x.base_version_id, y.base_version_id) == (y.pk, None)
    assert _ancestors(x) == [y.pk] and _ancestors(y) == []
    assert waited, "the second correction checked for a cycle while the first was uncommitted"
