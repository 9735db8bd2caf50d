"""The case flow through the JSON API and the staff console.

`POST /api/v1/cases/{number}/actions/{action}` for every action: the right
status, 409 for an action the status does not allow, 403 for a role that may
not act, 400 naming the field when a reason is missing; each success writes one
timeline entry and one audit record (checked in ``http.act``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from chengyun.areas.models import Area
from chengyun.cases.models import Case, CaseAssignment, ExtensionRequest, TimelineEntry
from chengyun.cases.workflow import CaseStatus
from chengyun.clock import simulated

from .. import factories as f
from .api_actions import act, action_url

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def new_case(world, people):
    return f.make_case(category=world.categories["0101"], by=people.operator)


def at_status(world, people, status, **dispatch):
    case = f.make_case(category=world.categories["0101"], by=people.operator)
    return f.drive_to(case, status, by=people.root, **dispatch)


def parts(case) -> dict[str, tuple[str, str, bool]]:
    return {p.department.code: (p.role, p.status, p.active)
            for p in CaseAssignment.objects.filter(case=case).select_related("department")}


# --------------------------------------------------------------------------- acceptance


def test_accept(client, people, new_case):
    body = act(client, people.operator, new_case, "accept", priority="high", reason="confirmed by phone")
    assert body["status"] == "accepted" and body["priority"] == "high"
    last = body["timeline"][-1]
    assert (last["action"], last["from_status"], last["to_status"], last["by"], last["note"]) == (
        "accept", "new", "accepted", "operator", "confirmed by phone")
    assert Case.objects.get(pk=new_case.pk).accepted_at is not None


def test_accept_twice_is_409(client, people, new_case):
    act(client, people.operator, new_case, "accept")
    body = act(client, people.dispatcher, new_case, "accept", expect=409)
    assert body["code"] == "invalid_transition"


def test_reject_needs_a_reason(client, people, new_case):
    body = act(client, people.operator, new_case, "reject", expect=400)
    assert body["field"] == "reason" and body["code"] == "invalid"
    body = act(client, people.operator, new_case, "reject", reason="prank call")
    assert body["status"] == "rejected" and body["closed_at"] is not None
    assert body["timeline"][-1]["note"] == "prank call"


def test_merge_into_another_open_case(client, world, people, new_case):
    other = f.make_case(title="Same leak", category=world.categories["0101"], by=people.operator)
    body = act(client, people.operator, new_case, "merge", expect=400)
    assert body["field"] == "into"

    body = act(client, people.operator, new_case, "merge", into=other.number, reason="duplicate")

    assert body["status"] == "merged" and body["merged_into"] == other.number
    assert TimelineEntry.objects.filter(case=other, action="merged_in", data__case=new_case.number).count() == 1
    assert act(client, people.operator, other, "merge", into=new_case.number, expect=400)["field"] == "into"


# --------------------------------------------------------------------------- dispatch


def test_dispatch_by_routing(client, world, people):
    case = at_status(world, people, "accepted")
    body = act(client, people.dispatcher, case, "dispatch")
    assert body["status"] == "dispatched"
    assert parts(case) == {
        "WATER-100101": ("lead", "dispatched", True),
        "ROADS-100101": ("assisting", "dispatched", True),
    }
    assert body["due_at"] is not None and body["response_due_at"] is not None
    why = body["route_explanation"]
    assert why["outcome"] == "routed" and why["overridden"] is False
    assert (why["rule"], why["inherited"], why["located_in"]) == (world.rules[0].pk, True, "100101001")


def test_dispatch_with_overridden_lead_and_assisting(client, world, people):
    case = at_status(world, people, "accepted")
    body = act(client, people.dispatcher, case, "dispatch", lead="ROADS-100101",
               assisting=["WATER-100102", "ROADS-100101"], reason="roads own this pipe")
    assert parts(case) == {
        "ROADS-100101": ("lead", "dispatched", True),
        "WATER-100102": ("assisting", "dispatched", True),
    }
    why = body["route_explanation"]
    assert why["overridden"] is True and why["chosen_lead"] == "ROADS-100101"
    assert why["override_note"] == "roads own this pipe" and why["lead"] == "WATER-100101"


def test_dispatch_unknown_department_names_the_field(client, world, people):
    case = at_status(world, people, "accepted")
    assert act(client, people.dispatcher, case, "dispatch", lead="NOPE", expect=400)["field"] == "lead"


def test_dispatch_from_new_is_409_and_by_operator_is_403(client, people, new_case):
    act(client, people.dispatcher, new_case, "dispatch", expect=409)
    act(client, people.operator, new_case, "accept")
    assert act(client, people.operator, new_case, "dispatch", expect=403)["code"] == "forbidden"


# --------------------------------------------------------------------------- return (退单)


def test_lead_return_sends_the_case_back_for_redispatch(client, world, people):
    case = at_status(world, people, "dispatched")
    assert act(client, people.water, case, "return", expect=400)["field"] == "reason"

    body = act(client, people.water, case, "return", reason="not a water matter")

    assert body["status"] == "accepted" and body["due_at"] is None
    assert parts(case) == {
        "WATER-100101": ("lead", "returned", False),
        "ROADS-100101": ("assisting", "withdrawn", False),
    }
    body = act(client, people.dispatcher, case, "dispatch", lead="ROADS-100101")
    assert body["status"] == "dispatched" and body["due_at"] is not None


def test_a_dispatcher_recalls_a_dispatched_case_reclassifies_and_dispatches_it_again(client, world, people):
    """改派: the override of a route after dispatch, the platform's or a person's."""
    f.make_category(code="0102", parent=world.categories["0101"].parent, deadline_hours=8)
    case = at_status(world, people, "in_progress")
    assert act(client, people.dispatcher, case, "reclassify", category="0102", expect=409)["detail"].endswith(
        "recall it first.")
    assert act(client, people.dispatcher, case, "recall", expect=400)["field"] == "reason"
    act(client, people.water, case, "recall", reason="mine", expect=403)  # a department returns instead

    body = act(client, people.dispatcher, case, "recall", reason="a road matter, not water")

    assert body["status"] == "accepted" and body["due_at"] is None
    assert {code: (status, active) for code, (_role, status, active) in parts(case).items()} == {
        "WATER-100101": ("withdrawn", False), "ROADS-100101": ("withdrawn", False)}
    entry = TimelineEntry.objects.filter(case=case, action="recall").get()
    assert entry.note == "a road matter, not water" and entry.data["departments"] == ["ROADS-100101", "WATER-100101"]
    assert act(client, people.dispatcher, case, "reclassify", category="0102")["category"] == "0102"
    client.force_login(people.dispatcher)
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Reclassified: 0101 Category 0101 → 0102 Category 0102" in page
    assert "Suggested route" in page and "Last dispatch" in page, "the route for the new category, the old one apart"
    body = act(client, people.dispatcher, case, "dispatch", lead="ROADS-100101")
    assert body["status"] == "dispatched" and body["due_at"] is not None


def test_assisting_return_only_ends_its_part(client, world, people):
    case = at_status(world, people, "dispatched")
    body = act(client, people.roads, case, "return", reason="no road works needed")
    assert body["status"] == "dispatched"
    assert body["timeline"][-1]["action"] == "return_part"
    assert parts(case) == {
        "WATER-100101": ("lead", "dispatched", True),
        "ROADS-100101": ("assisting", "returned", False),
    }


def test_return_by_a_department_without_a_part_is_refused(client, world, people):
    case = at_status(world, people, "dispatched", lead=world.dept("water", "100101"), assisting=[])
    # The roads handler cannot even see a case its department has no part in.
    client.force_login(people.roads)
    assert client.post(action_url(case.number, "return"), data={"reason": "x"},
                       content_type="application/json").status_code == 404
    act(client, people.supervisor, case, "return", reason="x", expect=403)


# --------------------------------------------------------------------------- extensions (延期)


def dispatched_on_a_tuesday(world, people):
    with simulated(datetime(2025, 3, 11, 9, 0, tzinfo=SH)):
        case = at_status(world, people, "dispatched")
    assert case.due_at == datetime(2025, 3, 11, 18, 0, tzinfo=SH)  # 8 working hours: 9-12, 13-18
    return case


def test_extension_approved_moves_the_deadline(client, world, people):
    case = dispatched_on_a_tuesday(world, people)
    with simulated(datetime(2025, 3, 11, 15, 0, tzinfo=SH)):
        assert act(client, people.water, case, "request_extension", hours=4, expect=400)["field"] == "reason"
        act(client, people.supervisor, case, "request_extension", hours=4, reason="x", expect=403)
        body = act(client, people.water, case, "request_extension", hours=4, reason="parts on order")
        assert body["status"] == "dispatched"
        assert act(client, people.water, case, "request_extension", hours=2, reason="again", expect=409)
        act(client, people.water, case, "approve_extension", expect=403)
        body = act(client, people.supervisor, case, "approve_extension", reason="ok")

    assert body["status"] == "dispatched"
    # 4 working hours after Tuesday 18:00 is Wednesday 9-12 + 13-14.
    assert Case.objects.get(pk=case.pk).due_at == datetime(2025, 3, 12, 14, 0, tzinfo=SH)
    req = ExtensionRequest.objects.get(case=case)
    assert (req.status, req.department.code, req.decided_by) == ("approved", "WATER-100101", people.supervisor)


def test_a_pending_extension_ends_with_the_departments_part(client, world, people):
    """Recalled (or returned by the lead), a case's pending extension is withdrawn: it
    would block the next department's request and lengthen the next deadline."""
    case = at_status(world, people, "dispatched")
    act(client, people.water, case, "request_extension", hours=40, reason="parts on order")
    act(client, people.dispatcher, case, "recall", reason="a road matter")
    req = ExtensionRequest.objects.get(case=case)
    assert (req.status, req.decided_by) == ("withdrawn", people.dispatcher)
    act(client, people.dispatcher, case, "dispatch", lead="ROADS-100101")
    due = Case.objects.get(pk=case.pk).due_at
    act(client, people.supervisor, case, "approve_extension", reason="ok", expect=409)  # nothing pending
    assert Case.objects.get(pk=case.pk).due_at == due, "the old request's hours were not added"
    act(client, people.roads, case, "request_extension", hours=2, reason="traffic control needed")  # not blocked


