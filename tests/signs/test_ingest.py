from __future__ import annotations

import time

from chengyun.signs.ingest import ingest
from chengyun.signs.models import Reading, Rollup, Warning

MIN = 60_000


def now_ms() -> int:
    return (int(time.time() * 1000) // MIN) * MIN - 60 * MIN


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
