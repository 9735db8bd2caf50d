"""Following a report: its public status, never names, notes or contact data."""

from __future__ import annotations

import re

import pytest

from chengyun.cases import services as case_services
from chengyun.cases.models import Case
from chengyun.cases.workflow import CaseStatus
from chengyun.intake.models import DuplicateOutcome, Report
from chengyun.intake.reporter_words import STATUS_LABELS
from chengyun.intake.services import ReportInput, submit

from .. import factories as f
from .pages import EN, ZH, report_form

pytestmark = pytest.mark.django_db


def track(client, number: str, **headers) -> str:
    response = client.get(f"/track/{number}/", **headers)
    assert response.status_code == 200
    return response.content.decode()


def test_tracking_shows_the_status_and_never_contact_data_or_staff(client, intake_world):
    lon, lat = f.centre("100101001")
    client.post("/report/", report_form(
        client, description="水管爆裂 路面冒水", lon=str(lon), lat=str(lat),
        name="张三丰", phone="13812345678", email="zhang@example.org",
    ))
    report = Report.objects.select_related("case").get(source="portal")
    assert report.contact.phone == "13812345678"
    case = report.case
    assert case.status == CaseStatus.DISPATCHED, "the classifier and the routing rule sent it on"
    officer = f.make_user(username="wang.xiaoming", superuser=True)
    case_services.start_case(case, by=officer, note="called the reporter at 13812345678, Mr 张三丰")

    html = track(client, report.number, **EN)
    assert "Status: Being fixed" in html and "The department is working on it." in html
    steps = re.findall(r"<li><time[^>]*>[^<]*</time> <span>([^<]*)</span></li>", html)
    assert steps == ["Report received", "Accepted by the city operations centre",
                     "Sent to the department that handles it", "Work started"]
    for secret in ("13812345678", "138****5678", "5678", "张三丰", "张*", "zhang@example.org", "wang.xiaoming", "intake",
                   "called the reporter"):
        assert secret not in html, secret

    zh = track(client, report.number, **ZH)
    assert '<html lang="zh-Hans"' in zh
    assert "分类0101" in zh and "测试市 › 区1 › 街道1001" in zh
    assert "13812345678" not in zh and "张三丰" not in zh


def test_a_report_added_to_an_existing_case_says_so_and_shows_that_status(client, intake_world):
    lon, lat = f.centre("100102001")
    first = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    again = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    assert again.duplicate == DuplicateOutcome.ATTACHED and again.case_id == first.case_id
    html = track(client, again.number, **EN)
    assert "Handled together with other reports of the same problem" in html
    assert f"Status: {STATUS_LABELS[first.case.status]}" in html
    received = client.get(f"/report/received/{again.number}/", **EN).content.decode()
    assert "Your report has been added to it" in received


def test_a_rated_case_does_not_thank_every_reporter_for_feedback_they_did_not_give(client, intake_world, admin_user):
    lon, lat = f.centre("100102001")
    first = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    again = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    assert again.case_id == first.case_id
    for step in (case_services.start_case, case_services.report_done,
                 lambda c, by: case_services.verify_case(c, by=by, ok=True),
                 lambda c, by: case_services.record_callback(c, by=by, satisfaction="satisfied")):
        step(Case.objects.get(pk=first.case_id), by=admin_user)
    assert Case.objects.get(pk=first.case_id).status == CaseStatus.RATED
    for report in (first, again):
        html = track(client, report.number, **EN)
        assert "A reporter was asked whether it was fixed" in html
        assert "your feedback" not in html.lower()


def test_a_callback_that_reached_nobody_is_not_said_to_have_asked_anyone(client, intake_world, admin_user):
    lon, lat = f.centre("100102001")
    report = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    for step in (case_services.start_case, case_services.report_done,
                 lambda c, by: case_services.verify_case(c, by=by, ok=True),
                 lambda c, by: case_services.record_callback(c, by=by, satisfaction="unreachable")):
        step(Case.objects.get(pk=report.case_id), by=admin_user)
    html = track(client, report.number, **EN)
    assert "The city tried to reach a reporter to ask whether it was fixed" in html
    assert "A reporter was asked" not in html


def test_a_case_merged_by_staff_shows_the_status_of_the_case_it_joined(client, intake_world, admin_user, settings):
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # nothing is routed automatically: both wait as "new"
    older = submit(ReportInput(channel="web", description="something odd at the corner", address="区1")).report
    newer = submit(ReportInput(channel="web", description="bench broken near the bus stop", address="区1")).report
    assert older.case.status == newer.case.status == CaseStatus.NEW and older.case_id != newer.case_id
    case_services.merge_case(newer.case, into=older.case, by=admin_user, note="same as the other")
    case_services.accept_case(Case.objects.get(pk=older.case_id), by=admin_user)

    html = track(client, newer.number, **EN)
    assert "Handled together with other reports of the same problem" in html
    assert "Status: Accepted" in html and "It will be sent to the department" in html, "the status of the case it joined"
    own = re.search(r'<h3>Your report</h3>\s*<ol class="timeline">(.*?)</ol>', html, re.S).group(1)
    assert re.findall(r"<span>([^<]*)</span>", own) == ["Report received", "Handled together with other reports of the same problem"]
    assert "same as the other" not in html and "root" not in html


def test_unknown_number_is_a_helpful_404(client, intake_world):
    response = client.get("/track/R202001010009999/", **EN)
    assert response.status_code == 404
    html = response.content.decode()
    assert "We could not find this report" in html and "R202001010009999" in html
    assert 'action="/track/"' in html and 'value="R202001010009999"' in html
    assert '<html lang="en"' in html and '<a class="skip" href="#main">' in html


