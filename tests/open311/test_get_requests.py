"""GET requests (search), GET one request, tokens: fields, statuses,
filters, paging, time zone, and no personal data."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chengyun.cases import services as case_services
from chengyun.cases.models import Case
from chengyun.cases.workflow import CaseStatus
from chengyun.clock import now, simulated
from chengyun.intake.models import Report

from .. import factories as f
from .conftest import BASE, body, leak_form

FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code", "description",
          "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
          "address", "address_id", "zipcode", "lat", "long", "media_url"]
PERSONAL = ["li@example.org", "13812345678", "李四", "dev-1", "acc-9"]


def post(client, key, **extra) -> Report:
    r = client.post(BASE + "requests.json", leak_form(key, **extra))
    assert r.status_code == 200, r.content
    return Report.objects.get(number=body(r)[0]["service_request_id"])


def close(case: Case, by) -> Case:
    case = Case.objects.get(pk=case.pk)
    case_services.start_case(case, by=by)
    case_services.report_done(Case.objects.get(pk=case.pk), by=by)
    case_services.verify_case(Case.objects.get(pk=case.pk), by=by, ok=True)
    return Case.objects.get(pk=case.pk)


@pytest.fixture
def filed(client, api_key):
    """Three requests in three districts: two water leaks, one street light."""
    a = post(client, api_key, at="100101001", email="li@example.org", phone="13812345678", first_name="四",
             last_name="李", device_id="dev-1", account_id="acc-9", media_url="https://img.example.org/a.jpg")
    b = post(client, api_key, at="100102001", description="小区门口水管爆了")
    c = post(client, api_key, at="100103002", service_code="0102", description="路灯不亮 晚上很黑",
             **{"attribute[severity]": None})
    return a, b, c


def test_one_request_json_has_every_field_and_no_personal_data(client, filed, services_world):
    a = filed[0]
    r = client.get(BASE + f"requests/{a.number}.json")
    assert r.status_code == 200
    (row,) = body(r)
    assert list(row) == FIELDS
    case = a.case
    assert case.status == CaseStatus.DISPATCHED, "confident category + routing rule: dispatched at once"
    assert row["service_request_id"] == a.number
    assert row["status"] == "open"
    assert row["status_notes"] == "已派遣", "Chinese unless English is asked for"
    # The id as a person may type it: lower case, or without its R.
    for typed in (a.number.lower(), a.number[1:]):
        assert body(client.get(BASE + f"requests/{typed}.json"))[0]["service_request_id"] == a.number
    assert body(client.get(BASE + f"tokens/{a.number.lower()}.json"))[0]["service_request_id"] == a.number
    assert row["service_code"] == "0101" and row["service_name"] == "水管漏水"
    assert row["description"] == "水管爆裂，路面一直冒水"
    assert row["agency_responsible"] == services_world.dept("water", "100101").display_name
    assert row["requested_datetime"].endswith("+08:00")
    assert row["updated_datetime"].endswith("+08:00")
    assert row["expected_datetime"] and row["expected_datetime"].endswith("+08:00")
    assert row["address_id"] == "100101001"
    assert row["zipcode"] is None
    assert (row["lat"], row["long"]) == (a.lat, a.lon)
    assert row["media_url"] == "https://img.example.org/a.jpg"
    assert row["service_notice"]
    for secret in PERSONAL:
        assert secret not in r.content.decode()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_numbers_and_emails_written_into_the_text_are_shown_masked(client, api_key, fmt):
    """A caller's number dictated into the description, an email in the address: the public sees them masked."""
    a = post(client, api_key, description="水管爆裂，请回电13812345678或 li@example.org，身份证110101199003071234",
             address_string="幸福路12号 电话021-62345678")
    shown = client.get(BASE + f"requests/{a.number}.{fmt}").content.decode()
    for secret in ("13812345678", "li@example.org", "110101199003071234", "62345678"):
        assert secret not in shown
    assert "138****5678" in shown and "l***@example.org" in shown and "110101********1234" in shown
    assert "幸福路12号" in shown, "the rest of the address stays"
    assert Report.objects.get(pk=a.pk).description.startswith("水管爆裂，请回电13812345678"), "stored as written"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_hotline_call_is_listed_without_the_callers_words_or_place(client, filed, fmt):
    """12345 calls count and can be followed, as 12345 open data publishes
    them: service, status, times and area; not what the caller said nor where they live."""
    from chengyun.intake.services import ReportInput, submit

    lon, lat = f.centre("100101001")
    call = submit(ReportInput(channel="hotline", description="王建国家里 幸福路12号3单元502 水管爆了", category="0101",
                              address="区1 街道1001 幸福路12号3单元502", lon=lon, lat=lat,
                              contact={"phone": "13912345678"})).report
    r = client.get(BASE + f"requests/{call.number}.{fmt}", {"locale": "en"})
    assert r.status_code == 200
    shown = r.content.decode()
    for secret in ("王建国", "幸福路12号", "502", "13912345678", f"{lat:.5f}"[:8]):
        assert secret not in shown
    assert call.number in shown and "0101" in shown
    if fmt == "json":
        (row,) = body(r)
        assert row["description"] is None and (row["lat"], row["long"]) == (None, None)
        assert row["address_id"] == "100101001" and row["address"] == "Street 1001, District 1"
        assert row["status"] == "open"
    listed = body(client.get(BASE + "requests.json"))
    assert call.number in {row["service_request_id"] for row in listed}, "still counted in the list"


