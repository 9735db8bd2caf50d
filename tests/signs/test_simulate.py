"""``chengyun simulate-sensors``: the values it makes up, and its readings
going over a private Mosquitto into the database."""

from __future__ import annotations

import random
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chengyun.org.services import create_token
from chengyun.signs.ingest import ingest
from chengyun.signs.management.commands.simulate_sensors import ValueGenerator, sim_sensor
from chengyun.signs.models import Reading, Sensor, Warning

from .. import factories as f
from .conftest import make_indicator, make_sensor
from .test_mqtt import MOSQUITTO, broker, subscriber, wait_for  # noqa: F401 (fixtures)

MIN = 60_000
NOW = 1_767_225_600_000  # 2026-01-01 08:00 city time


def demo_sensors(kind) -> None:
    for i in range(3):
        make_indicator(sensor=make_sensor(code=f"SIM-{i}", kind=kind, generated=True),
                       warn_low=0.2, warn_high=0.5, alarm_low=0.1, alarm_high=0.6, hysteresis=0.02)
    make_sensor(code="SIM-REAL", kind=kind)  # a real device: never simulated by default
    make_sensor(code="OTHER-1", kind=kind, generated=True)  # outside --sensors SIM-


def assert_simulated(n: int, *, since: int) -> None:
    per_sensor = {code: Reading.objects.filter(sensor__code=code).count()
                  for code in ("SIM-0", "SIM-1", "SIM-2", "SIM-REAL", "OTHER-1")}
    assert per_sensor == {"SIM-0": n // 3, "SIM-1": n // 3, "SIM-2": n // 3, "SIM-REAL": 0, "OTHER-1": 0}
    assert all(0.2 <= v <= 0.5 for v in Reading.objects.values_list("value", flat=True))  # inside the band
    assert min(Reading.objects.values_list("ts", flat=True)) >= since  # live: stamped now


def day_of_values(gen: ValueGenerator, *, start: int = NOW, minutes: int = 24 * 60, every_s: int = 30):
    return [gen.take(1, start + i * every_s * 1000)[0] for i in range(minutes * 60 // every_s)]


def test_values_follow_a_cycle_inside_the_band_and_continue_from_the_last_value(pressure):
    Sensor.objects.filter(pk=pressure.pk).update(last_value=0.45, last_ms=NOW - 30_000)
    s = sim_sensor(Sensor.objects.select_related("indicator").get(pk=pressure.pk), random.Random(1))
    gen = ValueGenerator([s], seed=1)
    rows = day_of_values(gen)
    values = [v for _c, _t, v in rows]
    assert abs(values[0] - 0.45) < 0.03  # picks up where the stored series ended
    assert 0.2 + 0.02 <= min(values) and max(values) <= 0.5 - 0.02  # inside the band, off its edges (hysteresis)
    assert max(values) - min(values) > 0.05  # and it moves: a daily cycle plus noise
    assert [t for _c, t, _v in rows] == sorted({t for _c, t, _v in rows})  # times strictly increase


def test_a_demo_sensor_goes_on_along_the_demo_model_its_history_follows(pressure_kind):
    """Live readings look like the thirty generated days before them: the same level,
    daily shape and noise, not a walk of its own that the anomaly rules take for a change."""
    import numpy as np

    from chengyun.demo.sensors import normal, params_for
    from chengyun.signs.management.commands.simulate_sensors import _offset_ms

    params = params_for("water_pressure", "WP-DEMO-1")
    last = float(normal("water_pressure", params, np.array([NOW - 60_000]), _offset_ms(NOW))[0])
    demo = make_sensor(code="WP-DEMO-1", kind=pressure_kind, generated=True, last_value=last, last_ms=NOW - 60_000)
    make_indicator(sensor=demo, warn_low=0.2, warn_high=0.5)
    s = sim_sensor(Sensor.objects.select_related("indicator", "kind").get(pk=demo.pk), random.Random(1))
    assert s.model is not None and s.model[0] == "water_pressure"
    rows = day_of_values(ValueGenerator([s], seed=1), every_s=60)
    ts = np.array([t for _c, t, _v in rows])
    gap = np.array([v for _c, _t, v in rows]) - normal("water_pressure", params, ts, _offset_ms(NOW))
    assert abs(gap.mean()) < params["noise"] and gap.std() < 1.5 * params["noise"], "the model's level and noise"

    # A series that does not follow the model (not the demo's, or in an incident) walks in its band.
    other = make_sensor(code="WP-DEMO-2", kind=pressure_kind, generated=True, last_value=0.48, last_ms=NOW)
    make_indicator(sensor=other, warn_low=0.2, warn_high=0.5)
    assert sim_sensor(Sensor.objects.select_related("indicator", "kind").get(pk=other.pk), random.Random(1)).model is None


def test_the_demos_ongoing_incidents_go_on_while_it_is_simulated(pressure_kind):
    """Started after load-demo, the simulator keeps the planted incidents that are
    still going on: a silent sensor stays silent, a stuck gauge stuck, a sensor in
    an excursion (the burst main) where it is."""
    from chengyun.signs.models import Rule

    for code, last in (("WP-SILENT", 0.3), ("WP-STUCK", 0.31), ("WP-BURST", 0.12), ("WP-FINE", 0.3)):
        sensor = make_sensor(code=code, kind=pressure_kind, generated=True, last_value=last, last_ms=NOW - 60_000)
        ind = make_indicator(sensor=sensor, warn_low=0.2, warn_high=0.5, alarm_low=0.15)
        rule = {"WP-SILENT": Rule.MISSING, "WP-STUCK": Rule.FLATLINE, "WP-BURST": Rule.BAND_LOW}.get(code)
        if rule:
            Warning.objects.create(indicator=ind, rule=rule, level="alarm", started_ms=NOW - 3_600_000,
                                   peak_value=last, peak_ms=NOW - 60_000, last_value=last)
    call_command("simulate_sensors", "--via", "db", "--count", "60", "--rate", "1000", "--seed", "3",
                 "--sensors", "WP-", stdout=StringIO())
    taken = {}
    for code, value in Reading.objects.filter(sensor__code__startswith="WP-").values_list("sensor__code", "value"):
        taken.setdefault(code, []).append(value)
    assert "WP-SILENT" not in taken, "silent stays silent"
    assert len(set(taken["WP-STUCK"])) == 1, "stuck stays stuck"
    assert max(abs(v - 0.12) for v in taken["WP-BURST"]) < 0.02, "the excursion goes on"


def test_a_rate_limit_is_respected_in_normal_running(pressure_kind):
    sensor = make_sensor(code="WP-RATE", kind=pressure_kind)
    make_indicator(sensor=sensor, warn_low=0.2, warn_high=0.5, rate_limit=0.002)
    s = sim_sensor(Sensor.objects.select_related("indicator").get(pk=sensor.pk), random.Random(2))
    rows = day_of_values(ValueGenerator([s], seed=2), minutes=6 * 60, every_s=10)
    rates = [abs(b[2] - a[2]) / ((b[1] - a[1]) / MIN) for a, b in zip(rows, rows[1:], strict=False)]
    assert max(rates) <= 0.002 + 1e-6


def test_an_incident_leaves_the_band_and_comes_back(pressure):
    s = sim_sensor(Sensor.objects.select_related("indicator").get(pk=pressure.pk), random.Random(3))
    gen = ValueGenerator([s], seed=3)
    gen.incident("WP-0001", NOW + 10 * MIN, NOW + 20 * MIN)
    rows = day_of_values(gen, minutes=120, every_s=10)
    before = [v for _c, t, v in rows if t < NOW + 10 * MIN]
    during = [v for _c, t, v in rows if NOW + 10 * MIN <= t < NOW + 20 * MIN]
    after = [v for _c, t, v in rows if t >= NOW + 20 * MIN]
    assert all(0.2 <= v <= 0.5 for v in before)
    assert max(during) > 0.6  # beyond the alarm band: an alarm, and a case, on the board
    back = next(i for i, v in enumerate(after) if v <= 0.5)
    assert all(v <= 0.5 for v in after[back:])  # back in the band and staying there
    assert all(b <= a + 1e-9 for a, b in zip(after[:back], after[1:back], strict=False))  # never further out


def test_a_stuck_sensor_repeats_its_value_and_the_flat_line_rule_sees_it(pressure_kind):
    sensor = make_sensor(code="WP-STUCK", kind=pressure_kind, generated=True)
    make_indicator(sensor=sensor, warn_low=0.2, warn_high=0.5, flatline_minutes=30, missing_intervals=0)
    s = sim_sensor(Sensor.objects.select_related("indicator").get(pk=sensor.pk), random.Random(5))
    gen = ValueGenerator([s], seed=5)
    gen.stuck.add("WP-STUCK")
    start = int(time.time() * 1000) // MIN * MIN - 2 * 60 * MIN
    rows = day_of_values(gen, start=start, minutes=60, every_s=60)
    assert len({v for _c, _t, v in rows}) == 1
    ingest(rows)
    (w,) = Warning.objects.all()
    assert (w.rule, w.started_ms, w.ended_ms) == ("flatline", start, None)


@pytest.mark.skipif(MOSQUITTO is None, reason="the mosquitto broker binary is not installed (apt install mosquitto)")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("gateway", [False, True], ids=["one-message-per-reading", "gateway-batches"])
def test_simulated_readings_travel_over_mqtt_into_the_database(pressure_kind, broker, subscriber, gateway):  # noqa: F811
    demo_sensors(pressure_kind)
    sub = subscriber()
    out = StringIO()
    before = int(time.time() * 1000)
    call_command("simulate_sensors", "--via", "mqtt", "--url", broker.url, "--rate", "600", "--count", "120",
                 "--sensors", "SIM-", "--seed", "4", *(["--gateway", "gw-sim"] if gateway else []), stdout=out)

    assert wait_for(lambda: Reading.objects.count() >= 120), Reading.objects.count()
    assert_simulated(120, since=before)
    assert sub.stats.readings == 120
    assert (sub.stats.messages < 120) if gateway else (sub.stats.messages == 120)
    assert "GENERATED" in out.getvalue()
    assert "120" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_simulated_readings_go_to_the_http_batch_api(pressure_kind, live_server):
    demo_sensors(pressure_kind)
    _token, key = create_token(f.make_user(username="feeder"), "simulator")
    out = StringIO()
    before = int(time.time() * 1000)
    call_command("simulate_sensors", "--via", "http", "--url", live_server.url, "--token", key, "--rate", "300",
                 "--count", "60", "--sensors", "SIM-", stdout=out)
    assert_simulated(60, since=before)  # a batch is stored when its POST returns
    assert "60 acknowledged" in out.getvalue()


def test_only_generated_sensors_are_simulated_unless_asked(pressure):
    with pytest.raises(CommandError, match="generated"):
        call_command("simulate_sensors", "--url", "mqtt://127.0.0.1:1", "--count", "1", stdout=StringIO())
    for option in ("--incident", "--stuck"):
        with pytest.raises(CommandError, match="not among"):
            call_command("simulate_sensors", "--include-real", option, "NOPE", "--url", "mqtt://127.0.0.1:1",
                         "--count", "1", stdout=StringIO())


def test_simulated_readings_can_go_straight_into_the_database(pressure_kind):
    """``--via db`` (what ``make demo`` runs): no broker, no server, no token."""
    demo_sensors(pressure_kind)
    out = StringIO()
    before = int(time.time() * 1000)
    call_command("simulate_sensors", "--via", "db", "--rate", "300", "--count", "30", "--sensors", "SIM-", stdout=out)
    assert_simulated(30, since=before)
    assert "30 acknowledged" in out.getvalue()
