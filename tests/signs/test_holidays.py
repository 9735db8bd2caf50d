"""The anomaly rule follows the city's working calendar: a public holiday is
judged as a rest day and a worked weekend day (调休) as a working day.

China's National Day week of 2025, with the real calendar (the ``holidays``
package, as for case deadlines): 1–8 October are holidays, Sunday 28
September and Saturday 11 October are worked instead. The sensor reads about
10 on working days and about 20 on rest days."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from chengyun.cases.models import WorkingDayOverride
from chengyun.signs.ingest import ingest
from chengyun.signs.models import Baseline, Warning
from chengyun.signs.rules import (
    REST_DAY_SLOTS,
    WORKING_DAY_SLOTS,
    compute_baselines,
    forget_calendar,
)
from chengyun.signs.views import explain_warning

from .conftest import make_indicator, make_sensor

CITY = ZoneInfo("Asia/Shanghai")
STEP = 10 * 60_000
DAY = 86_400_000
WORKED = {"2025-09-28", "2025-10-11"}  # 调休: a Sunday and a Saturday worked
HOLIDAYS = {f"2025-10-0{d}" for d in range(1, 9)}


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=CITY).timestamp() * 1000)


def day_of(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, CITY).date().isoformat()


def level(t: int) -> float:
    d = day_of(t)
    if d in WORKED:
        return 10.0
    if d in HOLIDAYS:
        return 20.0
    return 20.0 if datetime.fromtimestamp(t / 1000, CITY).weekday() >= 5 else 10.0


@pytest.fixture
def meter(pressure_kind):
    s = make_sensor(code="HM-1", kind=pressure_kind, interval_s=STEP // 1000)
    return make_indicator(sensor=s, anomaly=True, missing_intervals=0)


def readings(start: str, end: str, rng) -> list[tuple[str, int, float]]:
    return [("HM-1", t, level(t) + float(rng.normal(0, 0.2))) for t in range(ms(start), ms(end), STEP)]


def anomalies_on(calendar: str, settings, rng) -> dict[str, int]:
    """Learn from the four weeks before 29 September, then read 1 October (a
    holiday Wednesday) and 11 October (a worked Saturday) as they come:
    anomaly warnings started on each day."""
    settings.SIGNS_CALENDAR = calendar
    forget_calendar()
    ingest(readings("2025-09-01", "2025-09-29", rng), evaluate=False, now_ms=ms("2025-09-29"))
    assert compute_baselines(at=datetime.fromisoformat("2025-09-29").replace(tzinfo=CITY)) == 1
    rows = readings("2025-10-01", "2025-10-12", rng)
    for t in range(ms("2025-10-01"), ms("2025-10-12"), 2 * 3_600_000):  # two hours at a time, as they come
        ingest([r for r in rows if t <= r[1] < t + 2 * 3_600_000], now_ms=t + 2 * 3_600_000)
    spans = [(w.started_ms, w.ended_ms if w.ended_ms is not None else ms("2025-10-12"))
             for w in Warning.objects.filter(rule="anomaly")]
    return {d: sum(a < ms(d) + DAY and b >= ms(d) for a, b in spans) for d in ("2025-10-01", "2025-10-11")}


def test_a_holiday_is_a_rest_day_and_a_worked_weekend_day_a_working_day(meter, settings):
    assert anomalies_on("working", settings, np.random.default_rng(1)) == {"2025-10-01": 0, "2025-10-11": 0}
    assert not Warning.objects.filter(rule="anomaly").exists()  # nor on the other days of the holiday week
    # a real anomaly on the worked Saturday is still found, and explained as judged against working days
    ingest([("HM-1", ms("2025-10-11T23:55"), 40.0)], now_ms=ms("2025-10-12"))
    (w,) = Warning.objects.filter(rule="anomaly")
    assert w.explanation["day"] == "working day" and w.explanation["median"] == pytest.approx(10, abs=0.2)
    assert "usual at this hour of a working day" in explain_warning(w, "MPa")
    slots = {b.hour_of_week: b for b in Baseline.objects.filter(indicator=meter)}
    # Sunday 10:00 is its own hour of the week (three ordinary Sundays); the worked Sunday is not one of them
    sunday_10 = slots[6 * 24 + 10]
    assert sunday_10.median == pytest.approx(20, abs=0.2) and sunday_10.samples == 3 * 6
    # the worked Sunday counts with the working days, at their hour
    assert slots[WORKING_DAY_SLOTS + 10].median == pytest.approx(10, abs=0.2)
    assert slots[WORKING_DAY_SLOTS + 10].samples == (4 * 5 + 1) * 6
    assert slots[REST_DAY_SLOTS + 10].median == pytest.approx(20, abs=0.2)


def test_judged_by_the_plain_week_the_same_days_look_like_anomalies(meter, settings):
    """What the calendar prevents: a holiday judged as a Wednesday, a worked
    Saturday as a Saturday."""
    found = anomalies_on("week", settings, np.random.default_rng(1))
    assert found["2025-10-01"] >= 1 and found["2025-10-11"] >= 1


def test_a_day_changed_in_the_admin_is_followed(meter, settings):
    """A local decision (WorkingDayOverride) wins over the national calendar:
    here the city declares 1 October a working day after all, so its rest-day
    readings are anomalies again."""
    WorkingDayOverride.objects.create(date=datetime.fromisoformat("2025-10-01").date(), is_working_day=True)
    found = anomalies_on("working", settings, np.random.default_rng(1))
    assert found["2025-10-01"] >= 1 and found["2025-10-11"] == 0