def test_a_pending_extension_is_withdrawn_when_the_department_reports_done(client, world, people):
    """Done, the department no longer needs the time: the request must not wait for a
    decision nobody can make, nor come back as approvable if the check fails."""
    case = at_status(world, people, "in_progress")
    act(client, people.water, case, "request_extension", hours=24, reason="parts on order")
    act(client, people.water, case, "report_done", reason="fixed")
    assert ExtensionRequest.objects.get(case=case).status == "withdrawn"
    act(client, people.supervisor, case, "approve_extension", reason="ok", expect=409)  # nothing pending


def test_an_assisting_departments_extension_ends_with_its_part_the_leads_stays(client, world, people):
    case = at_status(world, people, "dispatched")
    act(client, people.roads, case, "request_extension", hours=8, reason="traffic control")
    act(client, people.roads, case, "return", reason="no road works needed")
    assert ExtensionRequest.objects.get(case=case).status == "withdrawn"
    act(client, people.water, case, "request_extension", hours=4, reason="parts on order")  # not blocked
    assert ExtensionRequest.objects.filter(case=case, status="pending").count() == 1


def test_an_extension_asked_before_a_case_was_closed_is_withdrawn_when_it_is_reopened(client, world, people):
    case = at_status(world, people, "in_progress")
    act(client, people.water, case, "request_extension", hours=40, reason="parts on order")
    from chengyun.cases import services as case_services

    case_services.report_done(Case.objects.get(pk=case.pk), by=people.root)
    case_services.verify_case(Case.objects.get(pk=case.pk), by=people.root, ok=True)
    case = Case.objects.get(pk=case.pk)
    assert case.status == "closed"
    act(client, people.supervisor, case, "reopen", reason="the leak is back")
    assert ExtensionRequest.objects.get(case=case).status == "withdrawn"
    act(client, people.dispatcher, case, "dispatch", lead="ROADS-100101")
    act(client, people.supervisor, case, "approve_extension", reason="ok", expect=409)  # the old one is gone


