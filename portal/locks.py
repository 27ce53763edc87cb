"""The platform's global locks: PostgreSQL transaction-scoped advisory locks, and the one order
in which they are taken.

    1. LINEAGE  serializes changes to the model catalog's lineage graph (which version a version
                derives from). Exclusive. A cycle spans several rows, so locking the edited
                row can't stop two corrections (X from Y, Y from X) from each passing the
                cycle check the other would fail; under this lock each sees the graph as the
                one before it left it.
    2. AUDIT    serializes appends to (and purges of) the audit hash chain. Exclusive.
    3. ROLLUPS  the usage drain adds to the rollups under the shared lock; a rebuild takes it
                exclusively, so a row added meanwhile is never counted twice.
    4. BUDGETS  the drain adds to the budget counters under the shared lock; a reconcile
                overwrites a counter from the records under the exclusive one.

A transaction that needs several takes them in this order, never upwards: a lineage
correction takes LINEAGE, then records its audit event (AUDIT); the usage drain seals a batch
(AUDIT), adds it to the rollups (ROLLUPS), then to the counters (BUDGETS). The budget
reconcile therefore raises its alerts — audit events — only after its BUDGETS transaction
ended.

Nothing slow happens while one is held (DESIGN.md, "Nothing slow under a lock"): no HTTP
probe, registry copy or Kubernetes call, and no DNS lookup; those run first, and their outcome
is recorded in a short transaction after. The one network call under a lock is the counters'
Redis INCR under BUDGETS, which is what that lock exists for (counters and records agree) and
takes a millisecond on the platform's Redis.

The locks end with the transaction (commit or rollback). SQLite, the quickstart's database,
has one writer at a time, so taking them is a no-op there.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True)
class AdvisoryLock:
    name: str
    key: int  # the bigint PostgreSQL knows the lock by


LINEAGE = AdvisoryLock("lineage", 0x4C494E45)  # "LINE"
AUDIT = AdvisoryLock("audit", 0x4155444954)  # "AUDIT" in ASCII
ROLLUPS = AdvisoryLock("rollups", 0x524F4C4C)  # "ROLL"
BUDGETS = AdvisoryLock("budgets", 0x62756467)  # "budg"

ORDER = (LINEAGE, AUDIT, ROLLUPS, BUDGETS)


def hold(lock: AdvisoryLock, *, shared: bool = False) -> None:
    """Take `lock` (waiting for it) until the current transaction ends."""
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError(f"The {lock.name} lock is transaction-scoped: take it inside "
                           "transaction.atomic().")
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [lock.key])
