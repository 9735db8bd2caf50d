"""How readings are stored: one b-tree keyed (sensor, ts), no id column
(migration 0003). A later migration that lets Django rebuild the table on
SQLite would silently turn it back into a rowid table with a second index."""

from __future__ import annotations

from django.db import connection

from chengyun.signs.models import Reading


def test_a_reading_is_stored_in_one_btree_keyed_by_sensor_and_time(db):
    assert [f.column for f in Reading._meta.pk.fields] == ["sensor_id", "ts"]
    with connection.cursor() as cur:
        columns = [c.name for c in connection.introspection.get_table_description(cur, "signs_reading")]
        assert sorted(columns) == ["sensor_id", "ts", "value"]
        if connection.vendor == "sqlite":
            cur.execute("SELECT sql FROM sqlite_master WHERE name = 'signs_reading'")
            assert cur.fetchone()[0].rstrip().endswith("WITHOUT ROWID")
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'signs_reading'")
            assert cur.fetchall() == []  # the primary key is the table itself
        else:
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'signs_reading'")
            indexes = dict(cur.fetchall())
            assert "(sensor_id, ts)" in indexes["signs_reading_pkey"]
            assert set(indexes) == {"signs_reading_pkey", "signs_reading_ts_brin"}