def test_note_is_another_name_for_the_reason(client, world, people):
    case = at_status(world, people, "dispatched")
    act(client, people.dispatcher, case, "recall", note="sent by its note")
    assert TimelineEntry.objects.get(case=case, action="recall").note == "sent by its note"


def test_a_department_a_case_was_recalled_from_sees_it_but_no_longer_works_on_it(client, world, people):
    case = at_status(world, people, "dispatched")
    act(client, people.dispatcher, case, "recall", reason="wrong department")
    act(client, people.dispatcher, case, "dispatch", lead="ROADS-100101", assisting=[])
    client.force_login(people.water)
    assert case.number not in client.get("/console/").content.decode(), "not in its open work"
    assert case.number in client.get("/console/", {"status": ""}).content.decode(), "still in its history"
    page = client.get(f"/console/cases/{case.number}/").content.decode()
    assert page and "/act/" not in page, "no actions offered"
    act(client, people.water, case, "request_extension", hours=2, reason="x", expect=403)
    act(client, people.water, case, "return", reason="x", expect=403)


def test_extension_denied_keeps_the_deadline(client, world, people):
    case = dispatched_on_a_tuesday(world, people)
    act(client, people.supervisor, case, "deny_extension", reason="nothing pending", expect=409)
    act(client, people.water, case, "request_extension", hours=4, reason="parts on order")
    assert act(client, people.supervisor, case, "deny_extension", expect=400)["field"] == "reason"
    act(client, people.supervisor, case, "deny_extension", reason="do it today")
    assert Case.objects.get(pk=case.pk).due_at == datetime(2025, 3, 11, 18, 0, tzinfo=SH)
    assert ExtensionRequest.objects.get(case=case).status == "denied"
    act(client, people.water, case, "request_extension", hours=2, reason="asking again")  # a new request is allowed


