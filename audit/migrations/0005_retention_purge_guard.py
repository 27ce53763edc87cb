"""Let retention purge a prefix of the chain, and nothing else.

The append-only guard on audit_auditevent now lets a DELETE through for rows at or below the
highest `through_seq` named by an `audit.purged` event — the record that the purge service
writes into the chain, in the same transaction, just before it deletes. Everything else
(any UPDATE, any other DELETE, TRUNCATE) is still refused. Why this is safe enough:

* the purge record is itself a link of the chain, so it cannot be removed or edited later
  without breaking the chain at a signed checkpoint;
* verification accepts a missing prefix only if a signed checkpoint sits exactly at its end
  and an `audit.purged` event names that point (`audit.integrity.verify_chain`);
* the purge service purges only up to a checkpoint, and only after verifying the prefix it
  is about to remove (a tampered prefix is evidence, never purged).

Someone holding the application's database role could still write such a record and remove
old history up to a checkpoint; that is visible as an `audit.purged` event in the signed
chain and in every later report's integrity section. A table owner can bypass any trigger;
against that, only signed checkpoints help — and they do.
"""

from django.db import migrations

POSTGRES_UP = [
    """
    CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND OLD.seq <= (
            SELECT COALESCE(MAX((details->>'through_seq')::bigint), 0)
            FROM audit_auditevent WHERE action = 'audit.purged'
        ) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql;
    """,
    "DROP TRIGGER audit_event_no_update_delete ON audit_auditevent",
    """
    CREATE TRIGGER audit_event_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_auditevent
        FOR EACH ROW EXECUTE FUNCTION audit_event_guard();
    """,
]
POSTGRES_DOWN = [
    "DROP TRIGGER audit_event_no_update_delete ON audit_auditevent",
    """
    CREATE TRIGGER audit_event_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_auditevent
        FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
    """,
    "DROP FUNCTION IF EXISTS audit_event_guard()",
]
SQLITE_UP = [
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    """
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent
    WHEN OLD.seq > (
        SELECT COALESCE(MAX(CAST(json_extract(details, '$.through_seq') AS INTEGER)), 0)
        FROM audit_auditevent WHERE action = 'audit.purged'
    )
    BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: DELETE refused'); END
    """,
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    """
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent
    BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: DELETE refused'); END
    """,
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_compliance_reports")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRES_DOWN, "sqlite": SQLITE_DOWN}),
        ),
    ]
