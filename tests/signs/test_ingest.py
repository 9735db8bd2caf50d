from __future__ import annotations

import gc
import time

import pytest
from django.db import OperationalError
from psycopg import errors as pg_errors

from chengyun.signs import ingest as ingest_module
from chengyun.signs.ingest import ingest
from chengyun.signs.models import Reading, Rollup, Warning

from .conftest import make_sensor

MIN = 60_000


def now_ms() -> int:
    """The start of the hour before this one: the tests' few minutes of
    readings then fall into one hour whenever they run (from a whole minute
    an hour ago they crossed into the next hour when run at hh:57-59)."""
    return (int(time.time() * 1000) // (60 * MIN)) * 60 * MIN - 60 * MIN


def test_batch_stores_each_reading_once_and_refuses_bad_ones_with_a_reason(pressure):
    t0 = now_ms()
    rows = [
        {"sensor": "WP-0001", "ts": t0, "value": 0.31},
        {"sensor": "WP-0001", "ts": t0 + 10_000, "value": "0.33"},
        {"sensor": "WP-0001", "ts": t0 + 10_000, "value": 0.33},  # duplicate in the batch
        {"sensor": "NOPE", "ts": t0, "value": 1},
        {"sensor": "WP-0001", "ts": t0 + 20_000, "value": "abc"},
        {"sensor": "WP-0001", "ts": t0 + 86_400_000, "value": 0.3},  # tomorrow
        {"sensor": "WP-0001", "ts": "2001-01-01T00:00:00+08:00", "value": 0.3},
    ]
    res = ingest(rows)
    assert (res.received, res.stored, res.duplicates, len(res.refused)) == (7, 2, 1, 4)
    assert [(r.index, r.field) for r in res.refused] == [(3, "sensor"), (4, "value"), (5, "ts"), (6, "ts")]
    again = ingest(rows[:2])
    assert (again.stored, again.duplicates) == (0, 2)
    assert Reading.objects.count() == 2
    hour = Rollup.objects.get(resolution="h")
    assert (hour.count, hour.min, hour.max) == (2, 0.31, 0.33)
    assert abs(hour.sum - 0.64) < 1e-9
    # A sensor reporting once a minute keeps no minute rollups (its raw data are per minute).
    assert not Rollup.objects.filter(resolution="m").exists()


def test_fast_sensors_get_minute_rollups(pressure):
    pressure.interval_s = 10
    pressure.save()
    t0 = now_ms()
    ingest([("WP-0001", t0 + i * 10_000, float(i)) for i in range(12)])  # two minutes
    minutes = list(Rollup.objects.filter(resolution="m").order_by("bucket").values_list("count", "min", "max", "sum"))
    assert minutes == [(6, 0.0, 5.0, 15.0), (6, 6.0, 11.0, 51.0)]


def test_one_excursion_makes_one_warning_with_hysteresis(pressure):
    t0 = now_ms()
    values = [0.3, 0.52, 0.49, 0.51, 0.65, 0.55, 0.49, 0.47, 0.3]  # 0.49 is inside the band but not by the hysteresis
    ingest([("WP-0001", t0 + i * MIN, v) for i, v in enumerate(values)])
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.peak_value) == ("band_high", "alarm", 0.65)
    assert w.started_ms == t0 + MIN and w.ended_ms == t0 + 7 * MIN
    assert w.case is not None and w.case.channel == "sensor"


def test_a_batch_overlapping_stored_readings_stores_and_rolls_up_only_the_new_ones(pressure):
    pressure.interval_s = 10
    pressure.save()
    t0 = now_ms()
    first = ingest([("WP-0001", t0 + i * 10_000, 0.3 + i / 100) for i in range(3)])
    assert (first.stored, first.duplicates) == (3, 0)
    # Two of these were stored before (one with another value: the stored one stays), two are new.
    res = ingest([("WP-0001", t0 + 10_000, 0.9), ("WP-0001", t0 + 20_000, 0.32),
                  ("WP-0001", t0 + 30_000, 0.25), ("WP-0001", t0 + 40_000, 0.35)])
    assert (res.stored, res.duplicates) == (2, 2)
    assert list(Reading.objects.order_by("ts").values_list("value", flat=True)) == [0.3, 0.31, 0.32, 0.25, 0.35]
    hour = Rollup.objects.get(resolution="h")
    assert (hour.count, hour.min, hour.max) == (5, 0.25, 0.35)
    assert abs(hour.sum - 1.53) < 1e-9
    assert sum(Rollup.objects.filter(resolution="m").values_list("count", flat=True)) == 5
    pressure.refresh_from_db()
    assert (pressure.last_ms, pressure.last_value) == (t0 + 40_000, 0.35)


def test_readings_sent_out_of_order_and_across_sensors_are_all_kept(pressure, pressure_kind):
    other = make_sensor(code="WP-0002", kind=pressure_kind)
    t0 = now_ms()
    rows = [("WP-0002", t0 + 2 * MIN, 0.4), ("WP-0001", t0 + MIN, 0.3), ("WP-0002", t0, 0.41), ("WP-0001", t0, 0.31)]
    assert ingest(rows).stored == 4
    assert list(Reading.objects.filter(sensor=other).order_by("ts").values_list("ts", "value")) == [
        (t0, 0.41), (t0 + 2 * MIN, 0.4)]
    other.refresh_from_db()
    assert (other.last_ms, other.last_value) == (t0 + 2 * MIN, 0.4)


@pytest.mark.django_db(transaction=True)
def test_a_batch_rolled_back_by_a_deadlock_is_written_again_once(pressure, monkeypatch):
    real, attempts = ingest_module._store_and_evaluate, []

    def deadlocked_once(*args):
        attempts.append(1)
        if len(attempts) == 1:
            real(*args)  # written, then the database picks this transaction as the deadlock victim
            raise OperationalError("deadlock detected") from pg_errors.DeadlockDetected()
        return real(*args)

    monkeypatch.setattr(ingest_module, "_store_and_evaluate", deadlocked_once)
    monkeypatch.setattr(ingest_module, "RETRY_PAUSE_S", 0.001)
    t0 = now_ms()
    res = ingest([("WP-0001", t0 + i * MIN, v) for i, v in enumerate([0.3, 0.55, 0.3])])
    assert len(attempts) == 2
    assert (res.stored, res.duplicates, res.warnings_opened, res.warnings_closed) == (3, 0, 1, 1)
    assert Reading.objects.count() == 3 and Warning.objects.count() == 1
    assert Rollup.objects.get(resolution="h").count == 3


def test_inside_a_callers_transaction_a_deadlock_is_the_callers_to_handle(pressure, monkeypatch):
    def deadlocked(*args):
        raise OperationalError("deadlock detected") from pg_errors.DeadlockDetected()

    monkeypatch.setattr(ingest_module, "_store_and_evaluate", deadlocked)
    with pytest.raises(OperationalError):
        ingest([("WP-0001", now_ms(), 0.3)])


def test_the_garbage_collector_is_paused_for_a_batch_only(pressure, monkeypatch):
    seen = []
    real = ingest_module._store_and_evaluate
    monkeypatch.setattr(ingest_module, "_store_and_evaluate", lambda *a: seen.append(gc.isenabled()) or real(*a))
    assert gc.isenabled()
    ingest([("WP-0001", now_ms(), 0.3)])
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        ingest([("WP-0001", now_ms() + MIN, 0.3)])
        assert not gc.isenabled()  # the caller's choice stays
    finally:
        gc.enable()
