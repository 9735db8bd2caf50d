"""Duplicates and clusters through the API: attach, grey-zone questions,
merge and unmerge, detach, and cluster warnings (智能发现)."""

from __future__ import annotations

import pytest

from chengyun.cases.models import Case
from chengyun.intake.geo import distance_m
from chengyun.intake.models import ClusterWarning, DuplicateSuggestion, Report
from chengyun.org.models import Role

from .. import factories as f
from .conftest import WATER
from .reports_api import REPORTS, get, post, post_report, report_url, shift

LEAK = "水管爆裂，路面一直冒水"
LEAK_AGAIN = "水管爆裂了，路面一直在冒水"
SUGGESTIONS = REPORTS + "suggestions"


def unmerge_url(number: str) -> str:
    return f"/api/v1/cases/{number}/actions/unmerge"


def two_reports_same_spot(client, staff, sensor) -> tuple[dict, dict]:
    lon, lat = f.centre("100101001")
    first = post_report(client, sensor, description=LEAK, lon=lon, lat=lat)
    second = post_report(client, staff["operator"], channel="hotline", description=LEAK_AGAIN, lon=lon, lat=lat,
                         contact={"phone": "13812341234"})
    return first, second


def test_same_spot_similar_text_is_attached_to_the_open_case(client, staff, sensor):
    first, second = two_reports_same_spot(client, staff, sensor)

    assert second["duplicate"] == "attached"
    assert second["case"] == first["case"]
    assert second["duplicate_explanation"]["best_case"] == first["case"]
    assert second["duplicate_explanation"]["score"] >= second["duplicate_explanation"]["attach_at"]
    assert Case.objects.count() == 1
    case = Case.objects.get(number=first["case"])
    assert case.reports.count() == 2
    attached = case.timeline.filter(action="report_attached")
    assert [e.data["report"] for e in attached] == [second["number"]]
    listed = get(client, staff["operator"], REPORTS, case=first["case"])
    assert {r["number"] for r in listed["items"]} == {first["number"], second["number"]}


def test_farther_than_the_radius_is_a_new_case(client, staff, sensor, intake_world):
    lon, lat = f.centre("100101001")
    first = post_report(client, sensor, description=LEAK, lon=lon, lat=lat)
    radius = intake_world.categories["0101"].duplicate_radius_m
    far_lon, far_lat = shift(lon, lat, east_m=radius + 100)
    assert distance_m(lon, lat, far_lon, far_lat) > radius
    second = post_report(client, sensor, description=LEAK, lon=far_lon, lat=far_lat)

    assert second["duplicate"] == "new"
    assert second["case"] != first["case"]
    assert second["duplicate_explanation"]["candidates"] == 0
    assert second["case_status"] == "dispatched"
    assert Case.objects.count() == 2


def test_grey_zone_asks_a_dispatcher_merge_then_unmerge(client, staff, sensor, settings):
    settings.DUPLICATE_ATTACH_SCORE = 0.999
    settings.DUPLICATE_ASK_SCORE = 0.3
    first, second = two_reports_same_spot(client, staff, sensor)
    assert second["duplicate"] == "ask"
    assert second["case"] != first["case"] and second["case_status"] == "new"

    dispatcher = staff["dispatcher"]
    pending = get(client, dispatcher, SUGGESTIONS)
    assert [(s["report"], s["case"], s["candidate"], s["status"]) for s in pending] == [
        (second["number"], second["case"], first["case"], "pending")]
    assert 0.3 <= pending[0]["score"] < 0.999

    decided = post(client, dispatcher, f"{SUGGESTIONS}/{pending[0]['id']}", merge=True, note="same burst main")
    assert decided["status"] == "merged" and decided["decided_by"] == "dispatcher"
    assert decided["case_status"] == "merged"
    merged = Case.objects.get(number=second["case"])
    assert merged.status == "merged" and merged.merged_into.number == first["case"]
    assert get(client, dispatcher, SUGGESTIONS) == []
    assert len(get(client, dispatcher, SUGGESTIONS, status="merged")) == 1
    # Both reports now show up under the surviving case.
    listed = get(client, dispatcher, REPORTS, case=first["case"])
    assert {r["number"] for r in listed["items"]} == {first["number"], second["number"]}
    assert get(client, dispatcher, report_url(second["number"]))["case_merged_into"] == first["case"]

    # Answered once.
    again = post(client, dispatcher, f"{SUGGESTIONS}/{pending[0]['id']}", expect=400, merge=False)
    assert again["field"] == "suggestion"

    undone = post(client, dispatcher, unmerge_url(second["case"]), reason="different pipes after all")
    assert undone["status"] == "new" and undone["merged_into"] is None
    assert get(client, dispatcher, report_url(second["number"]))["case_status"] == "new"


