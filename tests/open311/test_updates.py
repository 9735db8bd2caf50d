"""The servicerequestupdates extension: status changes out, partners' updates in."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.cases import services as case_services
from chengyun.cases.models import Case, TimelineEntry
from chengyun.cases.workflow import CaseStatus as S
from chengyun.clock import now
from chengyun.intake.models import Report
from chengyun.open311.models import PartnerUpdate

from .conftest import BASE, body, leak_form


@pytest.fixture
def report(client, api_key):
    r = client.post(BASE + "requests.json", leak_form(api_key))
    assert r.status_code == 200, r.content
    return Report.objects.get(number=body(r)[0]["service_request_id"])


def test_status_changes_are_listed_oldest_first(client, report, staff):
    case_services.start_case(Case.objects.get(pk=report.case_id), by=staff["root"])
    r = client.get(BASE + "servicerequestupdates.json", {"locale": "en"})
    assert r.status_code == 200
    rows = body(r)
    assert all(list(row) == ["update_id", "service_request_id", "status", "updated_datetime", "description",
                             "media_url"] for row in rows)
    assert {row["service_request_id"] for row in rows} == {report.number}
    assert [row["description"] for row in rows] == ["Received", "Accepted", "Dispatched", "In progress"]
    assert [row["status"] for row in rows] == ["open", "open", "action_scheduled", "in_progress"], \
        "the extension's states, which FixMyStreet's client maps"
    assert len({row["update_id"] for row in rows}) == 4
    assert all(row["updated_datetime"].endswith("+08:00") for row in rows)

    case_services.report_done(Case.objects.get(pk=report.case_id), by=staff["root"])
    case_services.verify_case(Case.objects.get(pk=report.case_id), by=staff["root"], ok=True)
    last = body(client.get(BASE + "servicerequestupdates.json", {"locale": "en"}))[-1]
    assert (last["status"], last["description"]) == ("fixed", "Closed")


def test_a_request_not_taken_up_is_not_said_to_be_fixed(client, api_key, staff):
    """FixMyStreet reads a bare "closed" as fixed: a refused case says no_further_action."""
    from .. import factories as f

    f.make_category(code="0301", name="占道经营")  # no routing rule: its cases wait as new
    r = client.post(BASE + "requests.json", leak_form(api_key, service_code="0301", description="路边摆摊占道",
                                                      **{"attribute[severity]": None}))
    report = Report.objects.get(number=body(r)[0]["service_request_id"])
    case_services.reject_case(Case.objects.get(pk=report.case_id), by=staff["root"], reason="Not a public road")
    last = body(client.get(BASE + "servicerequestupdates.json", {"locale": "en"}))[-1]
    assert (last["status"], last["description"]) == ("no_further_action", "Rejected")
    request = body(client.get(BASE + f"requests/{report.number}.json"))[0]
    assert request["status"] == "closed", "GeoReport's own status stays open or closed"


def test_updates_xml_and_window(client, report):
    root = body(client.get(BASE + "servicerequestupdates.xml"))
    assert root.tag == "service_requests_updates", "the extension's root name (FixMyStreet's client reads it)"
    updates = root.findall("request_update")
    assert updates and updates[0].findtext("service_request_id") == report.number
    assert updates[0].findtext("status") == "open"
    later = (now() + timedelta(hours=1)).isoformat()
    assert body(client.get(BASE + "servicerequestupdates.json", {"start_date": later})) == []
    r = client.get(BASE + "servicerequestupdates.json", {"start_date": "yesterday"})
    assert r.status_code == 400 and "start_date" in body(r)[0]["description"]
    page = body(client.get(BASE + "servicerequestupdates.json", {"page_size": 1, "page": 2}))
    assert page == body(client.get(BASE + "servicerequestupdates.json"))[1:2]


def test_an_attached_report_sees_only_changes_after_it_arrived(client, api_key, report, staff):
    again = client.post(BASE + "requests.json", leak_form(api_key))
    second = Report.objects.get(number=body(again)[0]["service_request_id"])
    assert second.case_id == report.case_id, "same place, same problem: attached to the open case"
    rows = body(client.get(BASE + "servicerequestupdates.json"))
    assert {row["service_request_id"] for row in rows} == {report.number}
    case_services.start_case(Case.objects.get(pk=report.case_id), by=staff["root"])
    rows = body(client.get(BASE + "servicerequestupdates.json", {"locale": "en"}))
    assert [(row["service_request_id"], row["description"]) for row in rows if row["description"] == "In progress"] \
        == [(report.number, "In progress"), (second.number, "In progress")]


def _update(key, report, **extra):
    form = {"api_key": key.raw, "service_request_id": report.number, "update_id": "p-1", "status": "IN_PROGRESS",
            "updated_datetime": "2024-05-01T10:00:00Z", "description": "Crew on site", "email": "crew@partner.org",
            "first_name": "Bob", "media_url": "https://partner.example.org/p1.jpg"}
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_partner_posts_an_update_once(client, api_key, report, fmt):
    status_before = Case.objects.get(pk=report.case_id).status
    r = client.post(BASE + f"servicerequestupdates.{fmt}", _update(api_key, report))
    assert r.status_code == 200, r.content
    update = PartnerUpdate.objects.get()
    if fmt == "json":
        assert body(r) == [{"update_id": update.update_id}]
    else:
        assert body(r).tag == "service_request_updates"
        assert body(r).findtext("request_update/update_id") == update.update_id
    entry = update.entry
    assert entry.case_id == report.case_id and entry.action == "open311_update"
    assert entry.note == "Crew on site"
    assert entry.actor_name == "open311:Civic App"
    assert entry.data["update_id"] == "p-1" and entry.data["status"] == "in_progress"
    assert "crew@partner.org" not in str(entry.data) and "Bob" not in str(entry.data), "no personal data kept"
    assert AuditRecord.objects.filter(action="open311.update").count() == 1
    assert Case.objects.get(pk=report.case_id).status == status_before, "an update does not move the case"

    again = client.post(BASE + f"servicerequestupdates.{fmt}", _update(api_key, report, description="changed"))
    assert again.status_code == 200
    assert again.content == r.content
    assert PartnerUpdate.objects.count() == 1
    assert TimelineEntry.objects.filter(action="open311_update").count() == 1
    assert list(verify_chain()) == []


def test_an_update_takes_the_request_id_as_get_does(client, api_key, report):
    """Lower case, without the R: GET finds the request so, and so does an update."""
    typed = report.number.lower().lstrip("r")
    assert client.get(BASE + f"requests/{typed}.json").status_code == 200
    r = client.post(BASE + "servicerequestupdates.json", {**_update(api_key, report), "service_request_id": typed})
    assert r.status_code == 200, r.content
    assert PartnerUpdate.objects.get().entry.case_id == report.case_id
    r = client.post(BASE + "servicerequestupdates.json", {**_update(api_key, report, update_id="p-2"),
                                                          "service_request_id": "abc-123"}, HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 404 and "“abc-123” was not found" in body(r)[0]["description"], "named as sent"


def test_an_update_with_the_partners_id_as_update_id_ext_gets_our_update_id(client, api_key, report):
    """The extension's extended form (FixMyStreet's): the partner sends its
    own id as update_id_ext and no update_id; ours comes back."""
    form = _update(api_key, report, update_id=None, update_id_ext="fms-comment-77", service_request_id_ext="991")
    r = client.post(BASE + "servicerequestupdates.xml", form)
    assert r.status_code == 200, r.content
    update = PartnerUpdate.objects.get()
    assert update.partner_update_id == "fms-comment-77"
    assert body(r).findtext("request_update/update_id") == update.update_id != "fms-comment-77"
    assert client.post(BASE + "servicerequestupdates.xml", form).content == r.content, "once per partner id"
    assert PartnerUpdate.objects.count() == 1


BAD = [
    ("no key", {"api_key": None}, 403, "api_key"),
    ("bad key", {"api_key": "nope"}, 403, "api_key"),
    ("no request", {"service_request_id": None}, 400, "service_request_id"),
    ("unknown request", {"service_request_id": "R1"}, 404, "service_request_id"),
    ("no update_id", {"update_id": None}, 400, "update_id"),
    ("no status", {"status": None}, 400, "status"),
    ("bad status", {"status": "sleeping"}, 400, "status"),
    ("no time", {"updated_datetime": None}, 400, "updated_datetime"),
    ("bad time", {"updated_datetime": "now"}, 400, "updated_datetime"),
    ("year 1", {"updated_datetime": "0001-01-01T00:00:00+14:00"}, 400, "updated_datetime"),  # UTC would be year 0
    ("bad media_url", {"media_url": "ftp://x"}, 400, "media_url"),
    ("too long", {"description": "x" * 4001}, 400, "description"),
]


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(("why", "change", "status", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_updates_are_refused(client, api_key, report, why, change, status, field, fmt):
    entries = TimelineEntry.objects.count()
    r = client.post(BASE + f"servicerequestupdates.{fmt}", _update(api_key, report, **change))
    assert r.status_code == status, r.content
    if fmt == "json":
        (error,) = body(r)
        assert error["code"] == status and field in error["description"]
    else:
        assert body(r).findtext("error/code") == str(status) and field in body(r).findtext("error/description")
    assert TimelineEntry.objects.count() == entries
    assert not PartnerUpdate.objects.exists()


def test_a_closed_requests_updated_datetime_is_when_it_was_closed(client, api_key, report, staff):
    from chengyun.open311.formats import w3c

    case_services.start_case(Case.objects.get(pk=report.case_id), by=staff["root"])
    case_services.report_done(Case.objects.get(pk=report.case_id), by=staff["root"])
    case_services.verify_case(Case.objects.get(pk=report.case_id), by=staff["root"], ok=True)
    closed_at = now() - timedelta(hours=1)
    Case.objects.filter(pk=report.case_id).update(closed_at=closed_at)
    assert client.post(BASE + "servicerequestupdates.json", _update(api_key, report)).status_code == 200
    request = body(client.get(BASE + f"requests/{report.number}.json"))[0]
    assert request["status"] == "closed"
    assert request["updated_datetime"] == w3c(closed_at), "not the partner's later comment"


def test_a_busy_window_comes_whole_not_cut_at_a_thousand(client, report):
    """FixMyStreet reads one answer for its two-hour window and asks for no second page."""
    case = Case.objects.get(pk=report.case_id)
    start = now() - timedelta(hours=1)
    Report.objects.filter(pk=report.pk).update(received_at=start)
    flips = [(S.IN_PROGRESS, S.AWAITING_VERIFICATION), (S.AWAITING_VERIFICATION, S.IN_PROGRESS)]
    TimelineEntry.objects.bulk_create(
        TimelineEntry(case=case, at=start + timedelta(milliseconds=i + 1), actor_name="test",
                      action="test", from_status=flips[i % 2][0], to_status=flips[i % 2][1])
        for i in range(1_200))
    rows = body(client.get(BASE + "servicerequestupdates.json", {"start_date": (start - timedelta(hours=1)).isoformat(),
                                                                 "end_date": now().isoformat()}))
    assert len(rows) == TimelineEntry.objects.exclude(to_status="").count() > 1_200
    assert len(body(client.get(BASE + "servicerequestupdates.json"))) == 1000, "without a window: a thousand"
    long_window = body(client.get(BASE + "servicerequestupdates.json",
                                  {"start_date": (now() - timedelta(days=30)).isoformat()}))
    assert len(long_window) == 1000, "a window longer than a day: a thousand at a time"
    r = client.get(BASE + "servicerequestupdates.json", {"page_size": 20_000})
    assert r.status_code == 400 and "page_size" in body(r)[0]["description"]


def test_fixmystreets_reopen_is_taken(client, api_key, report):
    r = client.post(BASE + "servicerequestupdates.xml", _update(api_key, report, status="REOPEN"))
    assert r.status_code == 200, r.content
    assert PartnerUpdate.objects.get().entry.data["status"] == "reopen"


def test_a_merged_request_follows_the_case_it_was_merged_into(client, api_key, report, staff):
    from .. import factories as f

    f.make_category(code="0301", name="占道经营")  # no routing rule: its cases wait as new
    r = client.post(BASE + "requests.json", leak_form(api_key, at="100104001", service_code="0301",
                                                      description="路边摆摊占道", **{"attribute[severity]": None}))
    other = Report.objects.get(number=body(r)[0]["service_request_id"])
    case_services.merge_case(Case.objects.get(pk=other.case_id), into=Case.objects.get(pk=report.case_id),
                             by=staff["root"])
    case_services.start_case(Case.objects.get(pk=report.case_id), by=staff["root"])
    rows = [row for row in body(client.get(BASE + "servicerequestupdates.json", {"locale": "en"}))
            if row["service_request_id"] == other.number]
    assert [row["description"] for row in rows][0] == "Received"
    assert "earlier report" in rows[1]["description"] and rows[1]["status"] == "open"
    assert rows[-1]["description"] == "In progress"
