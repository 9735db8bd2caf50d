"""The vital signs board (城市体征) and an indicator's page, through the
console as staff use them: tiles by theme with their state in words, the
map's sensors, sensor and cluster warnings together, acknowledging, and the
chart's resolution chosen by range."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timedelta

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.intake.models import ClusterWarning
from chengyun.intake.services import ReportInput, submit
from chengyun.org.models import Role
from chengyun.signs.ingest import ingest
from chengyun.signs.models import SensorKind, Warning

from .. import factories as f
from ..intake import conftest as intake_fixtures
from .conftest import make_indicator, make_sensor

# The intake world (category 0101 with cluster rules) and its staff.
intake_world = intake_fixtures.intake_world
staff = intake_fixtures.staff

MIN = 60_000
BOARD = "/console/signs/"


def minute_now() -> int:
    return int(time.time() * 1000) // MIN * MIN


def indicator_url(code: str, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/console/signs/indicators/{code}/" + (f"?{query}" if query else "")


def page(client, user, url: str, status: int = 200) -> str:
    client.force_login(user)
    res = client.get(url)
    assert res.status_code == status
    return res.content.decode()


def embedded_json(html: str, element_id: str):
    m = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert m, element_id
    return json.loads(m.group(1))


def tiles(html: str) -> dict[str, list[tuple[str, str]]]:
    """theme -> [(state, tile text)] as the board shows them."""
    out = {}
    for theme, body in re.findall(r'<section class="theme" aria-labelledby="theme-(\w+)">(.*?)</section>', html, re.S):
        out[theme] = [(state, re.sub(r"<[^>]+>|\s+", " ", text))
                      for state, text in re.findall(r'<li class="tile st-(\w+)">(.*?)</li>', body, re.S)]
    return out


def warning_items(html: str) -> list[str]:
    block = re.search(r'<ol class="warning-list">(.*?)</ol>', html, re.S)
    return [re.sub(r"\s+", " ", x) for x in re.findall(r'<li class="wl[^"]*">(.*?)</li>', block.group(1), re.S)] if block else []


@pytest.fixture
def kinds(intake_world):
    return {
        "noise": SensorKind.objects.create(code="noise", name="噪声", name_en="Noise", unit="dB", theme="environment"),
        "traffic": SensorKind.objects.create(code="traffic", name="车流量", name_en="Traffic flow", unit="veh/min",
                                             theme="roads"),
        "tilt": SensorKind.objects.create(code="tilt", name="建筑倾斜", name_en="Building tilt", unit="°", theme="safety"),
    }


@pytest.fixture
def city(pressure, kinds):
    """Four indicators in four themes, each in a different state:
    water pressure normal, noise above its warning level (open warning),
    traffic silent (last reading 30 min ago, once a minute expected), tilt never measured."""
    t = minute_now() - 30 * MIN
    noise = make_sensor(code="NS-0001", kind=kinds["noise"], at="100102001")
    make_indicator(sensor=noise, warn_high=70, alarm_high=90)
    traffic = make_sensor(code="TR-0001", kind=kinds["traffic"], at="100103001")
    make_indicator(sensor=traffic, missing_intervals=5)
    tilt = make_sensor(code="TL-0001", kind=kinds["tilt"], at="100104001")
    make_indicator(sensor=tilt, warn_high=0.5)
    rows = [("WP-0001", t + i * MIN, 0.3 + 0.01 * (i % 3)) for i in range(30)]
    rows += [("NS-0001", t + i * MIN, 55.0 if i < 20 else 75.0) for i in range(30)]
    rows += [("TR-0001", t - 60 * MIN + i * MIN, 40.0) for i in range(30)]
    res = ingest(rows)
    assert res.stored == len(rows) and not res.refused
    return {"pressure": pressure, "noise": noise, "traffic": traffic, "tilt": tilt}


@pytest.fixture
def cluster(intake_world):
    """Three water-leak reports 200 m apart in street 100101002: a cluster warning with its case."""
    lon, lat = f.centre("100101002")
    east = 200 / (111_320 * math.cos(math.radians(lat)))
    north = 200 / 110_574
    for i, (x, y) in enumerate(((lon, lat), (lon + east, lat), (lon, lat + north))):
        submit(ReportInput(channel="web", description=f"水管爆裂 路面冒水 {i}", category="0101", lon=x, lat=y,
                           source="test", idempotency_key=f"leak-{i}"))
    return ClusterWarning.objects.get()


def test_board_shows_tiles_per_theme_with_their_state_in_words(client, staff, city):
    html = page(client, staff["leader"], BOARD)
    shown = tiles(html)
    assert list(shown) == ["water", "roads", "environment", "safety"]  # Theme order; no empty "services"
    (water,) = shown["water"]
    assert water[0] == "ok" and "Indicator WP-0001" in water[1]
    assert "Normal" in water[1] and "MPa" in water[1] and "normal 0.2–0.5 MPa" in water[1]
    assert "0.3" in water[1]
    assert shown["environment"][0][0] == "warning" and "Warning" in shown["environment"][0][1]
    assert "75 dB" in re.sub(r"\s+", " ", shown["environment"][0][1])
    assert shown["roads"][0][0] == "silent" and "No data" in shown["roads"][0][1]
    assert shown["safety"][0][0] == "unknown" and "Not yet measured" in shown["safety"][0][1]
    # The last day as a sparkline with the normal band, described for screen readers.
    assert html.count('<svg class="spark"') == 3 and 'class="spark-band"' in html
    assert "Last 24 hours, hourly means from" in html
    # Counts: 4 sensors, 1 silent, 1 warning open, no alarm.
    counts = re.findall(r'<span class="n">(\d+)</span>', html)
    assert counts == ["4", "1", "1", "0"]


def test_the_board_lists_readings_by_source_with_refusals_first(client, staff, city):
    assert "Readings by source" not in page(client, staff["leader"], BOARD)  # nothing counted yet: no table
    at = int(time.time() * 1000) // 60_000 * 60_000 - 60_000
    ingest([("WP-0001", at, 0.31)], source="mqtt:gateway-7")
    ingest([("NOPE-9", at, 1.0), ("WP-0001", at, 0.31)], source="simulator")
    html = page(client, staff["leader"], BOARD)
    table = html[html.index('id="sources-h"'):]
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', table, re.S)
    assert [name for name, _cells in rows] == ["simulator", "mqtt:gateway-7"]
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1], re.S)]
    assert cells[:5] == ["2", "0", "1", "1", "Unknown sensor."]  # received, stored, duplicates, refused, why


def test_the_map_data_has_every_located_sensor_with_its_state(client, staff, city):
    data = embedded_json(page(client, staff["dispatcher"], BOARD), "signs-map-data")
    by_code = {s["code"]: s for s in data["sensors"]}
    assert set(by_code) == {"WP-0001", "NS-0001", "TR-0001", "TL-0001"}
    assert {c: s["state"] for c, s in by_code.items()} == {
        "WP-0001": "ok", "NS-0001": "warning", "TR-0001": "silent", "TL-0001": "unknown"}
    noise = by_code["NS-0001"]
    assert (noise["lon"], noise["lat"]) == f.centre("100102001")
    assert noise["url"] == indicator_url("NS-0001") and noise["label"] == "Warning"
    assert data["root"] == f.CITY


def test_sensor_warnings_and_cluster_warnings_are_listed_together_newest_first(client, staff, city, cluster):
    # An alarm on the water pressure: it becomes a case.
    t = minute_now()
    ingest([("WP-0001", t, 0.75)])
    alarm = Warning.objects.get(indicator__code="WP-0001")
    assert alarm.level == "alarm" and alarm.case is not None

    html = page(client, staff["operator"], BOARD)
    items = warning_items(html)
    assert len(items) == 3
    starts = [datetime.fromisoformat(re.search(r'<time datetime="([^"]+)"', i).group(1)) for i in items]
    assert starts == sorted(starts, reverse=True)
    (shown,) = [i for i in items if "Indicator WP-0001" in i]
    assert "Alarm" in shown and "Above its band" in shown and alarm.case.number in shown
    assert "The value 0.75 MPa rose above the limit 0.6 MPa." in shown
    assert any("Report cluster" in i and cluster.case.number in i and "3 reports within 300 m" in i for i in items)
    assert f'href="/console/cases/{cluster.case.number}/"' in html
    assert any("Indicator NS-0001" in i and "Warning" in i for i in items)
    # Counts: the two sensor warnings and the cluster are open; one alarm.
    assert re.findall(r'<span class="n">(\d+)</span>', html)[2:] == ["3", "1"]
    # The cluster is on the map too.
    data = embedded_json(html, "signs-map-data")
    assert [c["case"] for c in data["clusters"]] == [cluster.case.number]


def test_acknowledging_a_warning_takes_an_allowed_role(client, staff, city):
    w = Warning.objects.get(indicator__code="NS-0001")
    inspector = staff["inspector"]  # a role, so may look, but may not acknowledge
    html = page(client, inspector, BOARD)
    assert "Indicator NS-0001" in html
    assert f"/console/signs/warnings/{w.pk}/acknowledge/" not in html
    assert client.post(f"/console/signs/warnings/{w.pk}/acknowledge/").status_code == 403
    w.refresh_from_db()
    assert w.acknowledged_at is None
    html = page(client, staff["leader"], BOARD)  # a leader watches: read only
    assert "Indicator NS-0001" in html and f"/console/signs/warnings/{w.pk}/acknowledge/" not in html
    assert client.post(f"/console/signs/warnings/{w.pk}/acknowledge/").status_code == 403

    html = page(client, staff["operator"], BOARD)
    assert f'action="/console/signs/warnings/{w.pk}/acknowledge/"' in html
    res = client.post(f"/console/signs/warnings/{w.pk}/acknowledge/", {"note": "crew on the way", "next": BOARD})
    assert res.status_code == 302 and res["Location"] == BOARD
    w.refresh_from_db()
    assert w.acknowledged_by == staff["operator"] and w.acknowledged_at is not None
    record = AuditRecord.objects.get(action="signs.acknowledge")
    assert record.data["note"] == "crew on the way"
    # Still open, now shown as acknowledged; an offsite "next" is not followed.
    html = page(client, staff["operator"], BOARD)
    assert "Acknowledged by operator" in html
    assert f'action="/console/signs/warnings/{w.pk}/acknowledge/"' not in html
    res = client.post(f"/console/signs/warnings/{w.pk}/acknowledge/", {"next": "https://evil.example/"})
    assert res["Location"] == BOARD


@pytest.fixture
def fast(kinds):
    """A noise sensor reporting every 10 s for the last two hours, with one loud
    stretch of 10 minutes (an alarm) 60 minutes ago."""
    s = make_sensor(code="NS-FAST", kind=kinds["noise"], at="100102002", interval_s=10)
    make_indicator(sensor=s, warn_high=70, alarm_high=90, hysteresis=2)
    t0 = minute_now() - 120 * MIN
    rows = []
    for i in range(12 * 60):
        t = t0 + i * 10_000
        loud = 60 * MIN <= t - t0 < 70 * MIN
        rows.append(("NS-FAST", t, 95.0 if loud else 50.0 + (i % 6)))
    ingest(rows)
    return s


def test_the_indicator_page_chooses_the_resolution_by_range_and_marks_warnings(client, staff, fast):
    (w,) = Warning.objects.filter(indicator__code="NS-FAST")
    assert (w.level, w.ended_ms is not None) == ("alarm", True)

    six = embedded_json(page(client, staff["leader"], indicator_url("NS-FAST", range="6h")), "chart-data")
    assert six["resolution"] == "raw" and len(six["points"]) == 720
    day = embedded_json(page(client, staff["leader"], indicator_url("NS-FAST", range="24h")), "chart-data")
    assert day["resolution"] == "m" and 120 <= len(day["points"]) <= 121
    t, mean, lo, hi = day["points"][0]
    assert (lo, hi) == (50.0, 55.0) and mean == pytest.approx(52.5)
    month = embedded_json(page(client, staff["leader"], indicator_url("NS-FAST", range="30d")), "chart-data")
    assert month["resolution"] == "h" and 2 <= len(month["points"]) <= 3

    for chart in (six, day, month):
        assert chart["warnings"] == [{"start": w.started_ms, "end": w.ended_ms, "level": "alarm", "rule": "band_high",
                                      "open": False, "label": "Alarm: Above its band"}]
        assert [(b["value"], b["level"]) for b in chart["bands"]] == [(90.0, "alarm"), (70.0, "warning")]

    # A custom range (city time) of 30 minutes before the excursion: raw, no warnings.
    html = page(client, staff["leader"], indicator_url("NS-FAST", range="6h"))
    start = re.search(r'name="start" value="([^"]+)"', html).group(1)
    s = datetime.fromisoformat(start)
    custom = page(client, staff["leader"], indicator_url(
        "NS-FAST", start=(s + timedelta(hours=4)).isoformat(timespec="minutes"),
        end=(s + timedelta(hours=4, minutes=30)).isoformat(timespec="minutes")))
    data = embedded_json(custom, "chart-data")
    assert data["resolution"] == "raw" and data["end"] - data["start"] == 30 * MIN
    assert all(data["start"] <= p[0] < data["end"] for p in data["points"])


def test_the_indicator_page_explains_rules_source_and_history(client, staff, fast):
    w = Warning.objects.get(indicator__code="NS-FAST")
    html = page(client, staff["dispatcher"], indicator_url("NS-FAST"))
    assert "Warning when the value rises above 70 dB." in html
    assert "Alarm when the value rises above 90 dB." in html
    assert "A band warning ends only when the value is back inside the band by 2 dB." in html
    assert "District 2 › Street 2002" in html  # the sensor's area chain
    # History: rule, level, explanation in words, the case the alarm became.
    history = re.search(r'<table class="history">(.*?)</table>', html, re.S).group(1)
    assert "Above its band" in history and "Alarm" in history
    assert "The value 95 dB rose above the limit 90 dB." in history
    assert f'href="/console/cases/{w.case.number}/"' in history
    # Without JavaScript: a table of the latest points.
    assert re.search(r'<table class="points">.*?</table>', html, re.S)


def test_the_owner_department_is_named(client, staff, fast, intake_world):
    fast.department = intake_world.dept("water", "100102")
    fast.save()
    html = page(client, staff["leader"], indicator_url("NS-FAST"))
    assert "Owner department" in html and str(fast.department) in html


def test_a_slow_sensor_shows_its_readings_for_a_day(client, staff, city):
    data = embedded_json(page(client, staff["leader"], indicator_url("WP-0001", range="24h")), "chart-data")
    # Once a minute: no minute rollups are kept, so a day's chart is its raw readings.
    assert data["resolution"] == "m" and len(data["points"]) == 30


def test_only_staff_with_a_role_may_look(client, city):
    assert client.get(BOARD).status_code == 302
    assert client.get(indicator_url("WP-0001")).status_code == 302
    nobody = f.make_user(username="citizen")
    client.force_login(nobody)
    assert client.get(BOARD).status_code == 403
    assert client.get(indicator_url("WP-0001")).status_code == 403
    w = Warning.objects.get(indicator__code="NS-0001")
    assert client.post(f"/console/signs/warnings/{w.pk}/acknowledge/").status_code == 403


def test_the_top_bar_offers_the_board_to_watching_roles(staff):
    from django.template import Context, Template
    from django.test import RequestFactory

    def nav(user):
        request = RequestFactory().get("/")
        request.user = user
        t = Template("{% load console_nav %}{% console_nav as nav %}{{ nav.signs }}")
        return t.render(Context({"request": request}))

    supervisor = f.make_user(username="sup", role=Role.SUPERVISOR)
    assert [nav(u) for u in (staff["leader"], staff["operator"], staff["dispatcher"], supervisor, staff["root"])] == [
        "True"] * 5
    assert nav(staff["water"]) == "False"


def test_a_warning_by_area_is_shown_by_its_street_not_a_circle(client, staff, city):
    for house in ("和平路1号", "和平路9号", "幸福路3号"):
        submit(ReportInput(channel="hotline", description=f"{house}水管爆裂 家里没水了", category="0101",
                           address=f"区1 街道1001 {house}"))
    warning = ClusterWarning.objects.get()
    html = page(client, staff["operator"], BOARD)
    assert any("3 reports in Street 1001, calls without a position among them" in i for i in warning_items(html))
    (shown,) = embedded_json(html, "signs-map-data")["clusters"]
    assert shown["radius_m"] is None and shown["area"] == "100101001", "the map draws the street's outline"
    assert warning.case.lon is None and warning.case.area.code == "100101001", "the case has no made-up point"


def test_a_stuck_value_is_explained_in_words_not_by_its_name_twice():
    from django.utils import translation

    from chengyun.signs.views import explain_warning

    stuck = Warning(rule="flatline", explanation={"rule": "flatline", "value": 0.3, "low": 0.3, "high": 0.3,
                                                   "tolerance": 0.0, "minutes": 60, "readings": 61})
    with translation.override("en"):
        text = explain_warning(stuck, "MPa")
    assert text == "61 readings in a row were all 0.3 MPa, for 60 minutes or more: a stuck gauge or a dead line?"
    stuck.explanation.update(low=0.29, high=0.31, tolerance=0.02)
    with translation.override("zh-hans"):
        assert "0.29 与 0.31 MPa 之间" in explain_warning(stuck, "MPa")
