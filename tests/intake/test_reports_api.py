"""Submitting reports over /api/v1/reports: classification, routing, scope,
idempotency and bad input, as a sending system sees them."""

from __future__ import annotations

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.cases.models import Case
from chengyun.intake.models import Report
from chengyun.org.models import Role
from chengyun.org.services import create_token

from .. import factories as f
from .reports_api import REPORTS, get, post_report, report_url

LEAK = "水管爆裂，路面一直冒水"


def test_confident_sensor_report_is_classified_explained_and_dispatched(client, staff, sensor, intake_world):
    lon, lat = f.centre("100101001")
    body = post_report(client, sensor, channel="sensor", description=LEAK, lon=lon, lat=lat,
                       external_id="alarm-17", attributes={"pressure_kpa": 12})

    assert body["number"].startswith("R")
    assert body["source"] == f"user:{sensor.pk}"
    assert body["channel"] == "sensor" and body["external_id"] == "alarm-17"
    assert body["attributes"] == {"pressure_kpa": 12}
    assert body["category"] == "0101" and body["suggested_category"] == "0101" and not body["category_given"]
    assert body["confidence"] >= 0.5
    assert body["classifier_version"] == 1
    why = body["classification"]
    assert why["decided_by"] == "classifier" and why["model"] == 1
    assert why["terms"], "the terms that drove the decision are returned"
    assert all(weight > 0 for _term, weight in why["terms"])
    assert any("水" in term for term, _weight in why["terms"])
    assert body["duplicate"] == "new"
    assert body["area"] == "100101001"

    assert body["case_status"] == "dispatched"
    case = Case.objects.get(number=body["case"])
    assert case.channel == "sensor" and case.category.code == "0101"
    assert case.lead.department == intake_world.dept("water", "100101")
    assert case.route_explanation["classification"]["decided_by"] == "classifier"
    assert AuditRecord.objects.filter(action="report.create", actor="sensor-platform").count() == 1
    assert list(verify_chain()) == []