# --------------------------------------------------------------------------- handling


def test_start_and_report_done_by_lead_and_assisting(client, world, people):
    case = at_status(world, people, "dispatched")
    act(client, people.water, case, "report_done", expect=409)  # start first

    act(client, people.roads, case, "start")
    assert Case.objects.get(pk=case.pk).status == "dispatched"  # the assisting part does not move the case
    body = act(client, people.water, case, "start")
    assert body["status"] == "in_progress"

    body = act(client, people.roads, case, "report_done", reason="road surface restored")
    assert body["status"] == "in_progress"
    assert body["timeline"][-1]["action"] == "report_done_part"
    assert parts(case)["ROADS-100101"] == ("assisting", "done", True)

    body = act(client, people.water, case, "report_done", reason="main repaired")
    assert body["status"] == "awaiting_verification"
    assert parts(case)["WATER-100101"] == ("lead", "done", True)


def test_a_department_is_offered_start_and_report_done_only_for_its_own_part(client, world, people):
    def offered(user):
        client.force_login(user)
        return set(client.get(f"/api/v1/cases/{case.number}").json()["allowed_actions"]) & {"start", "report_done"}

    case = at_status(world, people, "dispatched")
    assert offered(people.water) == offered(people.roads) == {"start"}
    act(client, people.water, case, "start")
    assert offered(people.water) == {"report_done"}, "the lead has started: not offered start again"
    assert offered(people.roads) == {"start", "report_done"}, "the assisting part has not started yet"
    act(client, people.roads, case, "start")
    act(client, people.roads, case, "report_done", reason="road surface restored")
    assert offered(people.roads) == set(), "its part is done"
    assert offered(people.water) == {"report_done"}


