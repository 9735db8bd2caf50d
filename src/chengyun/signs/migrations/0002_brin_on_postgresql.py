"""On PostgreSQL, a BRIN index on reading time: readings arrive in time
order, so a tiny BRIN index serves time-range scans and retention deletes
that the (sensor, ts) B-tree cannot. SQLite has no BRIN; nothing to do there."""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX IF NOT EXISTS signs_reading_ts_brin ON signs_reading USING brin (ts)")
        schema_editor.execute("CREATE INDEX IF NOT EXISTS signs_rollup_bucket_brin ON signs_rollup USING brin (bucket)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS signs_reading_ts_brin")
        schema_editor.execute("DROP INDEX IF EXISTS signs_rollup_bucket_brin")


class Migration(migrations.Migration):
    dependencies = [("signs", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