def test_grey_zone_kept_apart(client, staff, sensor, settings, intake_world):
    settings.DUPLICATE_ATTACH_SCORE = 0.999
    settings.DUPLICATE_ASK_SCORE = 0.3
    first, second = two_reports_same_spot(client, staff, sensor)
    suggestion = DuplicateSuggestion.objects.get()
    # A leader sees the case but does not decide on duplicates.
    refused = post(client, staff["leader"], f"{SUGGESTIONS}/{suggestion.pk}", expect=403, merge=True)
    assert refused["code"] == "forbidden"
    # Outside the area: no such question.
    stranger = f.make_user(username="dispatcher-104", role=Role.DISPATCHER, area=intake_world.areas["100104"])
    assert get(client, stranger, SUGGESTIONS) == []
    post(client, stranger, f"{SUGGESTIONS}/{suggestion.pk}", expect=404, merge=True)

    kept = post(client, staff["dispatcher"], f"{SUGGESTIONS}/{suggestion.pk}", merge=False, note="另一处水管")
    assert kept["status"] == "kept"
    # Kept apart, it goes on as it would have without the question: its category was
    # certain and a rule routes it.
    assert Case.objects.get(number=second["case"]).status == "dispatched"
    assert [t.action for t in Case.objects.get(number=second["case"]).timeline.order_by("at", "pk")][-3:] == [
        "duplicate_kept", "accept", "dispatch"]
    assert Case.objects.get(number=first["case"]).status == "dispatched"
    # The case says what was decided, on its timeline and beside the report.
    entry = Case.objects.get(number=second["case"]).timeline.get(action="duplicate_kept")
    assert entry.data["case"] == first["case"] and entry.note == "另一处水管"
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{second['case']}/").content.decode()
    assert f"Kept apart from {first['case']}: not the same problem" in page
    assert f"Possible duplicate of {first['case']}: kept apart" in page
    assert "Possible duplicate: a dispatcher decides" not in page


def test_merging_a_case_answers_its_open_duplicate_question(client, staff, sensor, settings):
    """A case merged by another way (into a cluster warning's case, by hand) has
    no question left pending: it is answered as merged, and the page says where to."""
    from chengyun.cases import services as case_services

    settings.DUPLICATE_ATTACH_SCORE = 0.999
    settings.DUPLICATE_ASK_SCORE = 0.3
    first, second = two_reports_same_spot(client, staff, sensor)
    lon, lat = f.centre("100101001")
    third = case_services.create_case(title="同一处水管爆裂", category=Case.objects.get(number=first["case"]).category,
                                      lon=lon, lat=lat, by=staff["dispatcher"])
    case_services.merge_case(Case.objects.get(number=second["case"]), into=third, by=staff["dispatcher"])
    question = DuplicateSuggestion.objects.get()
    assert question.status == "merged" and question.decided_by == staff["dispatcher"]
    assert get(client, staff["dispatcher"], SUGGESTIONS) == []
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{third.number}/").content.decode()
    assert f"Possible duplicate of {first['case']}: merged into {third.number}" in page


def test_detach_an_attached_report_into_its_own_case(client, staff, sensor):
    first, second = two_reports_same_spot(client, staff, sensor)
    dispatcher = staff["dispatcher"]
    url = report_url(second["number"], "detach")

    assert post(client, dispatcher, url, expect=400)["field"] == "reason"
    assert post(client, staff["leader"], url, expect=403, reason="not the same")["code"] == "forbidden"
    detached = post(client, dispatcher, url, reason="a different leak across the road")

    assert detached["duplicate"] == "detached"
    assert detached["case"] != first["case"] and detached["case_status"] == "new"
    old = Case.objects.get(number=first["case"])
    assert list(old.reports.values_list("number", flat=True)) == [first["number"]]
    assert old.timeline.filter(action="report_detached", data__report=second["number"]).exists()
    assert Case.objects.get(number=detached["case"]).timeline.filter(action="report_detached").exists()
    # A report that was never attached cannot be detached.
    assert post(client, dispatcher, report_url(first["number"], "detach"), expect=400, reason="x")["field"] == "report"


