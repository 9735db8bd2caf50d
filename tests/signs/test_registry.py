"""The sensor registry from outside: ``chengyun import-sensors FILE.csv``
(idempotent, all or nothing, errors naming row and column) and the admin
(sensors located through the services, warnings acknowledged by action,
readings and rollups not listed)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.org.models import Role
from chengyun.signs.ingest import ingest
from chengyun.signs.models import Indicator, Sensor, SensorKind, Warning

from .. import factories as f
from .test_api import hour_ago_ms

HEADER = "code,name,kind,lon,lat,interval_s,department,unit,warn_low,warn_high,alarm_low,alarm_high,hysteresis," \
         "rate_limit,missing_intervals,anomaly\n"


def write(tmp_path: Path, text: str, name: str = "sensors.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(path: Path) -> str:
    out = StringIO()
    call_command("import_sensors", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def row(code: str, at: str, *, kind: str = "water_pressure", rules: str = ",,,,,,,", department: str = "WATER-100101",
        interval: str = "60", name: str = "") -> str:
    lon, lat = f.centre(at)
    return f"{code},{name or '压力' + code},{kind},{lon},{lat},{interval},{department},,{rules}\n"


@pytest.fixture
def kinds(world):
    SensorKind.objects.create(code="water_pressure", name="管网压力", name_en="Water pressure", unit="MPa",
                              theme="water", alarm_category=world.categories["0101"])
    SensorKind.objects.create(code="manhole", name="井盖", name_en="Manhole cover", unit="°", theme="roads")


def test_import_creates_located_sensors_with_indicators_and_again_changes_nothing(tmp_path, kinds, world):
    path = write(tmp_path, HEADER
                 + row("WP-1", "100101001", rules="0.2,0.5,0.1,0.6,0.02,0.05,3,true")
                 + row("WP-2", "100102002", rules="0.25,,,0.7,,,,", department="WATER-100102")
                 + row("MH-1", "100103001", kind="manhole", department="", interval="300"))
    out = run(path)
    assert "sensors: 3 created, 0 updated, 0 unchanged" in out
    assert "indicators: 2 created, 0 updated, 0 unchanged" in out

    wp1 = Sensor.objects.select_related("area", "department").get(code="WP-1")
    assert (wp1.area.code, wp1.area_path, wp1.department.code, wp1.interval_s, wp1.display_unit) == (
        "100101001", world.areas["100101001"].path, "WATER-100101", 60, "MPa")
    ind = Indicator.objects.get(code="WP-1")
    assert ind.sensor == wp1 and ind.theme == "water" and ind.name == "压力WP-1"
    assert (ind.warn_low, ind.warn_high, ind.alarm_low, ind.alarm_high, ind.hysteresis, ind.rate_limit,
            ind.missing_intervals, ind.anomaly) == (0.2, 0.5, 0.1, 0.6, 0.02, 0.05, 3, True)
    wp2 = Indicator.objects.get(code="WP-2")
    assert (wp2.warn_low, wp2.warn_high, wp2.alarm_high, wp2.hysteresis, wp2.missing_intervals) == (0.25, None, 0.7, 0.0, 3)
    mh = Sensor.objects.get(code="MH-1")
    assert mh.department is None and mh.area.code == "100103001" and not Indicator.objects.filter(sensor=mh).exists()
    # The imported sensors take readings at once.
    assert ingest([("WP-1", hour_ago_ms(), 0.3), ("MH-1", hour_ago_ms(), 1.0)]).stored == 2

    audit_before = AuditRecord.objects.count()
    out = run(path)
    assert "sensors: 0 created, 0 updated, 3 unchanged" in out
    assert "indicators: 0 created, 0 updated, 2 unchanged" in out
    assert AuditRecord.objects.filter(action__startswith="signs.sensor").count() == 3
    assert AuditRecord.objects.count() == audit_before + 1  # only the import's own record
    assert list(verify_chain()) == []


def test_import_updates_by_code(tmp_path, kinds, world):
    run(write(tmp_path, HEADER + row("WP-1", "100101001", rules="0.2,0.5,,,,,,")))
    out = run(write(tmp_path, HEADER + row("WP-1", "100102001", rules="0.2,0.45,,,,,,", department="WATER-100102",
                                           name="新名字"), "v2.csv"))
    assert "sensors: 0 created, 1 updated" in out and "indicators: 0 created, 1 updated" in out
    sensor = Sensor.objects.get(code="WP-1")
    assert (sensor.name, sensor.area.code, sensor.department.code) == ("新名字", "100102001", "WATER-100102")
    assert Indicator.objects.get(code="WP-1").warn_high == 0.45
    (update,) = AuditRecord.objects.filter(action="signs.sensor.update")
    assert update.data["changed"]["area"] == ["100101001", "100102001"]


def test_import_sets_the_flat_line_rule_and_names_a_bad_cell(tmp_path, kinds, world):
    header = "code,kind,lon,lat,warn_high,flatline_minutes,flatline_tolerance\n"
    lon, lat = f.centre("100101001")
    run(write(tmp_path, header + f"WP-1,water_pressure,{lon},{lat},0.5,120,0.001\n"))
    ind = Indicator.objects.get(code="WP-1")
    assert (ind.flatline_minutes, ind.flatline_tolerance) == (120, 0.001)
    err = StringIO()
    with pytest.raises(CommandError, match="nothing imported"):
        call_command("import_sensors", str(write(tmp_path, header + f"WP-1,water_pressure,{lon},{lat},0.5,2h,\n",
                                                 "bad.csv")), stdout=StringIO(), stderr=err)
    assert "Row 2, column flatline_minutes" in err.getvalue(), err.getvalue()
    assert Indicator.objects.get(code="WP-1").flatline_minutes == 120


@pytest.mark.parametrize(("bad_row", "expected"), [
    (row("WP-3", "100101002", kind="laser"), "Row 3, column kind"),
    (row("WP-3", "100101002", rules="0.6,0.5,,,,,,"), "Row 3, column warn_high"),
    (row("WP-3", "100101002", department="NOPE"), "Row 3, column department"),
    (row("WP-3", "100101002", interval="often"), "Row 3, column interval_s"),
    (row("WP-3", "100101002", rules=",,,,,,,maybe"), "Row 3, column anomaly"),
    (row("WP 3", "100101002"), "Row 3, column code"),
    (row("WP-1", "100101002"), "Row 3, column code"),
    ("WP-3,x,water_pressure\n", "Row 3:"),
])
def test_a_bad_row_imports_nothing_and_the_error_names_row_and_column(tmp_path, kinds, bad_row, expected):
    path = write(tmp_path, HEADER + row("WP-1", "100101001", rules="0.2,0.5,,,,,,") + bad_row
                 + row("WP-4", "100101001"))
    err = StringIO()
    with pytest.raises(CommandError, match="nothing imported"):
        call_command("import_sensors", str(path), stdout=StringIO(), stderr=err)
    assert expected in err.getvalue(), err.getvalue()
    assert Sensor.objects.count() == 0 and Indicator.objects.count() == 0
    assert not AuditRecord.objects.filter(action__startswith="signs.").exists()


def test_the_header_is_checked(tmp_path, kinds):
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_sensors", str(write(tmp_path, "code,name,knd\nWP-1,x,water_pressure\n")),
                     stdout=StringIO(), stderr=err)
    assert "Row 1, column knd: Unknown column." in err.getvalue()
    assert "Row 1, column kind: The column is missing." in err.getvalue()
    # Only code and kind are required; a point is optional.
    assert "sensors: 1 created" in run(write(tmp_path, "code,kind\nWP-9,manhole\n", "min.csv"))
    assert Sensor.objects.get(code="WP-9").area is None


# --------------------------------------------------------------------------- admin


def test_admin_registers_a_sensor_through_the_services(client, kinds, world, admin_user):
    client.force_login(admin_user)
    lon, lat = f.centre("100104002")
    kind = SensorKind.objects.get(code="manhole")
    response = client.post("/admin/signs/sensor/add/", {
        "code": "MH-7", "name": "井盖7", "kind": kind.pk, "unit": "", "lon": lon, "lat": lat, "area": "",
        "department": "", "interval_s": 600, "active": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    sensor = Sensor.objects.get(code="MH-7")
    assert sensor.area.code == "100104002" and sensor.area_path == world.areas["100104002"].path
    assert AuditRecord.objects.filter(action="signs.sensor.create", actor="root").exists()

    response = client.post("/admin/signs/sensor/add/", {
        "code": "MH-8", "kind": kind.pk, "lon": lon, "lat": 95, "interval_s": 600, "active": "on"})
    assert response.status_code == 200 and not Sensor.objects.filter(code="MH-8").exists()
    assert "Latitude must be between" in response.content.decode()

    response = client.post("/admin/signs/indicator/add/", {
        "code": "MH-7", "name": "井盖7", "name_en": "", "theme": "roads", "source": "sensor", "sensor": sensor.pk,
        "aggregate": "", "warn_high": "15", "alarm_high": "10", "hysteresis": "0", "flatline_tolerance": "0",
        "missing_intervals": "3", "anomaly_score": "6", "anomaly_clear": "3", "active": "on"})
    assert response.status_code == 200 and "The alarm level above" in response.content.decode()
    response = client.post("/admin/signs/indicator/add/", {
        "code": "MH-7", "name": "井盖7", "name_en": "", "theme": "roads", "source": "sensor", "sensor": sensor.pk,
        "aggregate": "", "warn_high": "10", "alarm_high": "15", "hysteresis": "0", "flatline_tolerance": "0",
        "missing_intervals": "3", "anomaly_score": "6", "anomaly_clear": "3", "active": "on"})
    assert response.status_code == 302, response.content.decode()[:3000]
    ind = Indicator.objects.get(code="MH-7")
    assert ind.alarm_high == 15 and ind.name_en == "井盖7"

    # Bands are editable; the status is not.
    response = client.post(f"/admin/signs/indicator/{ind.pk}/change/", {
        "name": "井盖7", "name_en": "Cover 7", "theme": "roads", "aggregate": "", "warn_high": "8",
        "alarm_high": "15", "hysteresis": "0.5", "flatline_minutes": "60", "flatline_tolerance": "0.1",
        "missing_intervals": "3", "anomaly_score": "6", "anomaly_clear": "3", "active": "on", "status": "alarm"})
    assert response.status_code == 302, response.content.decode()[:3000]
    ind.refresh_from_db()
    assert (ind.warn_high, ind.hysteresis, ind.name_en, ind.status) == (8, 0.5, "Cover 7", "unknown")
    assert (ind.flatline_minutes, ind.flatline_tolerance) == (60, 0.1)
    (update,) = AuditRecord.objects.filter(action="signs.indicator.update", actor="root")
    assert update.data["changed"]["warn_high"] == [10.0, 8.0]


def test_admin_lists_registry_and_warnings_but_not_readings(client, kinds, admin_user):
    client.force_login(admin_user)
    index = client.get("/admin/").content.decode()
    for model in ("sensorkind", "sensor", "indicator", "warning"):
        assert f"/admin/signs/{model}/" in index
    assert "/admin/signs/reading/" not in index and "/admin/signs/rollup/" not in index
    for model in ("sensorkind", "sensor", "indicator", "warning"):
        assert client.get(f"/admin/signs/{model}/").status_code == 200
    assert client.get("/admin/signs/warning/add/").status_code == 403


def test_admin_acknowledge_action(client, pressure, world, admin_user):
    t0 = hour_ago_ms()
    ingest([("WP-0001", t0, 0.3), ("WP-0001", t0 + 60_000, 0.55)])
    w = Warning.objects.get()
    operator = f.make_user(username="op-104", role=Role.OPERATOR, area=world.areas["100104"])
    operator.is_staff = True
    operator.save()
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(Permission.objects.get(codename="view_warning"))
    client.force_login(operator)
    client.post("/admin/signs/warning/", {"action": "acknowledge_selected", "_selected_action": [w.pk]})
    w.refresh_from_db()
    assert w.acknowledged_at is None, "outside the operator's area"

    client.force_login(admin_user)
    response = client.post("/admin/signs/warning/", {"action": "acknowledge_selected", "_selected_action": [w.pk]})
    assert response.status_code == 302
    w.refresh_from_db()
    assert w.acknowledged_by == admin_user
    assert AuditRecord.objects.filter(action="signs.acknowledge", actor="root").count() == 1