def test_track_form_tidies_the_number_and_explains_a_wrong_one(client, intake_world):
    report = submit(ReportInput(channel="web", description="路灯不亮", address="区2")).report
    typed = " " + report.number.lower()[:6] + " " + report.number[6:] + " "
    response = client.get("/track/", {"number": typed})
    assert response.status_code == 302 and response["Location"] == f"/track/{report.number}/"
    html = client.get("/track/", {"number": "12345"}, **EN).content.decode()
    assert 'id="id_number_error"' in html and '<a href="#id_number">' in html
    assert re.search(r'<input[^>]*name="number"[^>]*aria-invalid="true"', html)


def test_the_number_without_its_r_is_found_and_a_misread_digit_is_named(client, intake_world):
    report = submit(ReportInput(channel="web", description="路灯不亮", address="区2")).report
    assert len(report.number) == 17, "R, the day, seven digits of the id and the check digit"
    response = client.get("/track/", {"number": report.number[1:]})
    assert response.status_code == 302 and response["Location"] == f"/track/{report.number}/"
    assert client.get(f"/track/{report.number[1:]}/").status_code == 200, "a link without the R works too"
    swapped = report.number[:-3] + report.number[-2] + report.number[-3] + report.number[-1]
    if swapped == report.number:
        swapped = report.number[:-1] + str((int(report.number[-1]) + 1) % 10)
    html = client.get("/track/", {"number": swapped}, **ZH).content.decode()
    assert "有一位数字不对" in html and 'id="id_number_error"' in html
    # A copied link with a digit changed: the not-found page says why.
    response = client.get(f"/track/{swapped}/", **EN)
    assert response.status_code == 404 and "one digit is wrong" in response.content.decode()
    assert "one digit is wrong" not in client.get("/track/R2001010100000012/", **EN).content.decode()


def test_an_older_number_without_a_check_digit_is_found_not_called_misread(client, intake_world):
    """Before the check digit, an id of ten million or more made 16 digits after the R."""
    report = submit(ReportInput(channel="web", description="路灯不亮", address="区2")).report
    old = "R2026112812345678"
    from chengyun.intake import numbers

    assert not numbers.valid(old), "the example would pass the check by chance"
    Report.objects.filter(pk=report.pk).update(number=old)
    response = client.get("/track/", {"number": old.lower()})
    assert response.status_code == 302 and response["Location"] == f"/track/{old}/"
    assert client.get(f"/track/{old}/").status_code == 200


def test_a_report_sent_by_a_partner_system_is_trackable_before_the_pipeline_has_run(client, intake_world, settings):
    from chengyun.intake import received
    from chengyun.intake.services import receive

    settings.INTAKE_QUEUE = "worker"
    lon, lat = f.centre("100101001")
    report = receive(ReportInput(channel="open311", description="水管爆裂 路面冒水", lon=lon, lat=lat,
                                 contact={"phone": "13812345678"}, source="apikey:1")).report
    assert report.case is None
    page = track(client, report.number, **EN)
    assert "being sent to the responsible department" in page and "13812345678" not in page
    received.process_received(ids=[report.pk])
    assert "being sent to the responsible department" not in track(client, report.number, **EN)


def test_an_attached_report_follows_the_case_from_its_own_arrival(client, intake_world):
    """Its timeline begins with its own arrival, not with the first report's, and says
    when the problem was first reported."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from chengyun.clock import simulated

    t0 = datetime(2026, 3, 2, 16, 39, tzinfo=ZoneInfo("Asia/Shanghai"))
    lon, lat = f.centre("100102001")
    with simulated(t0):
        first = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    with simulated(t0 + timedelta(hours=2, minutes=3)):
        again = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    assert again.case_id == first.case_id
    html = track(client, again.number, **EN)
    steps = re.search(r'id="h-timeline">.*?<ol class="timeline">(.*?)</ol>', html, re.S).group(1)
    labels = re.findall(r"<span>([^<]*)</span>", steps)
    # Where the case stood when the report came (sent to a department), then the report itself;
    # not the first reporter's "Report received".
    assert labels[:2] == ["Sent to the department that handles it", "Your report received: handled with this case"]
    assert "Report received" not in labels
    assert "2026-03-02T18:42" in steps
    assert "It was first reported on" in html
    assert "It was first reported on" not in track(client, first.number, **EN), "the first report is the case's own"


def test_a_report_whose_case_was_merged_on_follows_from_its_own_arrival_too(client, intake_world, admin_user):
    """Attached to a case that was then merged into another: its own box does not show the
    first caller's report as its own, and the first report is the earliest of all."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from chengyun.clock import simulated

    t0 = datetime(2026, 3, 2, 7, 32, tzinfo=ZoneInfo("Asia/Shanghai"))
    lon, lat = f.centre("100102001")
    with simulated(t0):
        first = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    with simulated(t0 + timedelta(minutes=6)):
        other = case_services.create_case(title="路面冒水", category=first.case.category, by=admin_user,
                                          area=first.case.area)
    with simulated(t0 + timedelta(minutes=18)):
        again = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
        assert again.case_id == first.case_id
        case_services.recall_case(Case.objects.get(pk=first.case_id), by=admin_user, reason="one incident")
        case_services.merge_case(Case.objects.get(pk=first.case_id), into=other, by=admin_user)
    html = track(client, again.number, **EN)
    own = re.search(r'<h3>Your report</h3>\s*<ol class="timeline">(.*?)</ol>', html, re.S).group(1)
    labels = re.findall(r"<span>([^<]*)</span>", own)
    assert labels[:2] == ["Sent to the department that handles it", "Your report received: handled with this case"]
    assert "Report received" not in labels, "the first caller's report is not shown as this one's"
    assert "It was first reported on" in html and "7:32" in html.split("It was first reported on")[1][:40]
