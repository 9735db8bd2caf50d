"""The deadline sweep: near-due / overdue flags and escalation (督办) up the area tree."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from chengyun.areas.models import Area
from chengyun.audit.models import AuditRecord
from chengyun.cases.models import Case, TimelineEntry
from chengyun.cases.services import ops_centres, sweep_deadlines
from chengyun.clock import simulated

from .. import factories as f

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
DISPATCHED = datetime(2025, 3, 11, 8, 0, tzinfo=SH)  # due 10 calendar hours later, at 18:00


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.fixture
def ten_hour_case(world, admin_user):
    category = f.make_category(code="0301", deadline_hours=10, deadline_kind="calendar")
    f.make_routing_rule(category=category, lead_department=world.dept("water", "100102"))
    with simulated(DISPATCHED):
        case = f.make_case(category=category, at="100102002", by=admin_user)
        case = f.drive_to(case, "dispatched", by=admin_user)
    assert case.due_at == local(2025, 3, 11, 18, 0)
    return case


def sweep_at(when: datetime) -> dict:
    with simulated(when):
        return sweep_deadlines()


def escalations(case) -> list[tuple[int, str, str]]:
    return [
        (t.data["level"], t.data["to"], t.actor_name)
        for t in TimelineEntry.objects.filter(case=case, action="escalate").order_by("at", "pk")
    ]


def test_ops_centres_are_street_district_city(ten_hour_case):
    assert [a.code for a in ops_centres(ten_hour_case)] == ["100102002", "100102", f.CITY]


def test_sweep_escalates_one_level_at_a_time(ten_hour_case):
    case = ten_hour_case
    assert sweep_at(local(2025, 3, 11, 12, 0)) == {"checked": 1, "near_due": 0, "overdue": 0,
                                                  "past_dispatch_time": 0, "escalated": 0}
    assert Case.objects.get(pk=case.pk).deadline_state == "on_time"

    # Less than 20 % of the allowed 10 hours left: near due -> the street centre.
    assert sweep_at(local(2025, 3, 11, 16, 30))["escalated"] == 1
    fresh = Case.objects.get(pk=case.pk)
    assert (fresh.deadline_state, fresh.escalation_level, fresh.escalated_to.code) == ("near_due", 1, "100102002")

    # Past due -> the district centre.
    assert sweep_at(local(2025, 3, 11, 18, 30))["escalated"] == 1
    fresh = Case.objects.get(pk=case.pk)
    assert (fresh.deadline_state, fresh.escalation_level, fresh.escalated_to.code) == ("overdue", 2, "100102")

    # Overdue by its whole allowed time again -> the city centre.
    assert sweep_at(local(2025, 3, 12, 4, 0))["escalated"] == 1
    fresh = Case.objects.get(pk=case.pk)
    assert (fresh.escalation_level, fresh.escalated_to) == (3, Area.objects.get(code=f.CITY))
    assert fresh.status == "dispatched"  # escalation never changes the status

    assert escalations(case) == [
        (1, "100102002", "system:deadlines"), (2, "100102", "system:deadlines"), (3, f.CITY, "system:deadlines"),
    ]
    records = AuditRecord.objects.filter(action="case.escalate", object_id=str(case.pk)).order_by("seq")
    assert [(r.actor, r.data["level"], r.data["to"]) for r in records] == [
        ("system:deadlines", 1, "100102002"), ("system:deadlines", 2, "100102"), ("system:deadlines", 3, f.CITY),
    ]


def test_repeated_sweeps_do_not_storm(ten_hour_case):
    case = ten_hour_case
    for minute in (30, 31, 45):
        sweep_at(local(2025, 3, 11, 16, minute))
    assert escalations(case) == [(1, "100102002", "system:deadlines")]

    timeline, audit = TimelineEntry.objects.count(), AuditRecord.objects.count()
    for hour in (19, 20, 21):
        sweep_at(local(2025, 3, 11, hour, 0))
    assert [e[0] for e in escalations(case)] == [1, 2]
    assert (TimelineEntry.objects.count(), AuditRecord.objects.count()) == (timeline + 1, audit + 1)

    for hour in (5, 6, 23):
        sweep_at(local(2025, 3, 12, hour, 0))
    assert [e[0] for e in escalations(case)] == [1, 2, 3]
    assert Case.objects.get(pk=case.pk).escalation_level == 3


def test_a_late_first_sweep_escalates_once_to_the_district(ten_hour_case):
    counts = sweep_at(local(2025, 3, 11, 19, 0))
    assert counts == {"checked": 1, "near_due": 0, "overdue": 1, "past_dispatch_time": 0, "escalated": 1}
    assert escalations(ten_hour_case) == [(2, "100102", "system:deadlines")]


def test_manual_escalation_is_not_repeated_by_the_sweep(ten_hour_case, admin_user):
    from chengyun.cases.services import escalate_case

    with simulated(local(2025, 3, 11, 10, 0)):
        escalate_case(Case.objects.get(pk=ten_hour_case.pk), by=admin_user, reason="VIP complaint")
    sweep_at(local(2025, 3, 11, 16, 30))
    assert [(lvl, by) for lvl, _to, by in escalations(ten_hour_case)] == [(1, "root")]


def test_closed_cases_are_left_alone_and_undispatched_ones_have_no_deadline_state(ten_hour_case, world, admin_user):
    with simulated(DISPATCHED):
        closed = f.drive_to(f.make_case(category=ten_hour_case.category, by=admin_user), "closed", by=admin_user)
        waiting = f.make_case(category=ten_hour_case.category, by=admin_user)  # new: no deadline yet
    counts = sweep_at(local(2025, 3, 13, 0, 0))
    # The dispatched case is overdue; the new one is past its dispatch time (派单时限), see test_dispatch_time.
    assert (counts["checked"], counts["past_dispatch_time"], counts["escalated"]) == (1, 1, 2)
    assert Case.objects.get(pk=waiting.pk).deadline_state == "on_time"
    fresh = Case.objects.get(pk=closed.pk)
    assert (fresh.escalation_level, fresh.deadline_state) == (0, "on_time")
    assert not TimelineEntry.objects.filter(case=closed, action="escalate").exists()


def test_sweep_deadlines_command(ten_hour_case):
    out = io.StringIO()
    with simulated(local(2025, 3, 11, 16, 30)):
        call_command("sweep_deadlines", stdout=out)
    assert out.getvalue().strip() == "checked: 1, near_due: 1, overdue: 0, past_dispatch_time: 0, escalated: 1"
    out = io.StringIO()
    with simulated(local(2025, 3, 11, 16, 35)):
        call_command("sweep_deadlines", stdout=out)
    assert "escalated: 0" in out.getvalue()
    assert Case.objects.get(pk=ten_hour_case.pk).escalation_level == 1


def test_queue_shows_overdue_counts(client, ten_hour_case, admin_user):
    sweep_at(local(2025, 3, 11, 19, 0))
    client.force_login(admin_user)
    body = client.get("/api/v1/cases/", {"deadline": "overdue"}).json()
    assert [c["number"] for c in body["items"]] == [ten_hour_case.number]
    assert body["items"][0]["escalation_level"] == 2
    assert client.get("/api/v1/cases/", {"deadline": "near_due"}).json()["count"] == 0


def test_chengyun_sweep_deadlines_with_dashes(ten_hour_case, capsys, monkeypatch):
    """`chengyun sweep-deadlines` (the console script's entry point, in this process and database)."""
    from django.db import connections

    from chengyun.cli import main

    # run_from_argv closes every connection when it is done, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    with simulated(local(2025, 3, 11, 18, 30)):
        main(["chengyun", "sweep-deadlines"])
    assert "overdue: 1, past_dispatch_time: 0, escalated: 1" in capsys.readouterr().out
    assert Case.objects.get(pk=ten_hour_case.pk).escalated_to.code == "100102"


def test_work_reported_done_in_time_is_not_overdue_while_it_waits_to_be_checked(ten_hour_case, admin_user):
    """Checking on site is not the department's time: done by 17:00, it stays on time
    when the inspector comes the next day (it was escalated to the city)."""
    from chengyun.cases import services

    with simulated(local(2025, 3, 11, 9, 0)):
        services.start_case(Case.objects.get(pk=ten_hour_case.pk), by=admin_user)
    with simulated(local(2025, 3, 11, 17, 0)):
        services.report_done(Case.objects.get(pk=ten_hour_case.pk), by=admin_user)
    sweep_at(local(2025, 3, 12, 11, 0))
    case = Case.objects.get(pk=ten_hour_case.pk)
    assert case.status == "awaiting_verification" and case.deadline_state == "on_time"
    assert case.escalation_level == 0


def test_work_done_late_is_overdue_by_the_time_it_was_done(ten_hour_case, admin_user):
    from chengyun.cases import services

    with simulated(local(2025, 3, 11, 9, 0)):
        services.start_case(Case.objects.get(pk=ten_hour_case.pk), by=admin_user)
    with simulated(local(2025, 3, 11, 19, 0)):  # an hour late
        services.report_done(Case.objects.get(pk=ten_hour_case.pk), by=admin_user)
    sweep_at(local(2025, 3, 13, 9, 0))  # two days later, still not checked
    case = Case.objects.get(pk=ten_hour_case.pk)
    assert case.deadline_state == "overdue"
    assert case.escalation_level == 2, "an hour late, not late by its whole allowed time: the district, not the city"


def test_an_overdue_case_without_an_area_goes_to_the_city_as_overdue(world, admin_user):
    """The city is its only centre: level 3, the city's, and the reason is still that it is overdue."""
    from chengyun.cases import services

    category = f.make_category(code="0301", deadline_hours=10, deadline_kind="calendar")
    f.make_routing_rule(category=category, lead_department=world.dept("water", "100102"))
    with simulated(DISPATCHED):
        case = services.create_case(title="Somewhere in town", category=category, by=admin_user)
        case = f.drive_to(case, "dispatched", by=admin_user, lead=world.dept("water", "100102"))
    sweep_at(local(2025, 3, 11, 19, 0))
    notes = list(TimelineEntry.objects.filter(case=case, action="escalate").values_list("data__level", "note"))
    assert notes == [(3, "Overdue")]