def test_three_leaks_close_together_raise_one_cluster_warning(client, staff, sensor, intake_world):
    leaf = intake_world.categories["0101"]
    lon, lat = f.centre("100101001")
    # 200 m apart: beyond the duplicate radius (150 m), within the cluster radius (300 m).
    points = [(lon, lat), shift(lon, lat, east_m=200), shift(lon, lat, north_m=200)]
    assert all(distance_m(*a, *b) > leaf.duplicate_radius_m for a in points for b in points if a != b)
    sent = [post_report(client, sensor, description=WATER[i], lon=p[0], lat=p[1]) for i, p in enumerate(points[:2])]
    assert not ClusterWarning.objects.exists()
    sent.append(post_report(client, sensor, description=WATER[2], lon=points[2][0], lat=points[2][1]))
    assert all(r["category"] == "0101" and r["duplicate"] == "new" for r in sent)

    warning = ClusterWarning.objects.get()
    assert warning.report_count == 3 and warning.threshold == 3
    assert warning.radius_m == 300 and warning.window_minutes == 60
    assert set(warning.reports.values_list("number", flat=True)) == {r["number"] for r in sent}
    discovery = warning.case
    assert discovery.channel == "discovery" and discovery.category == leaf
    assert distance_m(warning.lon, warning.lat, discovery.lon, discovery.lat) < 1

    fourth = post_report(client, sensor, description=WATER[3], lon=shift(lon, lat, east_m=100, north_m=100)[0],
                         lat=shift(lon, lat, east_m=100, north_m=100)[1])
    assert ClusterWarning.objects.count() == 1
    warning.refresh_from_db()
    assert warning.report_count == 4
    assert fourth["number"] in set(warning.reports.values_list("number", flat=True))
    assert Case.objects.filter(channel="discovery").count() == 1
    assert Report.objects.count() == 4


LEAK_EN = "Water main burst, water keeps gushing onto the road"


def test_a_report_in_another_language_at_the_spot_asks_a_dispatcher_and_never_attaches(client, staff, sensor,
                                                                                        settings):
    """The texts share no n-grams across languages: they are not compared, the
    place and time decide (weights scaled up), and at most a dispatcher is asked."""
    settings.DUPLICATE_ATTACH_SCORE = 0.6  # place and time alone are 1.0 here: still never attached
    lon, lat = f.centre("100101001")
    first = post_report(client, sensor, description=LEAK, category="0101", lon=lon, lat=lat)
    second = post_report(client, sensor, description=LEAK_EN, category="0101", lon=lon, lat=lat)

    assert second["duplicate"] == "ask" and second["case"] != first["case"]
    exp = second["duplicate_explanation"]
    assert exp["best_case"] == first["case"]
    assert exp["text"] is None and exp["text_compared"] is False
    assert exp["score"] > 0.99  # same spot, same minute: distance and time are both 1
    assert exp["weights"] == {"distance": 0.6364, "time": 0.3636}  # what the score was made with
    pending = DuplicateSuggestion.objects.get(report__number=second["number"])
    assert pending.candidate.number == first["case"] and pending.status == "pending"

    # The same words in the same language attach as before.
    third = post_report(client, sensor, description=LEAK_AGAIN, category="0101", lon=lon, lat=lat)
    assert third["duplicate"] == "attached" and third["case"] == first["case"]
    assert third["duplicate_explanation"]["text"] > 0 and "text_compared" not in third["duplicate_explanation"]


def test_a_report_in_another_language_farther_off_is_a_case_of_its_own(client, staff, sensor, intake_world):
    lon, lat = f.centre("100101001")
    first = post_report(client, sensor, description=LEAK, category="0101", lon=lon, lat=lat)
    radius = intake_world.categories["0101"].duplicate_radius_m
    far_lon, far_lat = shift(lon, lat, east_m=radius * 0.8)
    second = post_report(client, sensor, description=LEAK_EN, category="0101", lon=far_lon, lat=far_lat)

    assert second["duplicate"] == "new" and second["case"] != first["case"]
    assert second["duplicate_explanation"]["text_compared"] is False
    assert second["duplicate_explanation"]["score"] < second["duplicate_explanation"]["ask_at"]


def test_the_case_page_says_the_texts_were_not_compared(client, staff, sensor):
    lon, lat = f.centre("100101001")
    post_report(client, sensor, description=LEAK, category="0101", lon=lon, lat=lat)
    second = post_report(client, sensor, description=LEAK_EN, category="0101", lon=lon, lat=lat)
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{second['case']}/").content.decode()
    assert "texts not compared (different languages)" in page


@pytest.mark.parametrize("text, script", [
    ("The asphalt is peeling off the road surface on 浦东南路 near the crossing.", "latin"),  # a street named in Chinese
    ("楼下KTV每天晚上唱歌到凌晨两点", "zh"),  # an English word in Chinese
    ("小区WiFi和4G信号很差，APP也打不开", "zh"),
    ("水管爆裂", "zh"),
    ("Water main burst", "latin"),
    ("12345 / 021-6321", ""),  # neither: compared with anything
])
def test_the_language_of_a_text_is_what_most_of_it_is_written_in(text, script):
    from chengyun.intake.dedup import comparable, script_of

    assert script_of(text) == script
    assert comparable(script_of(text), "zh") == (script != "latin")
