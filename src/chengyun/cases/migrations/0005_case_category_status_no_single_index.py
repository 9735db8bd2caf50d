"""Cases lose their single-column indexes on ``category`` and ``status``: the
(category, created_at) and (status, due_at) indexes serve every lookup by
either. On the database this is only dropping indexes (as ``AlterField``
does on PostgreSQL); on SQLite ``AlterField`` would rebuild and copy the whole
case table twice for it, so the indexes are dropped by name instead."""

import django.db.models.deletion
from django.db import migrations, models

# The names Django gave them in 0001 (the same on SQLite and PostgreSQL; a
# CharField's index also has a ``_like`` twin on PostgreSQL).
CATEGORY_INDEX = "cases_case_category_id_c6dc5a5a"
STATUS_INDEX = "cases_case_status_95787cb3"


def drop(apps, schema_editor):
    names = [CATEGORY_INDEX, STATUS_INDEX]
    if schema_editor.connection.vendor == "postgresql":
        names.append(STATUS_INDEX + "_like")
    for name in names:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def create(apps, schema_editor):
    schema_editor.execute(f'CREATE INDEX "{CATEGORY_INDEX}" ON "cases_case" ("category_id")')
    schema_editor.execute(f'CREATE INDEX "{STATUS_INDEX}" ON "cases_case" ("status")')
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'CREATE INDEX "{STATUS_INDEX}_like" ON "cases_case" ("status" varchar_pattern_ops)')


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0004_case_cases_case_categor_03a6fb_idx'),
        ('taxonomy', '0002_category_cluster_radius_m_category_cluster_reports_and_more'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='case',
                    name='category',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='cases', to='taxonomy.category', verbose_name='category'),
                ),
                migrations.AlterField(
                    model_name='case',
                    name='status',
                    field=models.CharField(choices=[('new', 'New'), ('accepted', 'Accepted'), ('rejected', 'Rejected'), ('merged', 'Merged'), ('dispatched', 'Dispatched'), ('in_progress', 'In progress'), ('awaiting_verification', 'Awaiting verification'), ('closed', 'Closed'), ('rated', 'Rated'), ('reopened', 'Reopened')], default='new', max_length=24, verbose_name='status'),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create)],
        ),
    ]
