"""Taking in readings: validate each, store each (sensor, time) once, keep
the minute and hour rollups up to date, then let the rules look at the new
values. One call is one transaction: a batch is stored whole or not at all,
so an acknowledgement sent after :func:`ingest` returns is never a lie.

A batch goes through a temporary table: bulk-insert the valid rows, delete
the ones already stored (duplicates), copy the rest into the reading table,
and fold them into the rollups with one ``INSERT … ON CONFLICT DO UPDATE`` per
resolution. Minute rollups are kept for sensors that report more often than
once a minute; for the others the raw readings already are per minute, and
the hour rollups serve long ranges. The same SQL runs on SQLite and PostgreSQL, apart from the
two-argument min/max (``MIN``/``MAX`` on SQLite, ``LEAST``/``GREATEST`` on PostgreSQL).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext as _

from .models import HOUR_MS, MINUTE_MS, Sensor

MINUTE_ROLLUP_BELOW_S = 60  # minute rollups for sensors that report more often than this


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


def _sql_minmax() -> tuple[str, str]:
    return ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")


def _ensure_temp_table(cursor) -> None:
    if connection.vendor == "postgresql":
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS signs_in (sensor_id bigint, ts bigint, value double precision)"
                       " ON COMMIT DELETE ROWS")
    else:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS signs_in (sensor_id INTEGER, ts INTEGER, value REAL)")
        cursor.execute("DELETE FROM signs_in")


def _write(rows: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Store new rows, update rollups; returns the rows that were new."""
    least, greatest = _sql_minmax()
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
                f"FROM signs_in WHERE {where} GROUP BY sensor_id, ts / {size} ORDER BY sensor_id, ts / {size} "
                f"ON CONFLICT (sensor_id, resolution, bucket) DO UPDATE SET "
                f"count = signs_rollup.count + excluded.count, "
                f"min = {least}(signs_rollup.min, excluded.min), max = {greatest}(signs_rollup.max, excluded.max), "
                f"sum = signs_rollup.sum + excluded.sum"
            )
        if duplicates:
            cur.execute("SELECT sensor_id, ts, value FROM signs_in")
            new = [(int(a), int(b), float(c)) for a, b, c in cur.fetchall()]
        else:
            new = rows
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
    tz = ZoneInfo(settings.TIME_ZONE)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    items = rows if isinstance(rows, list) else list(rows)
    n = len(items)
    result = IngestResult(received=n)
    if not n:
        return result
    if isinstance(items[0], (tuple, list)):
        codes, ts_raw, vals_raw = (list(x) for x in zip(*items, strict=True))
    else:
        codes = [r.get("sensor") for r in items]
        ts_raw = [r.get("ts") for r in items]
        vals_raw = [r.get("value") for r in items]
    ids = sensor_ids({str(c) for c in codes if c is not None})
    sid = np.array([ids.get(c if isinstance(c, str) else str(c), -1) if c is not None else -1 for c in codes], np.int64)
    # Times: numbers are seconds or ms; strings are RFC 3339.
    ts_num, ts_ok = _as_float_array(ts_raw, lambda x: parse_ts(x, tz) / 1000.0)
    ts = np.where(np.abs(ts_num) > 1e11, ts_num, ts_num * 1000.0)
    ts = np.where(ts_ok, ts, 0).astype(np.int64)
    vals, val_ok = _as_float_array(vals_raw, parse_value)
    bools = [i for i, x in enumerate(vals_raw) if isinstance(x, bool)]
    if bools:
        val_ok[bools] = False
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
    # One reading per (sensor, time) within the batch: the first one counts.
    order = np.lexsort((np.arange(len(sid)), ts, sid))
    sid, ts, vals = sid[order], ts[order], vals[order]
    first = np.ones(len(sid), bool)
    first[1:] = (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])
    result.duplicates += int((~first).sum())
    sid, ts, vals = sid[first], ts[first], vals[first]
    batch = list(zip(sid.tolist(), ts.tolist(), vals.tolist(), strict=True))
    with transaction.atomic():
        new = _write(batch)
        result.duplicates += len(batch) - len(new)
        result.stored = len(new)
        if new:
            if len(new) != len(batch):  # some were stored before: keep the new ones only
                sid = np.fromiter((r[0] for r in new), np.int64, len(new))
                ts = np.fromiter((r[1] for r in new), np.int64, len(new))
                vals = np.fromiter((r[2] for r in new), np.float64, len(new))
                order = np.lexsort((ts, sid))
                sid, ts, vals = sid[order], ts[order], vals[order]
            _update_last(sid, ts, vals)
            if evaluate:
                from .rules import evaluate_arrays

                opened, closed = evaluate_arrays(sid, ts, vals)
                result.warnings_opened, result.warnings_closed = opened, closed
    return result


def _update_last(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
    """Each sensor's newest reading (the arrays are sorted by sensor, then time)."""
    last = np.ones(len(sid), bool)
    last[:-1] = sid[1:] != sid[:-1]
    rows = [(t, v, s_, t) for s_, t, v in zip(sid[last].tolist(), ts[last].tolist(), vals[last].tolist(), strict=True)]
    with connection.cursor() as cur:
        cur.executemany(
            "UPDATE signs_sensor SET last_ms = %s, last_value = %s WHERE id = %s AND (last_ms IS NULL OR last_ms < %s)",
            rows,
        )