def test_one_request_xml(client, filed):
    a = filed[0]
    r = client.get(BASE + f"requests/{a.number}.xml", {"locale": "en"})
    assert r["Content-Type"] == "text/xml; charset=utf-8"
    root = body(r)
    assert root.tag == "service_requests"
    (request,) = root.findall("request")
    assert [child.tag for child in request] == FIELDS
    assert request.findtext("status") == "open"
    assert request.findtext("status_notes") == "Dispatched"
    assert request.findtext("service_name") == "Water leak"
    assert request.find("zipcode").text is None
    assert float(request.findtext("lat")) == a.lat
    for secret in PERSONAL:
        assert secret not in r.content.decode()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_request_is_404(client, filed, fmt):
    r = client.get(BASE + f"requests/R000.{fmt}")
    assert r.status_code == 404


def test_closed_rejected_and_merged_statuses(client, api_key, filed, staff):
    a, b, c = filed
    root = staff["root"]
    f.make_category(code="0301", name="占道经营")  # no routing rule: its cases wait as new
    close(a.case, root)
    d = post(client, api_key, at="100104001", service_code="0301", description="路边摆摊占道",
             **{"attribute[severity]": None})
    case_services.reject_case(Case.objects.get(pk=d.case_id), by=root, reason="private property")
    e = post(client, api_key, at="100104002", service_code="0301", description="商铺把货物堆到人行道上",
             **{"attribute[severity]": None})
    assert Case.objects.get(pk=e.case_id).status == CaseStatus.NEW
    case_services.merge_case(Case.objects.get(pk=e.case_id), into=Case.objects.get(pk=c.case_id), by=root)

    rows = {row["service_request_id"]: row for row in body(client.get(BASE + "requests.json", {"locale": "en"}))}
    assert rows[a.number]["status"] == "closed"
    assert rows[a.number]["status_notes"] == "Closed"
    assert rows[a.number]["expected_datetime"] is None
    assert rows[d.number]["status"] == "closed" and rows[d.number]["status_notes"] == "Rejected"
    assert rows[e.number]["status"] == rows[c.number]["status"] == "open"
    assert "earlier report" in rows[e.number]["status_notes"]

    def search(status):
        return {row["service_request_id"] for row in body(client.get(BASE + "requests.json", {"status": status}))}

    assert search("closed") == {a.number, d.number}
    assert search("open") == {b.number, c.number, e.number}
    assert search("open,closed") == {a.number, b.number, c.number, d.number, e.number}
    close(Case.objects.get(pk=c.case_id), root)
    assert search("closed") == {a.number, c.number, d.number, e.number}, "a merged request follows its case"


def test_filters_by_id_service_code_and_dates(client, filed):
    a, b, c = filed
    ids = {row["service_request_id"] for row in
           body(client.get(BASE + "requests.json", {"service_request_id": f"{a.number},{c.number}"}))}
    assert ids == {a.number, c.number}
    leaks = [row["service_request_id"] for row in body(client.get(BASE + "requests.json", {"service_code": "0101"}))]
    assert leaks == [b.number, a.number], "newest first"
    both = body(client.get(BASE + "requests.json", {"service_code": "0101,0102"}))
    assert len(both) == 3
    later = (now() + timedelta(days=1)).isoformat()
    assert body(client.get(BASE + "requests.json", {"start_date": later})) == []
    assert len(body(client.get(BASE + "requests.json", {"start_date": (now() - timedelta(hours=1)).isoformat()}))) == 3
    assert len(body(client.get(BASE + "requests.json", {"end_date": "2000-01-01T00:00:00Z"}))) == 0


