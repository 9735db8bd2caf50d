"""Taking in readings: validate each, store each (sensor, time) once, keep
the minute and hour rollups up to date, then let the rules look at the new
values. One call is one transaction: a batch is stored whole or not at all,
so an acknowledgement sent after :func:`ingest` returns is never a lie.

Validation is vectorised with numpy; the valid readings are sorted by
(sensor, time), the key of the reading table (migration 0003), and written:

* SQLite, the usual batch (nothing in it stored yet): straight into the
  reading table with multi-row ``INSERT … ON CONFLICT DO NOTHING``, the
  rollups computed with numpy and upserted the same way. SQLite has one
  writer at a time, so the row count says exactly whether every reading was
  new; if not, that savepoint is rolled back and the general path runs.
* The general path (PostgreSQL always, SQLite for a retried or overlapping
  batch): through a temporary table — bulk-load the rows (``COPY`` on
  PostgreSQL), delete the ones already stored, copy the rest into the
  reading table and fold them into the rollups with one ``INSERT … ON
  CONFLICT DO UPDATE`` per resolution.

Minute rollups are kept for sensors that report more often than once a
minute; for the others the raw readings already are per minute, and the hour
rollups serve long ranges. On PostgreSQL a transaction picked as a deadlock
victim (or failing serialization) is run again, a few times. The cyclic
garbage collector is paused during a batch (see :func:`_collector_paused`).
"""

from __future__ import annotations

import gc
import json
import math
import random
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils.translation import gettext as _
from psycopg import errors as pg_errors

from .models import HOUR_MS, MINUTE_MS, Sensor

MINUTE_ROLLUP_BELOW_S = 60  # minute rollups for sensors that report more often than this
ROWS_PER_STATEMENT = 200  # rows in one multi-row INSERT on SQLite (3 or 6 parameters each)
RETRIES = 3  # a batch rolled back by a deadlock or serialization failure (PostgreSQL) is written again
RETRY_PAUSE_S = 0.05  # times the attempt, jittered: the other transaction finishes meanwhile


@dataclass
class Refusal:
    index: int
    sensor: str
    reason: str
    field: str

    def as_dict(self) -> dict:
        return {"index": self.index, "sensor": self.sensor, "field": self.field, "reason": self.reason}


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)
    warnings_opened: int = 0
    warnings_closed: int = 0

    def as_dict(self) -> dict:
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                "refused": len(self.refused), "refusals": [r.as_dict() for r in self.refused[:1000]],
                "warnings_opened": self.warnings_opened, "warnings_closed": self.warnings_closed}


# --------------------------------------------------------------------------- sensors by code


_sensor_lock = threading.Lock()
_sensors: dict[str, int] = {}
_sensors_loaded = [0.0]
SENSOR_CACHE_SECONDS = 30.0


def sensor_ids(codes: Iterable[str]) -> dict[str, int]:
    """code -> id of active sensors, cached per process; an unknown code
    reloads the cache (at most once a second) so new sensors are seen at once."""
    codes = set(codes)
    with _sensor_lock:
        stale = time.monotonic() - _sensors_loaded[0] > SENSOR_CACHE_SECONDS
        missing = codes - _sensors.keys()
        if stale or (missing and time.monotonic() - _sensors_loaded[0] > 1.0):
            _sensors.clear()
            _sensors.update(Sensor.objects.filter(active=True).values_list("code", "id"))
            _sensors_loaded[0] = time.monotonic()
        return {c: _sensors[c] for c in codes if c in _sensors}


def forget_sensors() -> None:
    with _sensor_lock:
        _sensors.clear()
        _sensors_loaded[0] = 0.0


# --------------------------------------------------------------------------- parsing


