"""The warning rules on edge cases, driven through ingest() with crafted
series: exact count, rule, level, start, end and peak of every warning."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from chengyun.areas.models import Area
from chengyun.signs.ingest import forget_sensors, ingest
from chengyun.signs.models import Baseline, Indicator, Reading, Rollup, Sensor, Warning
from chengyun.signs.rules import compute_baselines, hour_of_week, sweep_missing

from .conftest import make_indicator, make_sensor

MIN = 60_000
HOUR = 3_600_000


def base_ms() -> int:
    """Two hours ago, on a whole hour."""
    return (int(time.time() * 1000) // HOUR) * HOUR - 2 * HOUR


def feed(code: str, t0: int, values, step: int = MIN):
    return ingest([(code, t0 + i * step, v) for i, v in enumerate(values)])


def summary(**filters):
    return [(w.rule, w.level, w.started_ms, w.ended_ms, w.peak_value)
            for w in Warning.objects.filter(**filters).order_by("started_ms", "rule")]


@pytest.fixture
def level(pressure_kind):
    """Bands with exactly representable edges: warning 20-50, alarm 10-60, hysteresis 2."""
    s = make_sensor(code="LV-1", kind=pressure_kind)
    make_indicator(sensor=s, warn_low=20, warn_high=50, alarm_low=10, alarm_high=60, hysteresis=2, missing_intervals=0)
    return s


# --------------------------------------------------------------------------- bands


def test_a_value_exactly_at_a_level_is_inside_and_exactly_at_the_hysteresis_ends(level):
    t0 = base_ms()
    feed("LV-1", t0, [30, 50, 20, 60, 48, 30])
    # 50 and 20 are exactly at the warning levels: inside. 60 is exactly at the alarm level:
    # beyond the warning level only. 48 = 50 - 2 ends the warning.
    assert summary() == [("band_high", "warning", t0 + 3 * MIN, t0 + 4 * MIN, 60)]
    assert Indicator.objects.get(code="LV-1").status == "ok"


def test_warning_rises_to_alarm_keeps_it_and_ends_only_past_the_hysteresis(level):
    t0 = base_ms()
    res = feed("LV-1", t0, [30, 55, 65, 61, 55, 49, 50.5, 48.5, 48, 30])
    assert (res.warnings_opened, res.warnings_closed) == (1, 1)
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.started_ms, w.ended_ms, w.peak_value, w.peak_ms) == (
        "band_high", "alarm", t0 + MIN, t0 + 8 * MIN, 65, t0 + 2 * MIN)
    assert w.explanation["raised_to_alarm_at"] == t0 + 2 * MIN
    assert w.explanation["limit"] == 50 and w.last_value == 48
    assert w.case is not None and w.case.channel == "sensor"


def test_an_alarms_case_is_stored_in_the_sites_language_and_read_in_the_readers(level, settings, client):
    from chengyun.org.models import Role

    from .. import factories as f

    settings.LANGUAGE_CODE = "zh-hans"
    Indicator.objects.filter(code="LV-1").update(name="水位", name_en="Water level")
    feed("LV-1", base_ms(), [30, 65])
    case = Warning.objects.get().case
    assert case.title.startswith("报警：水位"), case.title
    client.force_login(f.make_user(username="desk", role=Role.DISPATCHER, area=Area.objects.get(code=f.CITY)))
    en = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    heading = en[en.index("<h1"):en.index("</h1>")]
    assert "Alarm: Water level" in heading, "the case's title; its report below is shown as stored"
    assert "Alarm: Water level" in client.get("/console/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_the_low_side_mirrors_the_high_side(level):
    t0 = base_ms()
    feed("LV-1", t0, [30, 15, 5, 12, 21, 21.5, 22, 30])
    assert summary() == [("band_low", "alarm", t0 + MIN, t0 + 6 * MIN, 5)]


def test_a_jump_from_above_to_below_the_band_ends_one_warning_and_opens_the_other(level):
    t0 = base_ms()
    feed("LV-1", t0, [30, 70, 5, 30])
    assert summary() == [("band_high", "alarm", t0 + MIN, t0 + 2 * MIN, 70),
                         ("band_low", "alarm", t0 + 2 * MIN, t0 + 3 * MIN, 5)]


def test_one_excursion_over_several_batches_is_one_warning(level):
    t0 = base_ms()
    feed("LV-1", t0, [30, 55])
    assert Indicator.objects.get(code="LV-1").status == "warning"
    feed("LV-1", t0 + 2 * MIN, [65])
    assert Indicator.objects.get(code="LV-1").status == "alarm"
    feed("LV-1", t0 + 3 * MIN, [49])  # inside, not by the hysteresis: still open, last value follows
    w = Warning.objects.get()
    assert (w.ended_ms, w.last_value) == (None, 49)
    feed("LV-1", t0 + 4 * MIN, [47, 46])
    assert summary() == [("band_high", "alarm", t0 + MIN, t0 + 4 * MIN, 65)]
    assert Warning.objects.get().case is not None
    assert Indicator.objects.get(code="LV-1").status == "ok"


def test_a_late_reading_older_than_the_warning_does_not_end_it(level):
    t0 = base_ms()
    feed("LV-1", t0 + 10 * MIN, [55])
    feed("LV-1", t0, [30])  # stored, but it is from before the excursion
    assert summary() == [("band_high", "warning", t0 + 10 * MIN, None, 55)]
    assert Reading.objects.count() == 2


def test_a_batch_older_than_the_last_stored_reading_is_stored_but_opens_nothing(level):
    """Two batches processed out of time order: the older one, out of band at
    its end, must not open a warning that would stay open until the sensor's
    next reading. Its readings are still stored and rolled up."""
    t0 = base_ms()
    feed("LV-1", t0 + 10 * MIN, [30, 31])
    res = feed("LV-1", t0, [30, 55, 65])  # older than the stored 30, 31
    assert (res.stored, res.warnings_opened, res.warnings_closed) == (3, 0, 0)
    assert summary() == []
    assert Indicator.objects.get(code="LV-1").status == "ok"
    assert Reading.objects.count() == 5
    hour = Rollup.objects.get(resolution="h", bucket=t0)
    assert (hour.count, hour.max) == (5, 65)
    sensor = Sensor.objects.get(code="LV-1")
    assert (sensor.last_ms, sensor.last_value) == (t0 + 11 * MIN, 31)


def test_an_older_batch_does_not_end_an_open_warning_and_a_mixed_batch_is_judged_on_its_newer_part(level):
    t0 = base_ms()
    feed("LV-1", t0 + 10 * MIN, [55])
    feed("LV-1", t0, [30, 30])  # older, in band: the excursion goes on
    assert summary() == [("band_high", "warning", t0 + 10 * MIN, None, 55)]
    # older values far out of band, then newer ones back inside: the warning ends at the newer 40
    feed("LV-1", t0 + 5 * MIN, [70, 70, 5, 5, 5, 5, 40])  # t0+5 … t0+11 min
    assert summary() == [("band_high", "warning", t0 + 10 * MIN, t0 + 11 * MIN, 55)]


def test_an_in_band_batch_opens_nothing(level):
    t0 = base_ms()
    res = feed("LV-1", t0, [20 + (i % 31) for i in range(600)], step=10_000)
    assert (res.stored, res.warnings_opened) == (600, 0)
    assert Indicator.objects.get(code="LV-1").status == "ok"


# --------------------------------------------------------------------------- rate of change


@pytest.fixture
def flow(pressure_kind):
    """No bands; at most 5 units per minute (alarm above 10, ends at 2.5 or less)."""
    s = make_sensor(code="FL-1", kind=pressure_kind)
    make_indicator(sensor=s, rate_limit=5, missing_intervals=0)
    return s


def test_a_one_reading_spike_is_one_rate_warning_from_the_spike_to_the_first_calm_reading(flow):
    t0 = base_ms()
    feed("FL-1", t0, [10, 10, 50, 10, 10, 10])
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.started_ms, w.ended_ms, w.peak_value) == ("rate", "alarm", t0 + 2 * MIN, t0 + 4 * MIN, 50)
    assert w.explanation["rate_per_minute"] == 40 and w.explanation["from"] == 10


def test_rate_exactly_at_the_limit_is_allowed_and_the_warning_ends_at_half_the_limit(flow):
    t0 = base_ms()
    feed("FL-1", t0, [0, 5, 10, 16, 19, 21.5, 21.5])  # rates 5, 5, 6, 3, 2.5
    assert summary() == [("rate", "warning", t0 + 3 * MIN, t0 + 5 * MIN, 16)]


def test_rate_is_per_minute_whatever_the_spacing(flow):
    t0 = base_ms()
    feed("FL-1", t0, [0, 40, 80], step=10 * MIN)  # 4 per minute
    feed("FL-1", t0 + 30 * MIN, [81, 92], step=MIN // 2)  # 1 per 30 s, then 11 per 30 s = 22 per minute
    assert summary() == [("rate", "alarm", t0 + 30 * MIN + MIN // 2, None, 92)]


def test_the_first_value_of_a_batch_is_compared_with_the_last_stored_one(flow):
    t0 = base_ms()
    feed("FL-1", t0, [10, 10])
    feed("FL-1", t0 + 2 * MIN, [18])  # +8 in a minute since the stored 10
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.started_ms, w.ended_ms) == ("rate", "warning", t0 + 2 * MIN, None)
    assert w.explanation["from"] == 10


# --------------------------------------------------------------------------- anomaly


def history(code: str, start: int, hours: int, pattern, step: int = 10 * MIN):
    """Readings every ``step`` for ``hours`` hours, cycling through ``pattern``."""
    n = hours * HOUR // step
    return ingest([(code, start + i * step, pattern[i % len(pattern)]) for i in range(n)], evaluate=False)


@pytest.fixture
def usual(pressure_kind):
    s = make_sensor(code="AN-1", kind=pressure_kind, interval_s=600)
    ind = make_indicator(sensor=s, anomaly=True, anomaly_score=6, anomaly_clear=3, missing_intervals=0)
    return ind


def learn(ind, pattern, weeks: int = 2):
    now = int(time.time() * 1000) // HOUR * HOUR
    start = now - weeks * 168 * HOUR
    history(ind.code, start, weeks * 168, pattern)
    assert compute_baselines(Indicator.objects.filter(pk=ind.pk), at=datetime.fromtimestamp(now / 1000, UTC)) == 1
    return now


def test_anomaly_opens_above_the_score_rises_to_alarm_and_ends_below_the_clear_level(usual):
    now = learn(usual, [9, 10, 11])  # every hour: median 10, MAD 1 -> z = |v - 10| / 1.4826
    b = Baseline.objects.filter(indicator=usual, hour_of_week__lt=168)
    assert b.count() == 168 and {(x.median, x.mad) for x in b} == {(10, 1)}
    # two weeks: each hour of the week is that hour of all weekdays (5 × 2 × 6 values) or weekend days (2 × 2 × 6)
    assert {x.samples for x in b} == {60, 24}
    # and the same hour of every working day / rest day, for holidays and worked weekend days
    kinds = Baseline.objects.filter(indicator=usual, hour_of_week__gte=168)
    assert sorted({x.hour_of_week for x in kinds}) == list(range(168, 216))
    assert {x.samples for x in kinds if x.hour_of_week < 192} == {60} and {x.samples for x in kinds if x.hour_of_week >= 192} == {24}
    # z: 6.07 (opens), 3.04 (stays), 10.1, 12.14 (alarm), 2.70 (ends)
    res = ingest([("AN-1", now + i * MIN, v) for i, v in enumerate([10, 19, 14.5, 25, 28, 14, 10])], now_ms=now + HOUR)
    assert (res.warnings_opened, res.warnings_closed) == (1, 1)
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.started_ms, w.ended_ms, w.peak_value) == ("anomaly", "alarm", now + MIN, now + 5 * MIN, 28)
    assert w.explanation["median"] == 10 and w.explanation["mad"] == 1 and w.explanation["peak_z"] == pytest.approx(12.14, abs=0.01)


def test_a_baseline_whose_mad_is_zero_falls_back_to_the_mean_deviation(usual):
    # 5 of 6 values are 10: MAD 0. Mean absolute deviation 1/6 -> spread 1.2533/6 = 0.209
    now = learn(usual, [10, 10, 10, 11, 10, 10])
    b = Baseline.objects.filter(indicator=usual).first()
    assert b.median == 10 and b.mad == pytest.approx(1 / 6 * 1.2533 / 1.4826)
    ingest([("AN-1", now + i * MIN, v) for i, v in enumerate([11, 10, 12, 10, 13, 10])], now_ms=now + HOUR)
    # 11 is ordinary here (z 4.8); 12 is unusual (z 9.6); 13 is an alarm (z 14.4)
    assert summary() == [("anomaly", "warning", now + 2 * MIN, now + 3 * MIN, 12),
                         ("anomaly", "alarm", now + 4 * MIN, now + 5 * MIN, 13)]


def test_a_perfectly_flat_history_uses_a_tiny_spread_and_an_all_zero_history_none(usual, pressure_kind):
    now = learn(usual, [10])
    assert Baseline.objects.filter(indicator=usual).first().mad == 0
    ingest([("AN-1", now + i * MIN, v) for i, v in enumerate([10, 10.001, 11, 10])], now_ms=now + HOUR)
    # spread 0.1 % of 10: 10.001 is z 0.07, 11 is z 67
    assert summary() == [("anomaly", "alarm", now + 2 * MIN, now + 3 * MIN, 11)]

    Warning.objects.all().delete()
    s = make_sensor(code="AN-0", kind=pressure_kind, interval_s=600)
    zero = make_indicator(sensor=s, anomaly=True, missing_intervals=0)
    forget_sensors()  # the code cache reloads at most once a second
    now = learn(zero, [0])
    ingest([("AN-0", now + i * MIN, v) for i, v in enumerate([0, 3, 0])], now_ms=now + HOUR)
    assert summary() == []  # nothing to compare with: no judgement


@pytest.mark.parametrize(("weeks", "monday"), [(2, 10), (3, 20)])
def test_an_hour_of_the_week_is_its_own_baseline_from_three_weeks_on(usual, weeks, monday):
    """Mondays read 20, other days 10. With two weeks of history a Monday hour
    is judged against all weekdays' same hour (median 10: two odd Mondays do
    not make the normal); with three it is its own (median 20)."""
    now = int(time.time() * 1000) // HOUR * HOUR
    times = range(now - weeks * 168 * HOUR, now, 10 * MIN)
    ingest([("AN-1", t, 20.0 if hour_of_week(t) < 24 else 10.0) for t in times], evaluate=False)
    compute_baselines(Indicator.objects.filter(pk=usual.pk), at=datetime.fromtimestamp(now / 1000, UTC))
    medians = dict(Baseline.objects.filter(indicator=usual).values_list("hour_of_week", "median"))
    assert (medians[8], medians[24 + 8], medians[5 * 24 + 8]) == (monday, 10, 10)


# --------------------------------------------------------------------------- missing data


def test_silence_longer_than_the_intervals_is_one_warning_until_a_newer_reading(pressure):
    t0 = base_ms()
    feed("WP-0001", t0, [0.3, 0.3, 0.3])
    last = t0 + 2 * MIN
    assert sweep_missing(last + 3 * MIN)["opened"] == 0  # exactly 3 intervals: not yet
    assert sweep_missing(last + 3 * MIN + 1)["opened"] == 1
    assert sweep_missing(last + 10 * MIN)["opened"] == 0  # already open
    assert Indicator.objects.get(code="WP-0001").status == "silent"
    feed("WP-0001", t0 - 5 * MIN, [0.3])  # a late, older reading: the sensor is still silent
    assert summary() == [("missing", "warning", last + 3 * MIN, None, None)]
    feed("WP-0001", last + 20 * MIN, [0.31, 0.32])
    assert summary() == [("missing", "warning", last + 3 * MIN, last + 20 * MIN, None)]
    assert Indicator.objects.get(code="WP-0001").status == "ok"


def test_a_gap_filled_later_by_buffered_readings_ends_the_warning_at_its_start(pressure):
    t0 = base_ms()
    feed("WP-0001", t0, [0.3])
    sweep_missing(t0 + 10 * MIN)
    feed("WP-0001", t0 + MIN, [0.3, 0.3, 0.3, 0.3, 0.3])  # a gateway uploads what it buffered
    assert summary() == [("missing", "warning", t0 + 3 * MIN, t0 + 3 * MIN, None)]


# --------------------------------------------------------------------------- stuck values


@pytest.fixture
def gauge(pressure_kind):
    """A minute sensor that is stuck when it stays within 0.01 for 10 minutes."""
    s = make_sensor(code="ST-1", kind=pressure_kind)
    make_indicator(sensor=s, flatline_minutes=10, flatline_tolerance=0.01, missing_intervals=0)
    return s


def test_a_stuck_value_is_one_warning_from_the_start_of_the_flat_stretch_until_the_value_moves(gauge):
    t0 = base_ms()
    moving = [0.30, 0.32, 0.29, 0.33]
    res = feed("ST-1", t0, moving + [0.31, 0.314, 0.306] + [0.31] * 9 + [0.35, 0.30])
    # the flat stretch starts at 0.31 (t0+4); it spans 10 minutes at t0+14; 0.35 ends it
    assert (res.warnings_opened, res.warnings_closed) == (1, 1)
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.started_ms, w.ended_ms, w.last_value) == (
        "flatline", "warning", t0 + 4 * MIN, t0 + 16 * MIN, 0.35)
    assert w.explanation["tripped_at"] == t0 + 14 * MIN and w.explanation["readings"] == 11
    assert (w.explanation["low"], w.explanation["high"]) == (0.306, 0.314)
    assert w.case is None  # a device fault: a warning, never an alarm case


def test_a_flat_stretch_over_many_batches_is_found_and_ends_in_a_later_batch(gauge):
    t0 = base_ms()
    feed("ST-1", t0, [0.2, 0.4])
    for k in range(6):  # 0.3 from t0+2: three readings a batch
        feed("ST-1", t0 + (2 + 3 * k) * MIN, [0.3, 0.3, 0.3])
        opened = Warning.objects.count()
        assert opened == (1 if 2 + 3 * k + 2 >= 12 else 0), k
    assert Indicator.objects.get(code="ST-1").status == "warning"
    feed("ST-1", t0 + 20 * MIN, [0.3, 0.5])
    assert summary() == [("flatline", "warning", t0 + 2 * MIN, t0 + 21 * MIN, 0.3)]
    assert Indicator.objects.get(code="ST-1").status == "ok"


def test_a_value_that_keeps_moving_or_a_short_flat_stretch_is_not_stuck(gauge):
    t0 = base_ms()
    feed("ST-1", t0, [0.30 + 0.006 * (i % 4) for i in range(30)])  # moves 0.018 over 4 minutes: beyond 0.01
    feed("ST-1", t0 + 30 * MIN, [0.5] * 10 + [0.6])  # 9 minutes flat
    # slow drift in steps within the tolerance is not a flat line either
    feed("ST-1", t0 + 41 * MIN, [0.6 + 0.004 * i for i in range(30)])
    assert summary() == []


# --------------------------------------------------------------------------- the numpy screen


def test_the_screen_sends_every_indicator_that_could_trip_to_the_evaluator(pressure_kind, monkeypatch):
    """The same random batches with and without the numpy screen of rate and
    anomaly rules give the same warnings and statuses."""
    from django.db import transaction
    from django.utils import timezone

    from chengyun.signs import rules

    codes = [f"SC-{i}" for i in range(12)]
    for i, code in enumerate(codes):
        ind = make_indicator(sensor=make_sensor(code=code, kind=pressure_kind, interval_s=60), warn_low=-100,
                             warn_high=100, rate_limit=(4.0 if i % 3 != 2 else None), anomaly=i % 3 != 0,
                             source="cases" if i == 4 else "sensor", missing_intervals=0,
                             flatline_minutes=6 if i % 4 == 1 else None, flatline_tolerance=0.3)
        if ind.anomaly:
            # the spread differs from hour to hour (the screen looks each value's hour up), but in
            # every hour the spikes below are anomalies: the test must not depend on the hour it runs
            Baseline.objects.bulk_create([Baseline(indicator=ind, hour_of_week=h, median=10.0,
                                                   mad=0.5 + 0.25 * (h % 3), samples=20,
                                                   computed_at=timezone.now()) for h in range(168)])
    rng = np.random.default_rng(7)
    t0 = base_ms()
    values = 10 + rng.standard_normal((len(codes), 60)) * 2
    values[rng.random(values.shape) < 0.03] += 15  # spikes: fast changes and unusual values
    values[1::2, 15:24] = values[1::2, 15:16]  # stuck for 8 minutes, across the second batch's start
    values[1::4, 45:48] = values[1::4, 44:45] + 0.2  # 3 minutes within the tolerance: not stuck
    batches = [[(code, t0 + k * MIN, float(values[i, k])) for k in range(b * 20, b * 20 + 20)
                for i, code in enumerate(codes)] for b in range(3)]

    screened_out = []

    def counting(screen):
        def wrapped(inds, *args):
            tripping = screen(inds, *args)
            screened_out.append(len(inds) - len(tripping))
            return tripping
        return wrapped

    def outcome(screen: bool):
        for name in ("_rates_tripping", "_anomalies_tripping", "_flatlines_tripping"):
            monkeypatch.setattr(rules, name, counting(getattr(rules, name)) if screen
                                else lambda inds, *a: {i.pk for i in inds})
        point = transaction.savepoint()
        for rows in batches:
            ingest(rows)
        got = (list(Warning.objects.order_by("started_ms", "rule", "indicator__code").values_list(
            "indicator__code", "rule", "level", "started_ms", "ended_ms", "peak_value")),
            sorted(Indicator.objects.values_list("code", "status")))
        transaction.savepoint_rollback(point)
        monkeypatch.undo()
        return got

    screened = outcome(True)
    assert screened[0] and any(screened_out)  # rules trip, and the screen spared the evaluator some indicators
    assert {"rate", "anomaly", "flatline"} <= {rule for _code, rule, *_rest in screened[0]}
    assert screened == outcome(False)
