"""The demo city's generated sensors, loaded into the tiny test city: placed
inside their areas, owned by the right department, with readings, rollups,
computed indicators and the planted incidents' warnings; loading twice adds
nothing."""

from __future__ import annotations

import pytest
import shapely

from chengyun.demo.sensors import kind_specs, load_sensors
from chengyun.signs.ingest import forget_sensors
from chengyun.signs.models import Indicator, Reading, Rollup, Sensor, Warning

from .. import factories as f


@pytest.fixture(autouse=True)
def _fresh_sensor_cache():
    forget_sensors()
    yield
    forget_sensors()


@pytest.fixture
def city(world):
    """The tiny city plus the demo category a burst main becomes (the other
    demo categories are missing: their alarms become cases without one)."""
    emergencies = f.make_category(code="10", deadline_hours=24)
    world.categories["1002"] = f.make_category(code="1002", parent=emergencies, deadline_hours=4, name="自来水管破裂")
    return world


def quiet(*_args) -> None:
    pass


def test_generated_sensors_sit_in_their_areas_with_readings_rollups_and_warnings(city):
    summary = load_sensors(quiet, count=20, days=3, seed=7)

    sensors = list(Sensor.objects.filter(generated=True, virtual=False).select_related("area", "kind", "department"))
    assert summary["sensors"] == len(sensors) == 20
    assert {s.kind.code for s in sensors} == set(kind_specs())
    for s in sensors:
        assert s.area is not None and s.area.code.startswith(tuple(f.DISTRICT_BOUNDS)), s.code
        assert shapely.intersects_xy(s.area.geometry, s.lon, s.lat), s.code
        assert s.area_path == s.area.path
        assert s.indicator.code == s.code and s.indicator.source == "sensor"
        assert 300 <= s.interval_s <= 900
    pressure = [s for s in sensors if s.kind.code == "water_pressure"]
    for s in pressure:  # owned by the water department of the sensor's district
        assert s.code.startswith("WP-")
        assert s.department == city.dept("water", s.area.code[:6])
        assert (s.indicator.alarm_low, s.indicator.rate_limit, s.indicator.anomaly) == (0.12, 0.01, True)
    assert all(s.department is None for s in sensors if s.kind.code == "gas")  # the test city has no gas company

    stored = Reading.objects.filter(sensor__generated=True).count()
    assert stored == summary["readings"] > 20 * 3 * 90
    assert Rollup.objects.filter(sensor__in=sensors, resolution="h").count() > 20 * 3 * 20

    # The mean PM2.5 of a district: a virtual sensor fed by the real computation.
    mean = Indicator.objects.select_related("sensor").get(source="aggregate")
    assert mean.sensor.virtual and mean.sensor.generated and mean.inputs.exists()
    assert Reading.objects.filter(sensor=mean.sensor).count() > 100

    # The planted main burst, still going on: open alarms below the band, in one street, that became cases.
    burst = list(Warning.objects.select_related("case__category", "indicator__sensor").filter(
        indicator__sensor__kind__code="water_pressure", rule="band_low", level="alarm"))
    assert burst
    assert len({w.indicator.sensor.area_id for w in burst}) == 1
    for w in burst:
        assert w.ended_ms is None and w.generated and w.peak_value < 0.12
        assert w.case.category.code == "1002" and w.case.channel == "sensor"
        assert w.indicator.status == "alarm"
    # One sensor is silent since yesterday.
    silent = Warning.objects.get(rule="missing", ended_ms__isnull=True)
    assert silent.indicator.sensor.generated
    assert summary["warnings_open"] == Warning.objects.filter(ended_ms__isnull=True).count() >= 2
    assert summary["alarm_cases"] >= 1


def test_loading_again_adds_nothing(city):
    load_sensors(quiet, count=20, days=3, seed=7)
    before = (Sensor.objects.count(), Indicator.objects.count(), Reading.objects.count(), Warning.objects.count())

    again = load_sensors(quiet, count=20, days=3, seed=7)

    assert again["sensors"] == 0
    assert (Sensor.objects.count(), Indicator.objects.count(), Reading.objects.count(),
            Warning.objects.count()) == before