def parse_ts(value, tz: ZoneInfo) -> int:
    """Milliseconds since the epoch from an RFC 3339 string (a string
    without a zone is city time), a datetime, or a number (seconds, or
    milliseconds when larger than 10^11)."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError
        return int(value if abs(value) > 1e11 else value * 1000)
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if not text:
            raise ValueError
        if text.replace(".", "", 1).isdigit():
            return parse_ts(float(text), tz)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return int(dt.timestamp() * 1000)


def parse_value(value) -> float:
    if isinstance(value, bool):
        raise ValueError
    v = float(value)
    if not math.isfinite(v):
        raise ValueError
    return v


# --------------------------------------------------------------------------- the batch


class _StoredBefore(Exception):
    """Some readings of the batch were already stored: take the general path."""


def _sql_minmax() -> tuple[str, str]:
    return ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")


def _rollup_upsert() -> str:
    """``ON CONFLICT`` clause folding new counts, extremes and sums into a stored rollup row."""
    least, greatest = _sql_minmax()
    return ("ON CONFLICT (sensor_id, resolution, bucket) DO UPDATE SET "
            "count = signs_rollup.count + excluded.count, "
            f"min = {least}(signs_rollup.min, excluded.min), max = {greatest}(signs_rollup.max, excluded.max), "
            "sum = signs_rollup.sum + excluded.sum")


def id_set_sql(ids: list[int]) -> tuple[str, list]:
    """``SELECT`` of a list of ids passed as one parameter, for ``… IN (…)``:
    a JSON array on SQLite, an array on PostgreSQL. Binding thousands of ids
    one by one (Django's ``__in``) costs more than the query."""
    if connection.vendor == "postgresql":
        return "SELECT unnest(%s::bigint[])", [ids]
    return "SELECT value FROM json_each(%s)", [json.dumps(ids)]


def _minute_sensors(cur, ids: list[int]) -> list[int]:
    """Of these sensors, those reporting more often than once a minute (they keep minute rollups)."""
    sql, params = id_set_sql(ids)
    cur.execute(f"SELECT id FROM signs_sensor WHERE interval_s < {MINUTE_ROLLUP_BELOW_S} AND id IN ({sql})", params)
    return [r[0] for r in cur.fetchall()]


def _ensure_temp_table(cursor) -> None:
    if connection.vendor == "postgresql":
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS signs_in (sensor_id bigint, ts bigint, value double precision)"
                       " ON COMMIT DELETE ROWS")
    else:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS signs_in (sensor_id INTEGER, ts INTEGER, value REAL)")
        cursor.execute("DELETE FROM signs_in")