def test_default_window_is_the_last_90_days(client, api_key):
    with simulated(now() - timedelta(days=100)):
        old = post(client, api_key, at="100101002")
    new = post(client, api_key, at="100104001", description="水管漏水 已经流了一上午")
    ids = [row["service_request_id"] for row in body(client.get(BASE + "requests.json"))]
    assert ids == [new.number]
    start = (now() - timedelta(days=101)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = [row["service_request_id"] for row in body(client.get(BASE + "requests.json", {"start_date": start}))]
    assert old.number in ids
    assert [row["service_request_id"] for row in
            body(client.get(BASE + "requests.json", {"service_request_id": old.number}))] == [old.number], \
        "service_request_id overrides the date window"


def test_paging(client, filed):
    pages = [body(client.get(BASE + "requests.json", {"page_size": 2, "page": p})) for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 1, 0]
    everything = [row["service_request_id"] for row in body(client.get(BASE + "requests.json"))]
    assert [row["service_request_id"] for p in pages for row in p] == everything


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "pending"}, "status"),
    ({"start_date": "last week"}, "start_date"),
    ({"end_date": "2024-13-01"}, "end_date"),
    ({"start_date": "2024-05-02T00:00:00Z", "end_date": "2024-05-01T00:00:00Z"}, "end_date"),
    ({"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z"}, "end_date"),
    ({"page": "0"}, "page"),
    ({"page": "99999999999999999999"}, "page"),  # would overflow the database's row offset
    ({"end_date": "0001-01-01"}, "end_date"),  # a window before year 1 is outside datetime's range
    ({"start_date": "9999-12-31T00:00:00Z"}, "start_date"),
    ({"page_size": "5000"}, "page_size"),
    ({"page_size": "ten"}, "page_size"),
    ({"jurisdiction_id": "elsewhere.gov"}, "jurisdiction_id"),
])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_search_parameters(client, filed, params, field, fmt, settings):
    settings.OPEN311_JURISDICTION = "testcity.gov.cn"  # a city that names its jurisdiction refuses others
    r = client.get(BASE + f"requests.{fmt}", params)
    assert r.status_code == (404 if field == "jurisdiction_id" else 400)
    if fmt == "json":
        assert field in body(r)[0]["description"]
    else:
        assert field in body(r).findtext("error/description")


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_token_is_the_request_id(client, filed, fmt):
    a = filed[0]
    r = client.get(BASE + f"tokens/{a.number}.{fmt}")
    assert r.status_code == 200
    if fmt == "json":
        assert body(r) == [{"service_request_id": a.number, "token": a.number}]
    else:
        assert body(r).findtext("request/service_request_id") == a.number
        assert body(r).findtext("request/token") == a.number
    assert client.get(BASE + f"tokens/nope.{fmt}").status_code == 404


def test_a_request_not_sent_on_yet_says_a_dispatcher_will(client, services_world):
    """Placed nowhere (an address the city cannot read), it waits for a dispatcher: the
    notice says so rather than nothing."""
    from chengyun.intake.services import ReportInput, submit

    report = submit(ReportInput(channel="open311", description="leak", category="0101", address="asdf")).report
    assert report.case.due_at is None
    (row,) = body(client.get(BASE + f"requests/{report.number}.json", {"locale": "en"}))
    assert row["service_notice"] == "A dispatcher will send it to the responsible department."
    assert row["address"] == "asdf"


def test_a_request_a_dispatcher_checks_as_a_possible_duplicate_says_so_in_one_sentence(client, services_world,
                                                                                         settings):
    from chengyun.intake.services import ReportInput, submit

    settings.DUPLICATE_ATTACH_SCORE, settings.DUPLICATE_ASK_SCORE = 0.999, 0.3
    lon, lat = f.centre("100101001")
    submit(ReportInput(channel="open311", description="水管爆裂，路面冒水", category="0101", lon=lon, lat=lat))
    again = submit(ReportInput(channel="open311", description="水管爆裂了", category="0101", lon=lon, lat=lat)).report
    assert again.duplicate == "ask" and again.case.due_at is None
    (row,) = body(client.get(BASE + f"requests/{again.number}.json", {"locale": "en"}))
    assert row["service_notice"] == ("A dispatcher is checking whether an earlier report is about the same problem, "
                                     "and will then send it on.")
    (row,) = body(client.get(BASE + f"requests/{again.number}.json", {"locale": "zh-Hans"}))
    assert row["service_notice"] == "派遣员正在核实此前是否已有同一问题的诉求，核实后派往负责部门。"
    # Kept apart: no longer "checking".
    from chengyun.intake.services import decide_suggestion

    decide_suggestion(again.suggestions.get(), merge=False, by=f.make_user(username="root", superuser=True))
    (row,) = body(client.get(BASE + f"requests/{again.number}.json", {"locale": "en"}))
    assert row["service_notice"].startswith("The city aims to resolve it by"), "kept apart, it was dispatched"