def test_the_sender_reads_its_report_back_others_outside_the_area_do_not(client, staff, sensor, intake_world):
    lon, lat = f.centre("100101001")
    sent = post_report(client, sensor, description=LEAK, lon=lon, lat=lat)
    # The sensor's role covers district 100104 only; it still sees what it sent.
    again = get(client, sensor, report_url(sent["number"]))
    assert again["number"] == sent["number"] and again["case"] == sent["case"]
    assert get(client, sensor, report_url(sent["number"][1:].lower()))["number"] == sent["number"], "as read out"
    misread = sent["number"][:-1] + str((int(sent["number"][-1]) + 1) % 10)
    client.force_login(sensor)
    answer = client.get(report_url(misread), HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert answer["code"] == "not_found" and "有一位数字不对" in answer["detail"], answer
    answer = client.get(report_url("R2001010100000012"), HTTP_ACCEPT_LANGUAGE="en").json()
    assert answer == {"detail": "No report R2001010100000012, or it is outside your area.", "code": "not_found",
                      "field": None}
    answer = client.post(REPORTS, data="", content_type="application/json", HTTP_ACCEPT_LANGUAGE="en").json()
    assert answer["field"] == "body" and "empty" in answer["detail"]

    stranger = f.make_user(username="inspector-104", role=Role.INSPECTOR, area=intake_world.areas["100104"])
    get(client, stranger, report_url(sent["number"]), expect=404)
    assert get(client, stranger, REPORTS)["count"] == 0
    # The handling department sees it through its case.
    assert get(client, staff["water"], report_url(sent["number"]))["case_status"] == "dispatched"
    assert [r["number"] for r in get(client, staff["water"], REPORTS)["items"]] == [sent["number"]]


def test_list_filters_by_case_channel_and_time(client, staff, sensor, intake_world):
    lon, lat = f.centre("100101001")
    a = post_report(client, sensor, channel="sensor", description=LEAK, lon=lon, lat=lat)
    b = post_report(client, staff["operator"], channel="hotline", description="路灯不亮 晚上很黑",
                    lon=f.centre("100102001")[0], lat=f.centre("100102001")[1])
    op = staff["operator"]
    assert get(client, op, REPORTS)["count"] == 2
    assert [r["number"] for r in get(client, op, REPORTS, channel="hotline")["items"]] == [b["number"]]
    assert [r["number"] for r in get(client, op, REPORTS, case=a["case"])["items"]] == [a["number"]]
    later = Report.objects.get(number=b["number"]).received_at
    assert [r["number"] for r in get(client, op, REPORTS, since=later.isoformat())["items"]] == [b["number"]]


def test_low_confidence_waits_for_a_dispatcher_with_the_suggestion_stored(client, staff, sensor, settings):
    settings.INTAKE_CONFIDENCE_THRESHOLD = 0.99
    lon, lat = f.centre("100101001")
    body = post_report(client, sensor, description="路面有积水", lon=lon, lat=lat)

    assert body["case_status"] == "new"
    assert body["category"] is None
    assert body["suggested_category"] == "0101"
    assert body["classification"]["decided_by"] == "nobody"
    assert body["classification"]["threshold"] == 0.99
    assert 0.5 < body["confidence"] < 0.99
    case = Case.objects.get(number=body["case"])
    assert case.category is None and not case.assignments.exists()
    assert Report.objects.get(number=body["number"]).suggested_category.code == "0101"


def test_reporter_category_the_classifier_disputes_is_kept_but_not_routed(client, staff, sensor):
    lon, lat = f.centre("100101001")
    body = post_report(client, sensor, description=LEAK, category="0102", lon=lon, lat=lat)

    assert body["category"] == "0102" and body["category_given"]
    assert body["suggested_category"] == "0101"
    assert body["classification"]["decided_by"] == "reporter"
    assert body["classification"]["disagrees"] is True
    assert body["case_status"] == "new"
    case = Case.objects.get(number=body["case"])
    assert case.category.code == "0102" and not case.assignments.exists()


def test_reporter_category_the_classifier_agrees_with_is_routed(client, staff, sensor):
    lon, lat = f.centre("100101001")
    body = post_report(client, sensor, description=LEAK, category="0101", lon=lon, lat=lat)
    assert body["category_given"] and body["classification"]["disagrees"] is False
    assert body["case_status"] == "dispatched"


# --------------------------------------------------------------------------- idempotency


def test_same_key_twice_gives_the_first_report_back(client, staff, sensor):
    lon, lat = f.centre("100101001")
    first = post_report(client, sensor, key="alarm-4711", description=LEAK, lon=lon, lat=lat)
    second = post_report(client, sensor, key="alarm-4711", expect=200, description=LEAK, lon=lon, lat=lat)
    assert second["number"] == first["number"] and second["case"] == first["case"]
    assert second["description"] == LEAK
    # The key may come in the body instead of the header.
    third = post_report(client, sensor, expect=200, idempotency_key="alarm-4711", description=LEAK)
    assert third["number"] == first["number"]
    assert Report.objects.count() == 1 and Case.objects.count() == 1
    assert AuditRecord.objects.filter(action="report.create").count() == 1


@pytest.mark.parametrize("change", [
    {"description": "something else entirely"},
    {"lon": 0.01},  # added to the first point's longitude
    {"category": "0102"},
    {"address": "区1 街道1001 另一条路1号"},
    {"external_id": "WL-0002"},  # another record of the sending system
    {"channel": "department"},
])
def test_a_used_key_with_another_report_is_422_not_the_first_report(client, staff, sensor, change):
    """A sender that reuses a key for a different report hears so (as the
    IETF Idempotency-Key draft has it), instead of getting the first report
    back as though the new one had been taken."""
    lon, lat = f.centre("100101001")
    sent = {"description": LEAK, "lon": lon, "lat": lat}
    first = post_report(client, sensor, key="alarm-4712", **sent)
    other = {**sent, **change, "lon": lon + change["lon"]} if "lon" in change else {**sent, **change}
    answer = post_report(client, sensor, key="alarm-4712", expect=422, **other)
    assert answer["code"] == "idempotency_key_reused" and answer["field"] == "idempotency_key"
    assert first["number"] in answer["detail"]
    assert Report.objects.count() == 1 and Case.objects.count() == 1


def test_a_used_key_with_another_area_is_422_and_the_same_area_a_retry(client, staff, sensor, intake_world):
    sent = {"channel": "department", "description": LEAK, "area": "100101001"}
    first = post_report(client, sensor, key="dept-7", **sent)
    assert post_report(client, sensor, key="dept-7", expect=200, **sent)["number"] == first["number"]
    answer = post_report(client, sensor, key="dept-7", expect=422, **{**sent, "area": "100101002"})
    assert answer["code"] == "idempotency_key_reused" and "area" in answer["detail"]
    assert Report.objects.count() == 1


def test_keys_are_per_sender(client, staff, sensor):
    lon, lat = f.centre("100101001")
    mine = post_report(client, sensor, key="k-1", description=LEAK, lon=lon, lat=lat)
    theirs = post_report(client, staff["inspector"], key="k-1", channel="inspector", description=LEAK,
                         lon=lon + 0.05, lat=lat)
    assert mine["number"] != theirs["number"]
    assert Report.objects.count() == 2


def test_header_key_wins_over_body_key(client, staff, sensor):
    lon, lat = f.centre("100101001")
    first = post_report(client, sensor, key="from-header", idempotency_key="from-body", description=LEAK,
                        lon=lon, lat=lat)
    assert Report.objects.get(number=first["number"]).idempotency_key == "from-header"
    post_report(client, sensor, key="from-header", expect=200, description=LEAK)


# --------------------------------------------------------------------------- who may submit


def test_bearer_token_of_a_department_system(client, intake_world):
    system = f.make_user(username="water-erp", role=Role.HANDLER, department=intake_world.dept("water", "100101"))
    _token, key = create_token(system, "erp")
    lon, lat = f.centre("100101001")
    response = client.post(REPORTS, data={"channel": "department", "description": LEAK, "lon": lon, "lat": lat},
                           content_type="application/json", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.content
    assert response.json()["source"] == f"user:{system.pk}"
    assert Report.objects.get().created_by == system


def test_the_path_without_its_trailing_slash_is_the_same_endpoint(client, intake_world):
    """/api/v1/reports (as the docs write it) takes the report: no redirect,
    which clients follow after a POST with a GET, losing the alarm."""
    system = f.make_user(username="water-erp", role=Role.HANDLER, department=intake_world.dept("water", "100101"))
    _token, key = create_token(system, "erp")
    auth = {"Authorization": f"Bearer {key}"}
    lon, lat = f.centre("100101001")
    response = client.post("/api/v1/reports", data={"channel": "sensor", "description": LEAK, "lon": lon, "lat": lat},
                           content_type="application/json", headers=auth)
    assert response.status_code == 201, response.content
    number = response.json()["number"]
    assert Report.objects.get().number == number
    listed = client.get("/api/v1/reports", headers=auth)
    assert listed.status_code == 200 and [r["number"] for r in listed.json()["items"]] == [number]
    assert client.get(f"/api/v1/reports/{number}", headers=auth).json()["number"] == number
    assert client.get("/api/v1/no-such-thing", headers=auth).status_code == 404


def test_a_group_of_categories_is_not_a_category_to_report_in(client, sensor, intake_world):
    body = post_report(client, sensor, expect=400, description=LEAK, category="01")
    assert body["field"] == "category" and "group" in body["detail"]
    assert not Report.objects.exists() and not Case.objects.exists()


def test_anonymous_and_roleless_users_may_not_submit(client, intake_world):
    response = client.post(REPORTS, data={"description": LEAK}, content_type="application/json")
    assert response.status_code == 401
    nobody = f.make_user(username="nobody")
    body = post_report(client, nobody, expect=403, description=LEAK)
    assert body["code"] == "forbidden"
    assert not Report.objects.exists() and not Case.objects.exists()


def test_a_program_with_a_wrong_or_no_token_is_told_401_not_a_csrf_failure(intake_world):
    """Over real HTTP rules (CSRF enforced): a program never has a CSRF token to send."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    for headers in ({"Authorization": "Bearer nope"}, {}, {"Authorization": "Token nope"}):
        response = client.post(REPORTS, data={"description": LEAK}, content_type="application/json", headers=headers)
        assert response.status_code == 401, (headers, response.content)
        body = response.json()
        assert body["code"] == "unauthorized" and "Bearer" in body["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")
    # A logged-in browser that also sends an Authorization header (browsers add Basic or
    # Negotiate ones by themselves on intranets) is not let in by its session without CSRF.
    client.force_login(f.make_user(username="desk", role="dispatcher", area=intake_world.areas[f.CITY]))
    for header in ("Bearer nope", "Basic ZGVzazp4", "Negotiate abc"):
        response = client.post(REPORTS, data={"description": LEAK}, content_type="application/json",
                               headers={"Authorization": header})
        assert response.status_code == 401, (header, response.content)
    response = client.post(REPORTS, data={"description": LEAK}, content_type="application/json")
    assert response.status_code == 403, "the session alone: Django's CSRF check applies"
    client.logout()
    # A body that is not JSON: 400 in the shape of every other error.
    _token, sensor_token = create_token(f.make_user(username="platform", role="inspector",
                                                    area=intake_world.areas[f.CITY]), "alarms")
    response = client.post(REPORTS, data="{not json", content_type="application/json",
                           headers={"Authorization": f"Bearer {sensor_token}"})
    assert response.status_code == 400 and response.json()["field"] == "body"
    assert not Report.objects.exists()


def test_errors_speak_the_callers_language_and_name_the_field_as_sent(client, sensor, intake_world):
    client.force_login(sensor)
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
    answer = client.post(REPORTS, data={"channel": "sensor", "description": LEAK, "lon": float("nan"), "lat": 30.5},
                         content_type="application/json", **zh).json()
    assert answer["field"] == "lon" and answer["detail"].startswith("经度"), answer
    answer = client.post(REPORTS, data={"channel": "hotline", "description": LEAK, "contact": "李四"},
                         content_type="application/json", **zh).json()
    assert answer["field"] == "contact" and "应为 JSON 对象" in answer["detail"], "a text is not a contact, not dropped"
    answer = client.post(REPORTS, data={"channel": "hotline", "description": LEAK, "priority": 3},
                         content_type="application/json", **zh).json()
    assert answer["field"] == "priority" and "应为文字" in answer["detail"], answer
    assert not Report.objects.exists()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("body", "field"), [
    ({"channel": "sensor"}, "description"),
    ({"channel": "sensor", "description": LEAK}, "lat"),  # a device knows where it is
    ({"channel": "inspector", "description": LEAK, "lon": "", "lat": "", "address": " "}, "lat"),
    ({"channel": "web", "description": LEAK}, "lat"),
    ({"channel": "hotline", "description": LEAK, "area": "999"}, "area"),
    ({"description": "   "}, "description"),
    ({"description": "x" * 4001}, "description"),
    ({"description": LEAK, "lon": 120.5, "lat": "north"}, "lat"),
    ({"description": LEAK, "lon": 120.5, "lat": 95}, "lat"),
    ({"description": LEAK, "lon": 120.5, "lat": True}, "lat"),  # not the number 1
    ({"description": LEAK, "lon": 200, "lat": 30.5}, "lon"),
    ({"description": LEAK, "lon": 120.5}, "lat"),
    ({"description": LEAK, "channel": "department", "lon": 100.0, "lat": 10.0}, "lat"),  # outside, nothing else
    ({"description": LEAK, "category": "9999"}, "category"),
    ({"description": LEAK, "channel": "discovery"}, "channel"),
    ({"description": LEAK, "channel": "carrier-pigeon"}, "channel"),
    ({"description": LEAK, "priority": "asap"}, "priority"),
    ({"description": LEAK, "contact": {"email": "not an address"}}, "email"),
    ({"description": LEAK, "title": "t" * 201}, "title"),
])
def test_bad_input_is_400_naming_the_field_and_stores_nothing(client, staff, sensor, body, field):
    audit = AuditRecord.objects.count()
    answer = post_report(client, sensor, expect=400, key="bad-1", **body)
    assert answer["field"] == field
    assert answer["code"] == "invalid"
    assert answer["detail"]
    assert not Report.objects.exists()
    assert not Case.objects.exists()
    assert AuditRecord.objects.count() == audit
    # The key was not used up by the failed attempt.
    lon, lat = f.centre("100101001")
    post_report(client, sensor, key="bad-1", description=LEAK, lon=lon, lat=lat)


def test_the_channel_in_any_case_and_the_priorities_named(client, sensor, intake_world):
    lon, lat = f.centre("100101001")
    assert post_report(client, sensor, channel=" Sensor", description=LEAK, lon=lon, lat=lat)["channel"] == "sensor"
    answer = post_report(client, sensor, expect=400, channel="sensor", description=LEAK, lon=lon, lat=lat,
                         priority="super")
    assert answer["field"] == "priority" and "urgent" in answer["detail"] and "low" in answer["detail"]
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["ReportIn"]["properties"]
    assert "urgent" in schema["priority"]["enum"]


def test_the_channel_is_required_and_only_calls_and_other_systems_may_leave_the_place_out(
        client, sensor, intake_world):
    client.force_login(sensor)
    lon, lat = f.centre("100101001")
    # No default: a department's report taken for a sensor alarm would keep a point outside the city.
    answer = client.post(REPORTS, data={"description": LEAK, "lon": lon, "lat": lat},
                         content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert answer["field"] == "channel" and "必填" in answer["detail"], answer
    assert not Report.objects.exists()
    # A call about a problem the caller cannot place waits for a dispatcher to place it.
    call = post_report(client, sensor, channel="hotline", description=LEAK)
    assert call["area"] is None and call["case_status"] == "new"
    why = client.get(report_url(call["number"]), HTTP_ACCEPT_LANGUAGE="zh-hans").json()["duplicate_explanation"]
    assert why["reason"].endswith("not checked") and why["reason_text"].startswith("未检查"), why
    # A system that knows the grid gives its code.
    placed = post_report(client, sensor, channel="department", description="井盖缺失，行人易跌落", area="100101001")
    assert placed["area"] == "100101001" and placed["lon"] is None
    assert Report.objects.count() == 2


def test_a_stray_point_outside_the_city_gives_way_to_the_address(client, sensor, intake_world):
    body = post_report(client, sensor, channel="department", description=LEAK, lon=100.0, lat=10.0,
                       address="区1 街道1001 和平路12号")
    report = Report.objects.get(number=body["number"])
    assert report.lon is None and report.lat is None, "the point outside the city is not kept"
    assert report.area.code == "100101001", "the address placed it"


def test_a_sensor_beyond_the_boundary_still_raises_its_alarm(client, sensor, intake_world):
    """The city's own sensors may stand outside it (an upstream reservoir): the
    alarm is taken with its point and waits for a dispatcher."""
    body = post_report(client, sensor, channel="sensor", description=LEAK, lon=100.0, lat=10.0)
    report = Report.objects.get(number=body["number"])
    assert (report.lon, report.lat) == (100.0, 10.0) and report.area is None
    assert report.case.status == "new"


def test_the_api_docs_page_needs_no_network(client, staff):
    """Deployments may be offline: Swagger UI comes from our static files, not a CDN."""
    client.force_login(staff["root"])
    page = client.get("/api/v1/docs").content.decode()
    assert "swagger-ui-bundle.js" in page and "/static/" in page
    assert "cdn." not in page and "https://" not in page.replace("https://swagger.io", "")


def test_every_endpoint_is_documented(client, staff):
    client.force_login(staff["root"])
    schema = client.get("/api/v1/openapi.json").json()
    ours = {p: ops for p, ops in schema["paths"].items() if "/reports" in p or "/classifier" in p}
    assert set(ours) == {
        "/api/v1/reports/", "/api/v1/reports/{number}", "/api/v1/reports/{number}/contact",
        "/api/v1/reports/{number}/detach", "/api/v1/reports/suggestions", "/api/v1/reports/suggestions/{suggestion_id}",
        "/api/v1/classifier/models", "/api/v1/classifier/models/{version}/activate", "/api/v1/classifier/classify",
    }
    for ops in ours.values():
        for op in ops.values():
            assert op.get("summary") and op.get("description")
    submit = ours["/api/v1/reports/"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in submit["parameters"]]
    # Its errors are described too, in the shape they come in.
    assert {"200", "201", "400", "401", "403", "422"} <= set(submit["responses"])
    error = schema["components"]["schemas"]["ErrorOut"]["properties"]
    assert set(error) == {"detail", "code", "field"}