def test_start_twice_by_the_same_department_is_409(client, world, people):
    case = at_status(world, people, "in_progress")
    act(client, people.water, case, "start", expect=409)


def test_verify_fail_then_ok(client, world, people):
    case = at_status(world, people, "awaiting_verification")
    act(client, people.water, case, "verify_ok", expect=403)
    assert act(client, people.inspector, case, "verify_fail", expect=400)["field"] == "reason"

    body = act(client, people.inspector, case, "verify_fail", reason="still leaking")
    assert body["status"] == "in_progress"
    assert parts(case)["WATER-100101"][1] == "in_progress"

    act(client, people.water, case, "report_done")
    body = act(client, people.inspector, case, "verify_ok")
    assert body["status"] == "closed" and body["closed_at"] is not None
    assert Case.objects.get(pk=case.pk).resolved is True


def test_close_without_site_check_needs_a_reason(client, world, people):
    case = at_status(world, people, "awaiting_verification")
    assert act(client, people.dispatcher, case, "close", expect=400)["field"] == "reason"
    assert act(client, people.dispatcher, case, "close", reason="photo evidence")["status"] == "closed"
    act(client, people.dispatcher, case, "close", reason="again", expect=409)


# --------------------------------------------------------------------------- callback, reopen, escalate


def test_callback_satisfied_rates_the_case(client, world, people):
    case = at_status(world, people, "closed")
    assert act(client, people.operator, case, "callback", expect=400)["field"] == "satisfaction"
    act(client, people.dispatcher, case, "callback", satisfaction="satisfied", expect=403)
    body = act(client, people.operator, case, "callback", satisfaction="satisfied", resolved=True)
    assert body["status"] == "rated" and body["satisfaction"] == "satisfied"
    act(client, people.operator, case, "callback", satisfaction="satisfied", expect=409)


def test_a_reclassification_says_when_the_priority_changes_with_it(client, world, people):
    urgent = f.make_category(code="0109", parent=world.categories["01"], priority="urgent", name="爆管")
    case = at_status(world, people, "accepted")
    assert case.priority == "normal"
    act(client, people.dispatcher, case, "reclassify", category="0109")
    client.force_login(people.dispatcher)
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"→ 0109 {urgent}; priority Normal → Urgent (the new category&#x27;s)" in page


def test_the_timeline_names_departments_not_their_codes(client, world, people):
    case = at_status(world, people, "dispatched")
    client.force_login(people.dispatcher)
    lead = case.assignments.get(role="lead").department
    type(lead).objects.filter(pk=lead.pk).update(name="一区水务所", name_en="District 1 water office")
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "(District 1 water office)" in page and f"({lead.code})" not in page


