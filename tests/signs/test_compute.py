"""Computed indicators (from other sensors, from case reports) and the
background jobs that run them: `chengyun signs-sweep` and the worker's tasks."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command

from chengyun.clock import simulated
from chengyun.intake.services import ReportInput, submit
from chengyun.signs import services
from chengyun.signs.compute import compute_indicators
from chengyun.signs.ingest import forget_sensors, ingest
from chengyun.signs.models import Indicator, Reading, SourceTally, Warning, from_ms
from chengyun.signs.tasks import next_daily, schedule_signs, signs_minute_task

from .. import factories as f
from .conftest import make_sensor

MIN = 60_000
HOUR = 3_600_000


def bucket_end(interval_ms: int = 5 * MIN) -> int:
    """The end of a whole 5-minute bucket about an hour ago."""
    return (int(time.time() * 1000) - HOUR) // interval_ms * interval_ms


def series(code: str) -> list[tuple[int, float]]:
    return list(Reading.objects.filter(sensor__code=code).order_by("ts").values_list("ts", "value"))


@pytest.fixture
def meters(pressure_kind):
    a = make_sensor(code="M-A", kind=pressure_kind, at="100101001")
    b = make_sensor(code="M-B", kind=pressure_kind, at="100101002")
    forget_sensors()
    return a, b


@pytest.mark.parametrize(("aggregate", "expected"), [("mean", 5.0), ("sum", 10.0), ("max", 9.0), ("min", 1.0)])
def test_an_aggregate_of_the_inputs_last_interval_is_written_once_at_the_bucket_end(meters, aggregate, expected):
    end = bucket_end()
    # Window (end - 5 min, end]: M-A 1, 3 (mean 2) and M-B 8, 9, 7 (mean 8); outside it: 100 and 200.
    ingest([("M-A", end - 5 * MIN, 100), ("M-A", end - 4 * MIN, 1), ("M-A", end, 3), ("M-A", end + MIN, 200),
            ("M-B", end - 3 * MIN, 8), ("M-B", end - 2 * MIN, 9), ("M-B", end - MIN, 7)])
    ind = services.create_indicator(code="AVG", source="aggregate", inputs=["M-A", "M-B"], aggregate=aggregate,
                                    name="平均", name_en="Average", interval_s=300)
    forget_sensors()
    at = from_ms(end + 30_000)
    res = compute_indicators(at, max_buckets=1)
    assert (res["indicators"], res["values"]) == (1, 1)
    assert series("AVG") == [(end, expected)]
    assert compute_indicators(at, max_buckets=1)["values"] == 0  # a rerun stores nothing new
    assert ind.sensor.virtual


def test_catch_up_fills_the_buckets_since_the_last_value_and_skips_empty_ones(meters):
    end = bucket_end()
    ingest([("M-A", end - 10 * MIN + 1, 4), ("M-A", end - 9 * MIN, 6), ("M-B", end - 1, 10)])
    services.create_indicator(code="PEAK", source="aggregate", inputs=["M-A", "M-B"], aggregate="max",
                              name="峰值", interval_s=300)
    forget_sensors()
    compute_indicators(from_ms(end + 5 * MIN), max_buckets=4)
    # buckets ending end-10 (empty), end-5: 6, end: 10, end+5 (empty)
    assert series("PEAK") == [(end - 5 * MIN, 6.0), (end, 10.0)]


def test_a_computed_indicator_has_the_same_rules_as_a_sensor(meters):
    end = bucket_end()
    ingest([("M-A", end - MIN, 0.9), ("M-B", end - MIN, 0.8)])
    services.create_indicator(code="HIGH", source="aggregate", inputs=["M-A", "M-B"], aggregate="mean",
                              name="高压", interval_s=300, warn_high=0.5, alarm_high=0.8)
    forget_sensors()
    res = compute_indicators(from_ms(end), max_buckets=1)
    assert res["warnings_opened"] == 1
    w = Warning.objects.get()
    assert (w.indicator.code, w.rule, w.level, w.peak_value) == ("HIGH", "band_high", "alarm", pytest.approx(0.85))
    assert Indicator.objects.get(code="HIGH").status == "alarm"


def report(category: str, at_code: str, when):
    lon, lat = f.centre(at_code)
    with simulated(when):
        return submit(ReportInput(channel="web", description="停水了 没有自来水", category=category, lon=lon, lat=lat))


def test_reports_per_hour_count_the_category_below_it_and_the_area_below_it(world):
    f.make_category(code="0102", parent=world.categories["01"], name="路灯")
    end = bucket_end(HOUR)
    t = from_ms(end)
    report("0101", "100101001", t - timedelta(minutes=50))
    report("0102", "100101002", t - timedelta(minutes=10))  # a child of 01, another street of the district
    report("0101", "100101001", t)  # exactly at the end: inside (end - 1 h, end]
    report("0101", "100102001", t - timedelta(minutes=5))  # another district
    report("0101", "100101001", t - timedelta(minutes=70))  # the hour before
    with simulated(t - timedelta(minutes=20)):  # an alarm's own report is not counted
        submit(ReportInput(channel="sensor", description="管网压力异常", category="0101", source="signs",
                           lon=f.centre("100101001")[0], lat=f.centre("100101001")[1]))
    services.create_indicator(code="WATER-101", source="cases", case_category="01", case_area="100101",
                              name="供水诉求", name_en="Water reports", interval_s=1800)
    forget_sensors()
    compute_indicators(from_ms(end + 1), max_buckets=3)
    # ends: end - 1 h (one report, 70 min before end), end - 30 min (two), end (three)
    assert series("WATER-101") == [(end - HOUR, 1.0), (end - 30 * MIN, 2.0), (end, 3.0)]


def test_a_first_computation_starts_no_further_back_than_readings_are_taken(world, settings):
    """A new indicator catches up at most ``SIGNS_MAX_AGE_DAYS`` (older values
    would only be refused), and nothing of what it writes is refused."""
    settings.SIGNS_MAX_AGE_DAYS = 2
    services.create_indicator(code="WATER-101", source="cases", case_category="01", case_area="100101",
                              name="供水诉求", name_en="Water reports", interval_s=3600)
    forget_sensors()
    end = bucket_end(HOUR)
    res = compute_indicators(from_ms(end + 1), max_buckets=1440)
    # the 48 hours ending at `end` (the hour ending 48 h before the computation is older than two days)
    assert res["values"] == 48 and min(t for t, _v in series("WATER-101")) == end - 47 * HOUR
    tally = SourceTally.objects.get(source="compute")
    assert (tally.received, tally.refused) == (48, 0)  # none computed only to be refused


# --------------------------------------------------------------------------- the jobs


def test_signs_sweep_runs_the_named_jobs_once(meters, pressure):
    end = bucket_end()
    ingest([("M-A", end - MIN, 2.0), ("WP-0001", end - MIN, 0.3)])
    services.create_indicator(code="AVG", source="aggregate", inputs=["M-A"], aggregate="mean", name="平均",
                              interval_s=300)
    forget_sensors()
    out = io.StringIO()
    call_command("signs_sweep", "--compute", "--missing", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["compute", "missing"]
    assert '"values": ' in lines[0] and series("AVG")[-1][1] == 2.0
    assert Warning.objects.filter(rule="missing", indicator__code="WP-0001").count() == 1  # silent for an hour
    out = io.StringIO()
    call_command("signs_sweep", stdout=out)
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == ["compute", "missing", "baselines", "prune"]


def test_the_worker_queues_each_job_once_and_the_minute_job_requeues_itself(meters):
    from django_tasks_db.models import DBTaskResult

    assert sorted(schedule_signs()) == ["baselines", "minute", "prune"]
    assert schedule_signs() == []  # already waiting
    paths = sorted(DBTaskResult.objects.values_list("task_path", flat=True))
    assert paths == ["chengyun.signs.tasks.signs_baselines_task", "chengyun.signs.tasks.signs_minute_task",
                     "chengyun.signs.tasks.signs_prune_task"]
    DBTaskResult.objects.all().delete()
    counts = signs_minute_task.call()
    assert set(counts) == {"computed", "missing"}
    (queued,) = DBTaskResult.objects.filter(status="READY")
    assert queued.task_path.endswith("signs_minute_task") and queued.run_after > from_ms(int(time.time() * 1000))


def test_daily_jobs_run_at_their_time_of_day_in_city_time():
    after = from_ms(1_767_225_600_000)  # 2026-01-01 00:00 UTC = 08:00 in Shanghai
    assert next_daily("03:15", after).isoformat() == "2026-01-02T03:15:00+08:00"
    assert next_daily("09:00", after).isoformat() == "2026-01-01T09:00:00+08:00"


def test_a_count_of_cases_is_counted_in_the_readers_words(world):
    from django.utils import translation

    from chengyun.signs.models import Sensor

    services.create_indicator(code="WATER-101", source="cases", case_category="01", case_area="100101",
                              name="供水诉求", name_en="Water reports", interval_s=1800)
    sensor = Sensor.objects.get(code="WATER-101")
    assert sensor.stored_unit == "件", "the API gives the unit as stored"
    with translation.override("en"):
        assert sensor.display_unit == "cases"
    with translation.override("zh-hans"):
        assert sensor.display_unit == "件"