def _write(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> np.ndarray | None:
    """Store the new readings of a batch (sorted by sensor, then time, each
    (sensor, time) once) and fold them into the rollups. Returns which rows
    were new, or None when all were."""
    if connection.vendor == "sqlite":
        try:
            _write_direct(sid, ts, vals)
            return None
        except _StoredBefore:
            pass  # a retried or overlapping batch: the savepoint is rolled back, take the general path
    return _write_through_temp_table(list(zip(sid.tolist(), ts.tolist(), vals.tolist(), strict=True)))


def _write_direct(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
    """SQLite, when no reading of the batch is stored yet (the usual case):
    insert straight into the reading table and fold in the rollups computed
    with numpy. SQLite has one writer at a time, so the insert's row count
    tells exactly whether every reading was new; if not, :class:`_StoredBefore`
    rolls the insert back (a savepoint) and the caller takes the general path.
    (On PostgreSQL the same with arrays and ``unnest`` measured slower than the
    general path: psycopg spends more turning 50,000-item lists into arrays
    than ``COPY`` does, and the server time did not drop.)"""
    with transaction.atomic(), connection.cursor() as cur:
        stored = _insert_many(cur, "INSERT INTO signs_reading (sensor_id, ts, value)", "(%s, %s, %s)",
                              "ON CONFLICT DO NOTHING", [sid.tolist(), ts.tolist(), vals.tolist()])
        if stored != len(sid):
            raise _StoredBefore
        minute = np.isin(sid, _minute_sensors(cur, sid[np.concatenate(([True], sid[1:] != sid[:-1]))].tolist()))
        upsert = _rollup_upsert()
        for resolution, size, keep in (("m", MINUTE_MS, minute), ("h", HOUR_MS, None)):
            part = (sid, ts, vals) if keep is None else (sid[keep], ts[keep], vals[keep])
            if len(part[0]):
                _insert_many(cur, "INSERT INTO signs_rollup (sensor_id, resolution, bucket, count, min, max, sum)",
                             f"(%s, '{resolution}', %s, %s, %s, %s, %s)", upsert, _rollup_columns(*part, size))


def _insert_many(cur, head: str, row: str, tail: str, columns: list[list]) -> int:
    """``{head} VALUES {row}, {row}, … {tail}`` for rows held column by column
    (``row`` has one ``%s`` per column and may hold constants), ROWS_PER_STATEMENT
    rows a statement: SQLite then binds the values of many rows per statement
    run, which takes a third less time than one statement run per row.
    Returns the number of rows changed."""
    n, width = len(columns[0]), len(columns)
    flat = list(chain.from_iterable(zip(*columns, strict=True)))
    full = n - n % ROWS_PER_STATEMENT
    step = ROWS_PER_STATEMENT * width
    changed = 0
    if full:
        cur.executemany(f"{head} VALUES {', '.join([row] * ROWS_PER_STATEMENT)} {tail}",
                        (flat[i:i + step] for i in range(0, full * width, step)))
        changed += cur.rowcount
    if n > full:
        cur.execute(f"{head} VALUES {', '.join([row] * (n - full))} {tail}", flat[full * width:])
        changed += cur.rowcount
    return changed


def _rollup_columns(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, size: int) -> list[list]:
    """Columns sensor, bucket start, count, min, max, sum: one row per sensor
    and bucket of ``size`` ms, from arrays sorted by sensor, then time."""
    bucket = ts // size * size
    starts = np.flatnonzero(np.concatenate(([True], (sid[1:] != sid[:-1]) | (bucket[1:] != bucket[:-1]))))
    count = np.diff(np.append(starts, len(sid)))
    return [sid[starts].tolist(), bucket[starts].tolist(), count.tolist(), np.minimum.reduceat(vals, starts).tolist(),
            np.maximum.reduceat(vals, starts).tolist(), np.add.reduceat(vals, starts).tolist()]


def _write_through_temp_table(rows: list[tuple[int, int, float]]) -> np.ndarray | None:
    """The general path (PostgreSQL always; SQLite when some readings were
    stored before): through a temporary table, dropping the stored ones, with
    the rollups folded in SQL."""
    upsert = _rollup_upsert()
    with connection.cursor() as cur:
        _ensure_temp_table(cur)
        if connection.vendor == "postgresql":
            with cur.cursor.copy("COPY signs_in (sensor_id, ts, value) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cur.executemany("INSERT INTO signs_in (sensor_id, ts, value) VALUES (%s, %s, %s)", rows)
        cur.execute("DELETE FROM signs_in WHERE EXISTS (SELECT 1 FROM signs_reading r "
                    "WHERE r.sensor_id = signs_in.sensor_id AND r.ts = signs_in.ts)")
        duplicates = cur.rowcount if cur.rowcount and cur.rowcount > 0 else 0
        # A fixed order (sensor, time) for every write: two batches sharing
        # buckets then take their row locks in the same order and cannot
        # deadlock each other on PostgreSQL.
        cur.execute("INSERT INTO signs_reading (sensor_id, ts, value) SELECT sensor_id, ts, value FROM signs_in "
                    "ORDER BY sensor_id, ts")
        for resolution, size, only in (("m", MINUTE_MS, MINUTE_ROLLUP_BELOW_S), ("h", HOUR_MS, None)):
            # A sensor reporting once a minute or less often gets no minute
            # rollup: it would repeat its raw readings one for one.
            where = (f"sensor_id IN (SELECT id FROM signs_sensor WHERE interval_s < {only})" if only else "true")
            cur.execute(
                f"INSERT INTO signs_rollup (sensor_id, resolution, bucket, count, min, max, sum) "
                f"SELECT sensor_id, '{resolution}', (ts / {size}) * {size}, COUNT(*), MIN(value), MAX(value), SUM(value) "
                f"FROM signs_in WHERE {where} GROUP BY sensor_id, ts / {size} ORDER BY sensor_id, ts / {size} {upsert}"
            )
        new = None
        if duplicates:
            cur.execute("SELECT sensor_id, ts FROM signs_in")
            kept = set(cur.fetchall())
            new = np.fromiter(((s, t) in kept for s, t, _v in rows), bool, len(rows))
        if connection.vendor != "postgresql":
            cur.execute("DELETE FROM signs_in")
    return new


def _as_float_array(raw: list, parse) -> tuple[np.ndarray, np.ndarray]:
    """(values, ok) — the fast path converts the whole list at once; only a
    list holding strings or None falls back to parsing item by item."""
    try:
        arr = np.array(raw, dtype=np.float64)
        return arr, np.isfinite(arr)
    except (TypeError, ValueError):
        out = np.empty(len(raw), np.float64)
        ok = np.ones(len(raw), bool)
        for i, x in enumerate(raw):
            try:
                out[i] = parse(x)
            except (TypeError, ValueError, OverflowError):
                out[i], ok[i] = np.nan, False
        return out, ok & np.isfinite(out)


def ingest(rows: Iterable, *, source: str = "", evaluate: bool = True, now_ms: int | None = None) -> IngestResult:
    """Take in readings: each a mapping with ``sensor``, ``ts`` and ``value``
    (or a (sensor, ts, value) tuple). Refused readings are counted with their
    reason; the rest of the batch is kept. Validation is vectorised: the
    common batch (known sensors, numeric times and values) never loops in Python."""
    items = rows if isinstance(rows, list) else list(rows)
    if not items:
        return IngestResult()
    if isinstance(items[0], (tuple, list)):
        codes, times, values = (list(x) for x in zip(*items, strict=True))
    else:
        codes = [r.get("sensor") for r in items]
        times = [r.get("ts") for r in items]
        values = [r.get("value") for r in items]
    return ingest_columns(codes, times, values, source=source, evaluate=evaluate, now_ms=now_ms)


def ingest_columns(codes: list, times: list, values: list, *, source: str = "", evaluate: bool = True,
                   now_ms: int | None = None) -> IngestResult:
    """:func:`ingest` for readings held column by column: sensor codes, times
    and values, reading i at index i of each (the HTTP API reads a body
    straight into columns)."""
    with _collector_paused():
        result = _ingest(codes, times, values, evaluate=evaluate, now_ms=now_ms)
    if source and result.received:
        tally(source, result)
    return result


def tally(source: str, result: IngestResult, at_ms: int | None = None) -> None:
    """Add a batch to its source's count for the hour (:class:`SourceTally`):
    one statement, after the batch's own transaction (a batch retried after
    a failure is counted again, its readings then as duplicates)."""
    from .models import SourceTally

    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    t = connection.ops.quote_name(SourceTally._meta.db_table)
    reason = result.refused[-1].reason[:300] if result.refused else ""
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {t} (source, hour_ms, batches, received, stored, duplicates, refused, last_ms, "
            "last_refusal) VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT (source, hour_ms) DO UPDATE SET batches = {t}.batches + 1, "
            f"received = {t}.received + excluded.received, stored = {t}.stored + excluded.stored, "
            f"duplicates = {t}.duplicates + excluded.duplicates, refused = {t}.refused + excluded.refused, "
            "last_ms = excluded.last_ms, last_refusal = CASE WHEN excluded.last_refusal = '' "
            f"THEN {t}.last_refusal ELSE excluded.last_refusal END",
            [source[:120], at_ms // HOUR_MS * HOUR_MS, result.received, result.stored, result.duplicates,
             len(result.refused), at_ms, reason])


@contextmanager
def _collector_paused():
    """Python's cyclic garbage collector paused for one batch. A batch makes
    hundreds of thousands of short-lived objects, none of them in reference
    cycles, while the process may hold many more (a decoded HTTP body, an
    MQTT backlog); left on, the collector makes passes over all of them
    meanwhile. Measured in the benchmark process (which holds 300,000 rows):
    7 % of the CPU time of batches of 50,000."""
    if not gc.isenabled():  # the caller's choice, or another thread's batch: leave it as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _sensor_column(codes: list) -> np.ndarray:
    """Sensor id of each code, -1 for an unknown or missing one."""
    try:
        names = set(codes)
    except TypeError:  # an object or a list in place of a code
        names = None
    if names is not None:
        names.discard(None)
        if all(type(c) is str for c in names):
            get = sensor_ids(names).get
            return np.array([get(c, -1) for c in codes], np.int64)
    ids = sensor_ids({str(c) for c in codes if c is not None})
    return np.array([ids.get(c if isinstance(c, str) else str(c), -1) if c is not None else -1 for c in codes],
                    np.int64)


def _ingest(codes: list, ts_raw: list, vals_raw: list, *, evaluate: bool, now_ms: int | None) -> IngestResult:
    tz = ZoneInfo(settings.TIME_ZONE)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    result = IngestResult(received=len(codes))
    if not codes:
        return result
    sid = _sensor_column(codes)
    # Times: numbers are seconds or ms; strings are RFC 3339.
    ts_num, ts_ok = _as_float_array(ts_raw, lambda x: parse_ts(x, tz) / 1000.0)
    ts = np.where(np.abs(ts_num) > 1e11, ts_num, ts_num * 1000.0)
    ts = np.where(ts_ok, ts, 0).astype(np.int64)
    vals, val_ok = _as_float_array(vals_raw, parse_value)
    if bool in set(map(type, vals_raw)):  # true and false are not numbers here, though numpy takes them
        val_ok[[i for i, x in enumerate(vals_raw) if isinstance(x, bool)]] = False
    future = now_ms + settings.SIGNS_MAX_FUTURE_SECONDS * 1000
    past = now_ms - settings.SIGNS_MAX_AGE_DAYS * 86_400_000
    known = sid >= 0
    too_new = ts_ok & (ts > future)
    too_old = ts_ok & (ts < past)
    good = known & ts_ok & ~too_new & ~too_old & val_ok
    if not good.all():
        days = settings.SIGNS_MAX_AGE_DAYS
        for i in np.flatnonzero(~good).tolist():
            code = str(codes[i] or "")
            if not known[i]:
                reason, fld = _("Unknown sensor."), "sensor"
            elif not ts_ok[i]:
                reason, fld = _("The time is not an RFC 3339 time or a number."), "ts"
            elif too_new[i]:
                reason, fld = _("The time is in the future."), "ts"
            elif too_old[i]:
                reason, fld = _("The time is too far in the past (more than %(days)s days).") % {"days": days}, "ts"
            else:
                reason, fld = _("The value is not a number."), "value"
            result.refused.append(Refusal(i, code, reason, fld))
    sid, ts, vals = sid[good], ts[good], vals[good]
    if not len(sid):
        return result
    # One reading per (sensor, time) within the batch: the first one counts
    # (lexsort is stable).
    order = np.lexsort((ts, sid))
    sid, ts, vals = sid[order], ts[order], vals[order]
    first = np.ones(len(sid), bool)
    first[1:] = (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])
    result.duplicates += int((~first).sum())
    sid, ts, vals = sid[first], ts[first], vals[first]
    for attempt in range(RETRIES + 1):
        try:
            with transaction.atomic():
                stored, opened, closed = _store_and_evaluate(sid, ts, vals, evaluate)
            break
        except OperationalError as e:
            # Only a transaction of our own can be tried again; inside a
            # caller's transaction the error is the caller's to handle.
            if attempt == RETRIES or connection.in_atomic_block or not _worth_retrying(e):
                raise
            time.sleep(RETRY_PAUSE_S * (attempt + 1) * (0.5 + random.random()))
    result.duplicates += len(sid) - stored
    result.stored = stored
    result.warnings_opened, result.warnings_closed = opened, closed
    return result


def _worth_retrying(error: OperationalError) -> bool:
    """A deadlock or serialization failure (PostgreSQL): the transaction was
    rolled back whole and the same batch may simply be written again."""
    return isinstance(error.__cause__, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure))


def _store_and_evaluate(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, evaluate: bool) -> tuple[int, int, int]:
    """The transactional part of :func:`ingest`: store, run the rules (which
    judge only values newer than each sensor's newest reading so far), then
    note each sensor's newest reading. Returns (stored, warnings opened, closed)."""
    new = _write(sid, ts, vals)
    if new is not None:  # some were stored before: keep the new ones only (still in order)
        sid, ts, vals = sid[new], ts[new], vals[new]
    if not len(sid):
        return 0, 0, 0
    opened = closed = 0
    if evaluate:  # before the sensors' last readings move: the rules judge only values newer than those
        from .rules import evaluate_arrays

        opened, closed = evaluate_arrays(sid, ts, vals)
    _update_last(sid, ts, vals)
    return len(sid), opened, closed


def _update_last(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
    """Each sensor's newest reading (the arrays are sorted by sensor, then
    time). On PostgreSQL one statement for all sensors; SQLite runs the
    statements of an ``executemany`` in-process, so one a sensor costs little."""
    last = np.ones(len(sid), bool)
    last[:-1] = sid[1:] != sid[:-1]
    ids, times, values = sid[last].tolist(), ts[last].tolist(), vals[last].tolist()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "UPDATE signs_sensor s SET last_ms = n.ts, last_value = n.value "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) AS n(id, ts, value) "
                "WHERE s.id = n.id AND (s.last_ms IS NULL OR s.last_ms < n.ts)",
                [ids, times, values],
            )
        else:
            cur.executemany(
                "UPDATE signs_sensor SET last_ms = %s, last_value = %s WHERE id = %s AND (last_ms IS NULL OR last_ms < %s)",
                [(t, v, s_, t) for s_, t, v in zip(ids, times, values, strict=True)],
            )