def test_a_case_not_started_by_its_response_deadline_says_so(client, world, people):
    from datetime import timedelta

    case = at_status(world, people, "dispatched")
    client.force_login(people.dispatcher)
    with simulated(case.response_due_at - timedelta(minutes=1)):
        assert "response overdue" not in client.get(f"/console/cases/{case.number}/",
                                                    HTTP_ACCEPT_LANGUAGE="en").content.decode()
    with simulated(case.response_due_at + timedelta(minutes=1)):
        page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "not started: response overdue" in page
        assert "not started: response overdue" in client.get("/console/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        act(client, people.water, case, "start")
        page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "response overdue" not in page and "responded" in page


def test_the_callback_form_chooses_no_answer_for_the_operator(client, world, people):
    """Saved without asking, the form would have recorded a satisfied citizen."""
    import re

    case = at_status(world, people, "closed")
    client.force_login(people.operator)
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    select = re.search(r'<select name="satisfaction" required>(.*?)</select>', page, re.S)
    assert select, "the callback form is on the page"
    options = re.findall(r'<option value="([^"]*)"', select[1])
    assert options[0] == "" and "satisfied" in options and "selected" not in select[1]


def test_callback_unsatisfied_reopens_and_it_can_be_dispatched_again(client, world, people):
    case = at_status(world, people, "closed")
    body = act(client, people.operator, case, "callback", satisfaction="unsatisfied", resolved=False)
    assert body["status"] == "reopened" and body["closed_at"] is None
    assert all(not p.active for p in CaseAssignment.objects.filter(case=case))
    body = act(client, people.dispatcher, case, "dispatch")
    assert body["status"] == "dispatched"
    assert sum(p["active"] for p in body["parts"]) == 2


def test_reopen_a_rated_case(client, world, people):
    case = at_status(world, people, "rated")
    assert act(client, people.supervisor, case, "reopen", expect=400)["field"] == "reason"
    act(client, people.water, case, "reopen", reason="x", expect=403)  # the handler sees its old case but may not reopen
    body = act(client, people.supervisor, case, "reopen", reason="the leak is back")
    assert body["status"] == "reopened" and body["satisfaction"] == ""
    act(client, people.supervisor, case, "reopen", reason="again", expect=409)


def test_escalate_climbs_the_area_tree_and_stops_at_the_top(client, world, people):
    case = at_status(world, people, "dispatched")
    act(client, people.dispatcher, case, "escalate", expect=403)
    for level, code in [(1, "100101001"), (2, "100101"), (3, f.CITY)]:
        body = act(client, people.supervisor, case, "escalate", reason="slow")
        assert body["escalation_level"] == level and body["status"] == "dispatched"
        assert Case.objects.get(pk=case.pk).escalated_to == Area.objects.get(code=code)
    act(client, people.supervisor, case, "escalate", reason="slow", expect=409)


def test_escalate_a_closed_case_is_409(client, world, people):
    case = at_status(world, people, "closed")
    act(client, people.supervisor, case, "escalate", expect=409)


# --------------------------------------------------------------------------- status codes at the edge


@pytest.mark.parametrize(
    ("who", "status", "action", "body"),
    [
        ("inspector", "new", "accept", {}),
        ("operator", "accepted", "dispatch", {}),
        ("water", "dispatched", "approve_extension", {}),
        ("water", "awaiting_verification", "verify_ok", {}),
        ("dispatcher", "closed", "callback", {"satisfaction": "satisfied"}),
        ("operator", "dispatched", "escalate", {}),
        ("supervisor", "dispatched", "start", {}),
        ("inspector", "closed", "reopen", {"reason": "x"}),
    ],
)
def test_a_role_that_may_not_act_gets_403(client, world, people, who, status, action, body):
    case = at_status(world, people, status)
    response = act(client, getattr(people, who), case, action, expect=403, **body)
    assert response["code"] == "forbidden"
    assert Case.objects.get(pk=case.pk).status == status


def test_unknown_case_is_404_and_unknown_action_is_400(client, world, people, new_case):
    client.force_login(people.operator)
    assert client.post(action_url("20990101" + "9" * 7, "accept"), data={}, content_type="application/json").status_code == 404
    answer = client.post(action_url(new_case.number, "explode"), data={}, content_type="application/json",
                         HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert "可选值" in detail and "recall" in detail and "Input should" not in detail and " or " not in detail, detail


def test_get_case_shows_timeline_and_allowed_actions(client, world, people):
    case = at_status(world, people, "accepted")
    client.force_login(people.dispatcher)
    body = client.get(f"/api/v1/cases/{case.number}").json()
    assert [t["action"] for t in body["timeline"]] == ["create", "accept"]
    assert sorted(body["allowed_actions"]) == ["dispatch", "merge", "reject"]
    assert [a["code"] for a in body["area"]] == [f.CITY, "100101", "100101001"]


# --------------------------------------------------------------------------- console pages


def timeline_items(page: str) -> list[str]:
    """The <li> items of the case page's timeline list."""
    assert '<ol class="timeline">' in page
    section = page.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    return [item.split("</li>", 1)[0] for item in section.split("<li>")[1:]]


def test_console_login(client, world):
    f.make_user(username="ops", password="s3cret-pass", role="dispatcher", area=world.areas[f.CITY])
    assert client.get("/console/").status_code == 302  # not logged in: to the login page
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content

    wrong = client.post("/login/", {"username": "ops", "password": "nope"})
    assert wrong.status_code == 200 and b'role="alert"' in wrong.content

    right = client.post("/login/", {"username": "ops", "password": "s3cret-pass"})
    assert right.status_code == 302 and right["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_console_queue_lists_open_cases(client, world, people):
    open_case = at_status(world, people, "dispatched")
    closed = at_status(world, people, "closed")
    client.force_login(people.dispatcher)
    page = client.get("/console/").content.decode()
    assert open_case.number in page and closed.number not in page
    assert closed.number in client.get("/console/", {"status": "closed"}).content.decode()


def test_console_case_page_shows_timeline_and_only_allowed_buttons(client, world, people, new_case):
    client.force_login(people.operator)
    page = client.get(f"/console/cases/{new_case.number}/").content.decode()
    assert new_case.number in page and new_case.title in page
    items = timeline_items(page)
    assert len(items) == 1 and "<strong>operator</strong>" in items[0]
    for allowed in ("accept", "reject", "merge"):
        assert f"/console/cases/{new_case.number}/act/{allowed}/" in page
    for not_allowed in ("dispatch", "escalate", "start", "close"):
        assert f"/console/cases/{new_case.number}/act/{not_allowed}/" not in page

    client.force_login(people.supervisor)  # a supervisor may escalate but not accept
    page = client.get(f"/console/cases/{new_case.number}/").content.decode()
    assert "/act/escalate/" in page and "/act/accept/" not in page


def test_console_action_form_runs_the_action(client, world, people):
    case = at_status(world, people, "accepted")
    client.force_login(people.dispatcher)
    response = client.post(f"/console/cases/{case.number}/act/dispatch/",
                           {"lead": "", "assisting": [], "reason": "routine"})
    assert response.status_code == 302 and response["Location"] == f"/console/cases/{case.number}/"
    case.refresh_from_db()
    assert case.status == "dispatched" and case.lead.department.code == "WATER-100101"
    page = client.get(response["Location"]).content.decode()
    items = timeline_items(page)
    assert len(items) == 3  # create, accept, dispatch
    assert "<strong>dispatcher</strong>" in items[-1] and "routine" in items[-1]
    # Dispatched, the route can still be overridden: recalled, then dispatched again.
    assert f"/console/cases/{case.number}/act/recall/" in page
    response = client.post(f"/console/cases/{case.number}/act/recall/", {"reason": "wrong district"})
    case.refresh_from_db()
    assert response.status_code == 302 and case.status == "accepted"
    assert f"/console/cases/{case.number}/act/dispatch/" in client.get(response["Location"]).content.decode()


def test_console_action_form_reports_errors_and_changes_nothing(client, world, people, new_case):
    client.force_login(people.operator)
    response = client.post(f"/console/cases/{new_case.number}/act/reject/", {"reason": ""}, follow=True)
    assert response.status_code == 200
    assert any(str(m).startswith("Reason: ") for m in response.context["messages"]), "the field by its label"
    response = client.post(f"/console/cases/{new_case.number}/act/dispatch/", {}, follow=True)
    assert any(m.level_tag == "error" for m in response.context["messages"])
    assert Case.objects.get(pk=new_case.pk).status == CaseStatus.NEW
    assert TimelineEntry.objects.filter(case=new_case).count() == 1


def test_console_extension_hours_from_the_form(client, world, people):
    case = at_status(world, people, "dispatched")
    client.force_login(people.water)
    client.post(f"/console/cases/{case.number}/act/request_extension/", {"hours": "6", "reason": "rain"})
    req = ExtensionRequest.objects.get(case=case)
    assert req.hours == 6 and req.reason == "rain"
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Extension requested: 6 hours by" in page, "6, not 6.00"
