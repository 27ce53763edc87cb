"""RFC 3161 timestamps of checkpoints. A pending row (no response yet) may be updated — its
attempts, its next attempt, and once its timestamp; a stored timestamp is final."""

import django.db.models.deletion
from django.db import migrations, models

POSTGRES_UP = [
    """
    CREATE OR REPLACE FUNCTION audit_checkpoint_timestamp_guard() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.response IS NULL
                AND NEW.checkpoint_id = OLD.checkpoint_id THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_checkpointtimestamp: a stored timestamp is final: % refused',
            TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql;
    """,
    """
    CREATE TRIGGER audit_checkpoint_timestamp_final
        BEFORE UPDATE OR DELETE ON audit_checkpointtimestamp
        FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_timestamp_guard();
    """,
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_timestamp_final ON audit_checkpointtimestamp",
    "DROP FUNCTION IF EXISTS audit_checkpoint_timestamp_guard()",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0005_retention_purge_guard'),
    ]

    operations = [
        migrations.CreateModel(
            name='CheckpointTimestamp',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('response', models.BinaryField(blank=True, null=True)),
                ('time', models.DateTimeField(blank=True, null=True)),
                ('tsa', models.CharField(blank=True, max_length=254)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.CharField(blank=True, max_length=500)),
                ('checkpoint', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='timestamp', to='audit.auditcheckpoint')),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('response__isnull', True)), fields=['next_attempt_at'], name='audit_timestamp_due')],
            },
        ),
        migrations.RunPython(_run(POSTGRES_UP), _run(POSTGRES_DOWN)),
    ]
