"""The vital-signs JSON API at /api/v1/signs, as a sensor gateway, an
operator and an administrator use it: posting readings (JSON and CSV), the
registry, series by range with the rollup chosen, warnings."""

from __future__ import annotations

import json
import time

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.org.models import Role
from chengyun.org.services import create_token
from chengyun.signs import api as signs_api
from chengyun.signs.models import HOUR_MS, MINUTE_MS, Indicator, Reading, Sensor, Warning

from .. import factories as f
from .conftest import make_indicator, make_sensor

API = "/api/v1/signs"


def hour_ago_ms(hours: int = 1) -> int:
    """The start of an hour ``hours`` before the current one (ms)."""
    return (int(time.time() * 1000) // HOUR_MS - hours) * HOUR_MS


def call(client, user, method: str, url: str, *, expect: int = 200, body=None, **params):
    client.force_login(user)
    if method == "get":
        response = client.get(url, params)
    else:
        response = getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")
    assert response.status_code == expect, response.content
    return response.json()


def post_readings(client, key: str, body, *, content_type: str = "application/json", expect: int = 200) -> dict:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = client.post(f"{API}/readings", data=data, content_type=content_type,
                           headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == expect, response.content
    return response.json()


@pytest.fixture
def gateway(world):
    """A sensor gateway's account with a token and no role at all."""
    user = f.make_user(username="gateway")
    _token, key = create_token(user, "pressure gateway")
    return key


@pytest.fixture
def people(world, admin_user):
    city = world.areas[f.CITY]
    return {
        "operator": f.make_user(username="operator", role=Role.OPERATOR, area=city),
        "operator-104": f.make_user(username="operator-104", role=Role.OPERATOR, area=world.areas["100104"]),
        "inspector": f.make_user(username="inspector", role=Role.INSPECTOR, area=city),
        "admin": f.make_user(username="admin", role=Role.ADMIN, area=city),
        "admin-101": f.make_user(username="admin-101", role=Role.ADMIN, area=world.areas["100101"]),
        "root": admin_user,
    }


# --------------------------------------------------------------------------- readings


def test_json_batch_keeps_good_readings_refuses_bad_ones_with_reasons_and_stores_duplicates_once(
        client, pressure, gateway):
    t0 = hour_ago_ms()
    body = {"readings": [
        {"sensor": "WP-0001", "ts": t0, "value": 0.31},
        {"sensor": "WP-0001", "ts": t0 + MINUTE_MS, "value": "0.32"},
        {"sensor": "NOPE-1", "ts": t0, "value": 1.0},
        {"sensor": "WP-0001", "ts": t0 + 2 * MINUTE_MS, "value": "high"},
        {"sensor": "WP-0001", "ts": t0 + 3 * 86_400_000, "value": 0.3},
        "WP-0001,0.3",
        {"ts": t0, "value": 0.3},
        {"sensor": "WP-0001", "ts": "2025-13-45T00:00:00", "value": 0.3},
    ]}
    res = post_readings(client, gateway, body)
    assert (res["received"], res["stored"], res["duplicates"], res["refused"]) == (8, 2, 0, 6)
    by_index = {r["index"]: r for r in res["refusals"]}
    assert {i: by_index[i]["field"] for i in by_index} == {2: "sensor", 3: "value", 4: "ts", 5: "reading",
                                                           6: "sensor", 7: "ts"}
    assert by_index[2]["sensor"] == "NOPE-1" and "Unknown sensor" in by_index[2]["reason"]
    assert "future" in by_index[4]["reason"]
    assert "object" in by_index[5]["reason"]
    assert all(r["reason"] for r in res["refusals"])

    again = post_readings(client, gateway, {"readings": body["readings"][:2]})
    assert (again["stored"], again["duplicates"], again["refused"]) == (0, 2, 0)
    assert Reading.objects.count() == 2
    assert Sensor.objects.get(code="WP-0001").last_value == 0.32


def test_a_nan_or_infinite_value_in_a_json_body_is_refused_alone(client, pressure, gateway):
    # NaN and Infinity are not strict JSON; the body is still read and only those readings are refused.
    t0 = hour_ago_ms()
    body = (f'{{"readings": [{{"sensor": "WP-0001", "ts": {t0}, "value": NaN}}, '
            f'{{"sensor": "WP-0001", "ts": {t0 + MINUTE_MS}, "value": 0.3}}, '
            f'{{"sensor": "WP-0001", "ts": {t0 + 2 * MINUTE_MS}, "value": -Infinity}}]}}')
    res = post_readings(client, gateway, body)
    assert (res["received"], res["stored"], res["refused"]) == (3, 1, 2)
    assert [(r["index"], r["field"]) for r in res["refusals"]] == [(0, "value"), (2, "value")]


def test_readings_open_and_close_warnings_and_report_it(client, pressure, gateway):
    t0 = hour_ago_ms()
    res = post_readings(client, gateway, {"readings": [
        {"sensor": "WP-0001", "ts": t0 + i * MINUTE_MS, "value": v} for i, v in enumerate([0.3, 0.55, 0.56, 0.3])]})
    assert (res["stored"], res["warnings_opened"], res["warnings_closed"]) == (4, 1, 1)
    (w,) = Warning.objects.all()
    assert (w.rule, w.level, w.peak_value) == ("band_high", "warning", 0.56)


def test_csv_batch_with_rfc3339_times_and_a_short_row(client, pressure, gateway):
    body = ("\ufeffsensor,ts,value\n"
            "WP-0001,2020-01-01T00:00:00+08:00,0.3\n"     # far in the past
            f"WP-0001,{hour_ago_ms() // 1000},0.31\n"    # epoch seconds
            "WP-0001\n"
            "\n"
            f"WP-0001,{hour_ago_ms() + MINUTE_MS},0.33\n")
    res = post_readings(client, gateway, body, content_type="text/csv")
    assert (res["received"], res["stored"], res["refused"]) == (4, 2, 2)
    assert [(r["index"], r["field"]) for r in res["refusals"]] == [(0, "ts"), (2, "reading")]
    assert "past" in res["refusals"][0]["reason"]
    assert sorted(Reading.objects.values_list("value", flat=True)) == [0.31, 0.33]


@pytest.mark.parametrize(("body", "content_type", "field"), [
    ("", "application/json", "readings"),
    ("{not json", "application/json", "readings"),
    ('{"values": []}', "application/json", "readings"),
    ('{"readings": []}', "application/json", "readings"),
    ("code,time,reading\nWP-0001,1,2\n", "text/csv", "header"),
])
def test_an_empty_or_unreadable_body_is_400_naming_the_field(client, pressure, gateway, body, content_type, field):
    res = post_readings(client, gateway, body, content_type=content_type, expect=400)
    assert res["field"] == field and res["detail"]


def test_a_batch_over_the_limit_is_refused_whole(client, pressure, gateway, monkeypatch):
    monkeypatch.setattr(signs_api, "MAX_BATCH", 3)
    t0 = hour_ago_ms()
    rows = [{"sensor": "WP-0001", "ts": t0 + i * 1000, "value": 0.3} for i in range(4)]
    res = post_readings(client, gateway, {"readings": rows}, expect=413)
    assert res["field"] == "readings" and "3" in res["detail"]
    csv_body = "sensor,ts,value\n" + "".join(f"WP-0001,{r['ts']},0.3\n" for r in rows)
    post_readings(client, gateway, csv_body, content_type="text/csv", expect=413)
    assert Reading.objects.count() == 0
    assert post_readings(client, gateway, {"readings": rows[:3]})["stored"] == 3


def test_posting_readings_needs_a_token_or_a_session(client, pressure):
    t0 = hour_ago_ms()
    body = json.dumps({"readings": [{"sensor": "WP-0001", "ts": t0, "value": 0.3}]})
    assert client.post(f"{API}/readings", data=body, content_type="application/json").status_code == 401
    assert client.post(f"{API}/readings", data=body, content_type="application/json",
                       headers={"Authorization": "Bearer cy_wrong"}).status_code == 401
    assert Reading.objects.count() == 0


def test_the_short_address_api_v1_readings_is_the_same_endpoint(client, pressure, gateway):
    t0 = hour_ago_ms()
    body = {"readings": [{"sensor": "WP-0001", "ts": t0, "value": 0.31}, {"sensor": "NOPE-1", "ts": t0, "value": 1}]}
    response = client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {gateway}"})
    assert response.status_code == 200, response.content
    res = response.json()
    assert (res["stored"], res["refused"]) == (1, 1) and res["refusals"][0]["field"] == "sensor"
    csv = f"sensor,ts,value\nWP-0001,{t0 + MINUTE_MS},0.32\n"
    response = client.post("/api/v1/readings", data=csv, content_type="text/csv",
                           headers={"Authorization": f"Bearer {gateway}"})
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json").status_code == 401
    assert Reading.objects.count() == 2


def test_each_source_is_counted_by_hour_with_its_latest_refusal(client, pressure, gateway, people):
    t0 = hour_ago_ms()
    post_readings(client, gateway, {"readings": [{"sensor": "WP-0001", "ts": t0, "value": 0.3},
                                                 {"sensor": "NOPE-1", "ts": t0, "value": 1}]})
    post_readings(client, gateway, {"readings": [{"sensor": "WP-0001", "ts": t0, "value": 0.3},
                                                 {"sensor": "WP-0001", "ts": t0 + MINUTE_MS, "value": "high"}]})
    _token, other = create_token(people["inspector"], "handheld")
    post_readings(client, other, {"readings": [{"sensor": "WP-0001", "ts": t0 + 2 * MINUTE_MS, "value": 0.31}]})

    rows = call(client, people["admin"], "get", f"{API}/sources")
    assert [(r["account"], r["batches"], r["received"], r["stored"], r["duplicates"], r["refused"]) for r in rows] == [
        ("gateway", 2, 4, 1, 1, 2), ("inspector", 1, 1, 1, 0, 0)]  # sources with refusals first
    assert rows[0]["source"].startswith("user:") and rows[0]["last_refusal"] == "The value is not a number."
    assert rows[1]["last_refusal"] == ""
    # anyone else sees their own account's only
    assert [r["account"] for r in call(client, people["inspector"], "get", f"{API}/sources")] == ["inspector"]
    assert call(client, people["admin"], "get", f"{API}/sources", hours=0, expect=400)["field"] == "hours"
    client.force_login(people["root"])  # and in the admin, read-only
    page = client.get("/admin/signs/sourcetally/")
    assert page.status_code == 200 and "The value is not a number." in page.content.decode()
    assert client.get("/admin/signs/sourcetally/add/").status_code == 403


# --------------------------------------------------------------------------- kinds and sensors


def test_kinds_and_sensors_with_filters_and_paging(client, pressure, pressure_kind, people, world):
    from chengyun.signs.models import SensorKind

    noise = SensorKind.objects.create(code="noise", name="噪声", name_en="Noise", unit="dB", theme="environment")
    make_sensor(code="NS-0001", kind=noise, at="100102001")
    make_sensor(code="WP-0002", kind=pressure_kind, at="100101002", active=False)
    op = people["operator"]

    kinds = call(client, op, "get", f"{API}/kinds")
    assert [(k["code"], k["sensors"], k["alarm_category"]) for k in kinds] == [
        ("noise", 1, None), ("water_pressure", 2, "0101")]

    def codes(**params):
        return [s["code"] for s in call(client, op, "get", f"{API}/sensors", **params)["items"]]

    assert codes() == ["NS-0001", "WP-0001", "WP-0002"]
    assert codes(kind="water_pressure") == ["WP-0001", "WP-0002"]
    assert codes(theme="environment") == ["NS-0001"]
    assert codes(area="100101") == ["WP-0001", "WP-0002"]
    assert codes(area="100101001") == ["WP-0001"]
    assert codes(active="false") == ["WP-0002"]
    assert codes(status="unknown") == ["NS-0001", "WP-0001", "WP-0002"]
    page = call(client, op, "get", f"{API}/sensors", limit=1, offset=1)
    assert page["count"] == 3 and [s["code"] for s in page["items"]] == ["WP-0001"]
    assert call(client, op, "get", f"{API}/sensors", area="999", expect=400)["field"] == "area"
    assert call(client, op, "get", f"{API}/sensors", status="purple", expect=400)["field"] == "status"

    one = call(client, op, "get", f"{API}/sensors/WP-0001")
    assert (one["kind"], one["unit"], one["area"], one["indicator"], one["status"]) == (
        "water_pressure", "MPa", "100101001", "WP-0001", "unknown")
    call(client, op, "get", f"{API}/sensors/NOPE", expect=404)


def test_sensor_state_follows_its_indicator_and_silence(client, pressure, gateway, people):
    t0 = hour_ago_ms(2)  # two hours ago: longer than 3 intervals of 60 s
    post_readings(client, gateway, {"readings": [{"sensor": "WP-0001", "ts": t0, "value": 0.3}]})
    op = people["operator"]
    assert call(client, op, "get", f"{API}/sensors/WP-0001")["status"] == "silent"
    assert [s["code"] for s in call(client, op, "get", f"{API}/sensors", status="silent")["items"]] == ["WP-0001"]
    assert call(client, op, "get", f"{API}/sensors", status="ok")["count"] == 0
    post_readings(client, gateway, {"readings": [{"sensor": "WP-0001", "ts": int(time.time() * 1000) - 5000,
                                                  "value": 0.05}]})
    assert call(client, op, "get", f"{API}/sensors/WP-0001")["status"] == "alarm"
    assert [s["code"] for s in call(client, op, "get", f"{API}/sensors", status="alarm")["items"]] == ["WP-0001"]


def test_administrators_register_sensors_located_in_their_area(client, pressure_kind, people, world, gateway):
    lon, lat = f.centre("100101002")
    body = {"code": "WP-0100", "kind": "water_pressure", "name": "中山路压力", "lon": lon, "lat": lat,
            "department": "WATER-100101", "interval_s": 30}
    created = call(client, people["admin-101"], "post", f"{API}/sensors", body=body, expect=201)
    assert (created["area"], created["department"], created["interval_s"], created["unit"]) == (
        "100101002", "WATER-100101", 30, "MPa")
    sensor = Sensor.objects.get(code="WP-0100")
    assert sensor.area_path == world.areas["100101002"].path
    assert AuditRecord.objects.filter(action="signs.sensor.create", actor="admin-101").count() == 1
    # A new sensor takes readings at once.
    res = post_readings(client, gateway, {"readings": [{"sensor": "WP-0100", "ts": hour_ago_ms(), "value": 0.3}]})
    assert res["stored"] == 1

    call(client, people["admin"], "post", f"{API}/sensors", body=body, expect=409)
    elsewhere = {**body, "code": "WP-0200", "lon": f.centre("100102001")[0], "lat": f.centre("100102001")[1]}
    call(client, people["admin-101"], "post", f"{API}/sensors", body=elsewhere, expect=403)
    assert not Sensor.objects.filter(code="WP-0200").exists()
    for who in ("operator", "inspector"):
        call(client, people[who], "post", f"{API}/sensors", body={**body, "code": "WP-0300"}, expect=403)
    for bad, field in (({"kind": "laser"}, "kind"), ({"lat": 95}, "lat"), ({"code": "a b"}, "code"),
                       ({"department": "NOPE"}, "department"), ({"interval_s": 0}, "interval_s")):
        res = call(client, people["admin"], "post", f"{API}/sensors", body={**body, "code": "WP-0400", **bad},
                   expect=400)
        assert res["field"] == field, res

    moved = call(client, people["admin"], "patch", f"{API}/sensors/WP-0100",
                 body={"lon": f.centre("100102001")[0], "lat": f.centre("100102001")[1]})
    assert moved["area"] == "100102001" and moved["department"] == "WATER-100101"
    call(client, people["admin-101"], "patch", f"{API}/sensors/WP-0100", body={"name": "x"}, expect=403)
    assert list(verify_chain()) == []


# --------------------------------------------------------------------------- indicators


def test_indicators_with_current_value_bands_and_open_warnings(client, pressure, gateway, people):
    t0 = hour_ago_ms()
    post_readings(client, gateway, {"readings": [
        {"sensor": "WP-0001", "ts": t0, "value": 0.3}, {"sensor": "WP-0001", "ts": t0 + MINUTE_MS, "value": 0.55}]})
    op = people["operator"]
    ind = call(client, op, "get", f"{API}/indicators/WP-0001")
    assert (ind["value"], ind["value_ms"], ind["status"], ind["unit"]) == (0.55, t0 + MINUTE_MS, "warning", "MPa")
    assert ind["bands"] == {"warn_low": 0.2, "warn_high": 0.5, "alarm_low": 0.1, "alarm_high": 0.6}
    assert [(w["rule"], w["level"], w["open"]) for w in ind["open_warnings"]] == [("band_high", "warning", True)]
    listed = call(client, op, "get", f"{API}/indicators", status="warning")
    assert listed["count"] == 1 and listed["items"][0]["code"] == "WP-0001"
    assert call(client, op, "get", f"{API}/indicators", status="ok")["count"] == 0
    assert call(client, op, "get", f"{API}/indicators", area="100102")["count"] == 0
    call(client, op, "get", f"{API}/indicators/NOPE", expect=404)


def test_registering_indicators_of_each_source(client, pressure_kind, people, world):
    a = make_sensor(code="WP-0011", kind=pressure_kind, at="100101001", interval_s=60)
    b = make_sensor(code="WP-0012", kind=pressure_kind, at="100101002", interval_s=120)
    admin = people["admin"]
    one = call(client, admin, "post", f"{API}/indicators", expect=201, body={
        "code": "P-11", "name": "压力11", "sensor": "WP-0011", "warn_low": 0.2, "warn_high": 0.5, "hysteresis": 0.01})
    assert (one["source"], one["sensor"], one["theme"], one["name_en"]) == ("sensor", "WP-0011", "water", "压力11")
    call(client, admin, "post", f"{API}/indicators", expect=409,
         body={"code": "P-11b", "name": "again", "sensor": "WP-0011"})

    mean = call(client, admin, "post", f"{API}/indicators", expect=201, body={
        "code": "P-101-MEAN", "name": "区101平均压力", "name_en": "Mean pressure, district 101", "source": "aggregate",
        "inputs": ["WP-0011", "WP-0012"], "aggregate": "mean", "alarm_low": 0.1})
    virtual = Sensor.objects.get(code="P-101-MEAN")
    assert virtual.virtual and virtual.kind == pressure_kind and virtual.interval_s == 120
    assert virtual.area == world.areas["100101"]  # the deepest area holding both inputs
    assert (mean["sensor"], mean["inputs"], mean["area"]) == ("P-101-MEAN", ["WP-0011", "WP-0012"], "100101")
    assert set(Indicator.objects.get(code="P-101-MEAN").inputs.all()) == {a, b}

    cases = call(client, admin, "post", f"{API}/indicators", expect=201, body={
        "code": "LEAKS-101", "name": "区101漏水诉求", "source": "cases", "case_category": "0101",
        "case_area": "100101", "warn_high": 5})
    assert (cases["theme"], cases["unit"], cases["case_category"], cases["area"]) == ("services", "件", "0101", "100101")
    assert Sensor.objects.get(code="LEAKS-101").interval_s == 3600
    sensors = call(client, admin, "get", f"{API}/sensors", virtual="true")
    assert [s["code"] for s in sensors["items"]] == ["LEAKS-101", "P-101-MEAN"]

    for bad, field in (({"warn_low": 0.6, "warn_high": 0.5}, "warn_high"), ({"alarm_low": 0.3, "warn_low": 0.2}, "alarm_low"),
                       ({"sensor": "NOPE"}, "sensor"), ({"theme": "weather"}, "theme"),
                       ({"source": "aggregate", "sensor": None, "inputs": []}, "inputs"),
                       ({"anomaly_score": 2, "anomaly_clear": 3}, "anomaly_clear"),
                       ({"missing_intervals": -1}, "missing_intervals"),
                       ({"flatline_minutes": 1.5}, "flatline_minutes"),
                       ({"flatline_tolerance": -0.1}, "flatline_tolerance")):
        body = {"code": "P-12", "name": "压力12", "sensor": "WP-0012", **bad}
        assert call(client, admin, "post", f"{API}/indicators", body=body, expect=400)["field"] == field
    call(client, people["operator"], "post", f"{API}/indicators", expect=403,
         body={"code": "P-12", "name": "压力12", "sensor": "WP-0012"})

    changed = call(client, admin, "patch", f"{API}/indicators/P-11", body={"warn_high": 0.45, "rate_limit": 0.05})
    assert changed["bands"]["warn_high"] == 0.45 and changed["rate_limit"] == 0.05
    assert (changed["flatline_minutes"], changed["flatline_tolerance"]) == (None, 0.0)
    stuck = call(client, admin, "patch", f"{API}/indicators/P-11",
                 body={"flatline_minutes": 120, "flatline_tolerance": 0.001})
    assert (stuck["flatline_minutes"], stuck["flatline_tolerance"]) == (120, 0.001)
    assert call(client, admin, "patch", f"{API}/indicators/P-11", body={"flatline_minutes": 0})["flatline_minutes"] is None
    assert call(client, admin, "patch", f"{API}/indicators/P-11", body={"warn_high": 0.1}, expect=400)["field"] == "warn_high"
    assert call(client, admin, "patch", f"{API}/indicators/P-11", body={"source": "cases"}, expect=400)["field"] == "source"
    audit = AuditRecord.objects.filter(action="signs.indicator.update").order_by("pk").first()
    assert audit.data["changed"]["warn_high"] == [0.5, 0.45]


# --------------------------------------------------------------------------- series


@pytest.fixture
def fast(pressure_kind):
    """A sensor reporting every 10 s (so it keeps minute rollups) with an indicator."""
    s = make_sensor(code="WP-FAST", kind=pressure_kind, interval_s=10)
    make_indicator(sensor=s)
    return s


def test_series_resolution_follows_the_range_and_rollups_hold_count_min_max_mean(client, fast, gateway, people):
    t0 = hour_ago_ms(3)
    # Every 10 s for three hours; within each minute the values are 0.1 … 0.6.
    rows = [{"sensor": "WP-FAST", "ts": t0 + i * 10_000, "value": round(0.1 * (i % 6 + 1), 1)} for i in range(1080)]
    assert post_readings(client, gateway, {"readings": rows})["stored"] == 1080
    op = people["operator"]
    url = f"{API}/indicators/WP-FAST/series"

    raw = call(client, op, "get", url, start=t0, end=t0 + HOUR_MS)
    assert raw["resolution"] == "raw" and len(raw["points"]) == 360
    assert raw["points"][:2] == [[t0, 0.1, 0.1, 0.1, 1], [t0 + 10_000, 0.2, 0.2, 0.2, 1]]

    two_days = call(client, op, "get", url, start=t0 - 47 * HOUR_MS, end=t0 + HOUR_MS)
    assert two_days["resolution"] == "m" and len(two_days["points"]) == 60
    ts, mean, low, high, count = two_days["points"][0]
    assert (ts, low, high, count) == (t0, 0.1, 0.6, 6) and mean == pytest.approx(0.35)

    ten_days = call(client, op, "get", url, start=t0 - 10 * 24 * HOUR_MS, end=t0 + 3 * HOUR_MS)
    assert ten_days["resolution"] == "h" and [p[0] for p in ten_days["points"]] == [t0, t0 + HOUR_MS, t0 + 2 * HOUR_MS]
    assert [p[4] for p in ten_days["points"]] == [360, 360, 360]
    assert ten_days["points"][0][1] == pytest.approx(0.35)

    hourly = call(client, op, "get", url, start=t0, end=t0 + HOUR_MS, resolution="h")
    assert hourly["resolution"] == "h" and len(hourly["points"]) == 1
    rfc = call(client, op, "get", url, start="1970-01-01T00:00:00Z", end=t0 + HOUR_MS, resolution="h")
    assert len(rfc["points"]) == 1


def test_series_is_capped_auto_steps_up_explicit_is_refused(client, fast, gateway, people, monkeypatch):
    monkeypatch.setattr(signs_api, "MAX_POINTS", 100)
    t0 = hour_ago_ms(3)
    post_readings(client, gateway, {"readings": [
        {"sensor": "WP-FAST", "ts": t0 + i * 10_000, "value": 0.3} for i in range(1080)]})
    op = people["operator"]
    url = f"{API}/indicators/WP-FAST/series"
    # Three hours: raw (1080) and minutes (180) are too many; auto takes hours.
    assert call(client, op, "get", url, start=t0, end=t0 + 3 * HOUR_MS)["resolution"] == "h"
    refused = call(client, op, "get", url, start=t0, end=t0 + 3 * HOUR_MS, resolution="raw", expect=400)
    assert refused["field"] == "start" and "100" in refused["detail"]
    assert call(client, op, "get", url, start="yesterday", expect=400)["field"] == "start"
    assert call(client, op, "get", url, start=t0, end=t0 - 1, expect=400)["field"] == "end"
    assert call(client, op, "get", url, resolution="s", expect=400)["field"] == "resolution"


def test_a_slow_sensors_minute_series_is_its_readings_and_warnings_come_along(client, pressure, gateway, people):
    t0 = hour_ago_ms(12)
    post_readings(client, gateway, {"readings": [
        {"sensor": "WP-0001", "ts": t0 + i * MINUTE_MS, "value": 0.7 if i == 5 else 0.3} for i in range(600)]})
    series = call(client, people["operator"], "get", f"{API}/indicators/WP-0001/series",
                  start=t0, end=t0 + 12 * HOUR_MS)
    assert series["resolution"] == "m" and len(series["points"]) == 600
    assert series["points"][5] == [t0 + 5 * MINUTE_MS, 0.7, 0.7, 0.7, 1]
    assert [(w["rule"], w["level"], w["started_ms"]) for w in series["warnings"]] == [
        ("band_high", "alarm", t0 + 5 * MINUTE_MS)]


# --------------------------------------------------------------------------- warnings


@pytest.fixture
def two_warnings(client, pressure, gateway):
    """A band_high warning that ended, then a band_low alarm still open."""
    t0 = hour_ago_ms(2)
    post_readings(client, gateway, {"readings": [
        {"sensor": "WP-0001", "ts": t0 + i * MINUTE_MS, "value": v}
        for i, v in enumerate([0.3, 0.55, 0.3, 0.3, 0.05])]})
    return t0


def test_warnings_filter_by_indicator_level_rule_state_and_time(client, two_warnings, people):
    t0 = two_warnings
    op = people["operator"]

    def rules(**params):
        return [w["rule"] for w in call(client, op, "get", f"{API}/warnings", **params)["items"]]

    assert rules() == ["band_low", "band_high"]
    assert rules(indicator="WP-0001") == ["band_low", "band_high"]
    assert rules(indicator="OTHER") == []
    assert rules(level="alarm") == ["band_low"]
    assert rules(rule="band_high") == ["band_high"]
    assert rules(open="true") == ["band_low"]
    assert rules(open="false") == ["band_high"]
    assert rules(since=t0 + 3 * MINUTE_MS) == ["band_low"]
    assert rules(until=t0 + 3 * MINUTE_MS) == ["band_high"]
    assert rules(area="100104") == []
    page = call(client, op, "get", f"{API}/warnings", limit=1)
    assert page["count"] == 2 and len(page["items"]) == 1
    alarm = page["items"][0]
    assert (alarm["level"], alarm["peak_value"], alarm["explanation"]["limit"]) == ("alarm", 0.05, 0.1)
    assert alarm["case"] is not None, "an alarm becomes a case"
    assert call(client, op, "get", f"{API}/warnings", level="severe", expect=400)["field"] == "level"


def test_acknowledging_a_warning_by_role_and_area(client, two_warnings, people):
    w = Warning.objects.get(rule="band_low")
    url = f"{API}/warnings/{w.pk}/acknowledge"
    call(client, people["inspector"], "post", url, body={"note": "on my way"}, expect=403)
    call(client, people["operator-104"], "post", url, body={}, expect=403)
    done = call(client, people["operator"], "post", url, body={"note": "crew sent"})
    assert done["acknowledged_by"] == "operator" and done["acknowledged_at"]
    again = call(client, people["admin"], "post", url, body={"note": "me too"})
    assert again["acknowledged_by"] == "operator", "the first acknowledgement stays"
    (audit,) = AuditRecord.objects.filter(action="signs.acknowledge")
    assert (audit.actor, audit.data["note"]) == ("operator", "crew sent")
    call(client, people["operator"], "post", f"{API}/warnings/999999/acknowledge", body={}, expect=404)


def test_the_openapi_schema_documents_the_signs_api(client):
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/v1/readings", "/api/v1/signs/readings", "/api/v1/signs/sources", "/api/v1/signs/sensors", "/api/v1/signs/sensors/{code}",
                 "/api/v1/signs/kinds", "/api/v1/signs/indicators", "/api/v1/signs/indicators/{code}",
                 "/api/v1/signs/indicators/{code}/series", "/api/v1/signs/warnings",
                 "/api/v1/signs/warnings/{warning_id}/acknowledge"):
        assert path in paths, path
        for op in paths[path].values():
            assert op["summary"] and op.get("description"), (path, op.get("operationId"))
    for path in ("/api/v1/readings", "/api/v1/signs/readings"):
        assert set(paths[path]["post"]["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "6 hours" in paths["/api/v1/signs/indicators/{code}/series"]["get"]["description"]
