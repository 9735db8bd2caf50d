"""Vital-signs fixtures: a sensor kind, sensors in the tiny city, indicators with rules."""

from __future__ import annotations

import pytest

from chengyun.areas.models import Area
from chengyun.signs.ingest import forget_sensors
from chengyun.signs.models import Indicator, Sensor, SensorKind
from chengyun.signs.rules import forget_calendar

from .. import factories as f


@pytest.fixture(autouse=True)
def _fresh_sensor_cache(settings):
    # Tests whose times are "now" judge days by the plain week, so that a
    # public holiday in the weeks before the day they run changes nothing;
    # the working calendar has tests of its own (test_holidays.py).
    settings.SIGNS_CALENDAR = "week"
    forget_sensors()
    forget_calendar()
    yield
    forget_sensors()
    forget_calendar()


def make_sensor(*, code: str, kind: SensorKind, at: str = "100101001", interval_s: int = 60, **kw) -> Sensor:
    lon, lat = f.centre(at)
    area = Area.objects.get(code=at)
    return Sensor.objects.create(code=code, kind=kind, lon=lon, lat=lat, area=area, area_path=area.path,
                                 interval_s=interval_s, **kw)


def make_indicator(*, sensor: Sensor, code: str | None = None, **rules) -> Indicator:
    return Indicator.objects.create(code=code or sensor.code, name=f"指标{sensor.code}", name_en=f"Indicator {sensor.code}",
                                    theme=sensor.kind.theme, sensor=sensor, **rules)


@pytest.fixture
def pressure_kind(world):
    return SensorKind.objects.create(code="water_pressure", name="管网压力", name_en="Water pressure", unit="MPa",
                                     theme="water", alarm_category=world.categories["0101"])


@pytest.fixture
def pressure(pressure_kind):
    """A water-pressure sensor in street 100101001 with bands 0.2-0.5 MPa
    (alarm below 0.1 / above 0.6), hysteresis 0.02, silent after 3 minutes."""
    s = make_sensor(code="WP-0001", kind=pressure_kind)
    make_indicator(sensor=s, warn_low=0.2, warn_high=0.5, alarm_low=0.1, alarm_high=0.6, hysteresis=0.02,
                   missing_intervals=3)
    return s
