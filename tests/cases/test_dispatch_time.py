"""派单时限: a case waiting for a dispatcher (new, accepted, returned,
recalled, reopened) is to be sent on within DISPATCH_HOURS of when it began to
wait; the queue lists those past it, longest waiting first."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chengyun.cases import services
from chengyun.cases.models import Case
from chengyun.clock import simulated

from .. import factories as f

pytestmark = pytest.mark.django_db
SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 3, 11, 8, 0, tzinfo=SH)


@pytest.fixture
def category(world):
    category = f.make_category(code="0301", deadline_hours=10, deadline_kind="calendar")
    f.make_routing_rule(category=category, lead_department=world.dept("water", "100102"))
    return category


def fresh(pk) -> Case:
    return Case.objects.get(pk=pk)


def test_a_new_case_is_due_for_dispatch_hours_after_it_was_made(category, admin_user, settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = f.make_case(category=category, at="100102002", by=admin_user)
    assert case.waiting_since is None and case.dispatch_due_at == T0 + timedelta(hours=2)
    with simulated(T0 + timedelta(hours=1)):
        services.accept_case(fresh(case.pk), by=admin_user)
    # Accepting does not restart the clock: the case waits on, from its creation.
    assert fresh(case.pk).status == "accepted" and fresh(case.pk).dispatch_due_at == T0 + timedelta(hours=2)
    with simulated(T0 + timedelta(hours=1, minutes=59)):
        assert not fresh(case.pk).dispatch_overdue
    with simulated(T0 + timedelta(hours=2)):
        assert fresh(case.pk).dispatch_overdue
        services.dispatch_case(fresh(case.pk), by=admin_user)
        dispatched = fresh(case.pk)
        assert dispatched.dispatch_due_at is None and not dispatched.dispatch_overdue


def test_a_returned_case_waits_again_from_its_return_and_a_reopened_one_from_its_reopening(client, category,
                                                                                           admin_user, settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = f.drive_to(f.make_case(category=category, at="100102002", by=admin_user), "dispatched",
                          by=admin_user)
    back = T0 + timedelta(days=1)
    with simulated(back):
        services.return_case(fresh(case.pk), by=admin_user, reason="not our pipe")
    case = fresh(case.pk)
    assert case.status == "accepted" and case.waiting_since == back
    assert case.dispatch_due_at == back + timedelta(hours=2)
    client.force_login(admin_user)
    with simulated(back + timedelta(minutes=5)):
        listed = client.get("/console/", {"view": "to_dispatch"}).content.decode()
    row = listed[listed.index(case.number):]
    assert "back in the queue" in row[:row.index("</tr>")]

    with simulated(back + timedelta(hours=1)):
        services.dispatch_case(case, by=admin_user)
        services.start_case(fresh(case.pk), by=admin_user)
        services.report_done(fresh(case.pk), by=admin_user)
        services.verify_case(fresh(case.pk), by=admin_user, ok=True)
        assert fresh(case.pk).status == "closed" and fresh(case.pk).dispatch_due_at is None
    reopened_at = back + timedelta(days=2)
    with simulated(reopened_at):
        services.reopen_case(fresh(case.pk), by=admin_user, reason="the leak is back")
    case = fresh(case.pk)
    assert case.status == "reopened" and case.waiting_since == reopened_at
    assert case.dispatch_due_at == reopened_at + timedelta(hours=2)
    with simulated(reopened_at + timedelta(hours=3)):
        assert fresh(case.pk).dispatch_overdue


def test_the_queue_lists_the_cases_past_dispatch_time_longest_waiting_first(client, category, admin_user,
                                                                            settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        oldest = f.make_case(title="最早的", category=category, at="100102002", by=admin_user)
    with simulated(T0 + timedelta(minutes=30)):
        later = f.make_case(title="稍后的", category=category, at="100102002", by=admin_user)
    with simulated(T0 + timedelta(hours=2)):
        recent = f.make_case(title="刚来的", category=category, at="100102002", by=admin_user)
    client.force_login(admin_user)
    with simulated(T0 + timedelta(hours=2, minutes=45)):
        page = client.get("/console/", {"view": "past_dispatch"}).content.decode()
        waiting = client.get("/console/", {"view": "to_dispatch"}).content.decode()
        body = client.get(f"/api/v1/cases/{oldest.number}").json()
    assert "Past dispatch time (2 h)" in page
    assert page.index(oldest.number) < page.index(later.number) and recent.number not in page
    assert "past dispatch time by 45 min" in page and "dispatch by" in page
    assert waiting.index(oldest.number) < waiting.index(later.number) < waiting.index(recent.number)
    assert body["dispatch_overdue"] is True
    assert datetime.fromisoformat(body["dispatch_due_at"]) == T0 + timedelta(hours=2)


def test_the_case_page_says_by_when_to_dispatch(client, category, admin_user, settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = f.make_case(category=category, at="100102002", by=admin_user)
    client.force_login(admin_user)
    with simulated(T0 + timedelta(hours=3)):
        page = client.get(f"/console/cases/{case.number}/").content.decode()
    assert "Dispatch by" in page and "past dispatch time by 1 hour<" in page


def test_the_api_lists_waiting_and_late_cases_and_refuses_an_unknown_deadline_state(client, category, admin_user,
                                                                                     settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        old = f.make_case(category=category, at="100102002", by=admin_user)
    with simulated(T0 + timedelta(hours=2)):
        new = f.make_case(category=category, at="100102002", by=admin_user)
        sent = f.drive_to(f.make_case(category=category, at="100102002", by=admin_user), "dispatched",
                          by=admin_user)
    client.force_login(admin_user)
    with simulated(T0 + timedelta(hours=2, minutes=30)):
        waiting = client.get("/api/v1/cases/", {"dispatch": "waiting"}).json()
        late = client.get("/api/v1/cases/", {"dispatch": "late"}).json()
        wrong = client.get("/api/v1/cases/", {"deadline": "late"}, HTTP_ACCEPT_LANGUAGE="en")
    assert [c["number"] for c in waiting["items"]] == [old.number, new.number] and waiting["count"] == 2
    assert [c["number"] for c in late["items"]] == [old.number] and sent.number not in str(waiting)
    assert wrong.status_code == 400
    assert "deadline" in wrong.content.decode() and "on_time, near_due, overdue" in wrong.content.decode()
    for params, field in (({"status": "opened"}, "status"), ({"offset": -1}, "offset")):
        refused = client.get("/api/v1/cases/", params, HTTP_ACCEPT_LANGUAGE="en")
        assert refused.status_code == 400 and refused.json().get("field") == field, refused.content


def _escalations(case) -> list[tuple[int, str, str]]:
    from chengyun.cases.models import TimelineEntry

    return [(t.data["level"], t.data["to"], t.note)
            for t in TimelineEntry.objects.filter(case=case, action="escalate").order_by("at", "pk")]


def test_the_sweep_escalates_a_case_past_its_dispatch_time_to_the_district_then_the_city(client, category,
                                                                                          admin_user, settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = f.make_case(category=category, at="100102002", by=admin_user)
    with simulated(T0 + timedelta(hours=1, minutes=59)):
        assert services.sweep_deadlines()["escalated"] == 0
    with simulated(T0 + timedelta(hours=2, minutes=1)):
        counts = services.sweep_deadlines()
        assert services.sweep_deadlines()["escalated"] == 0  # once, not every minute
    assert counts == {"checked": 0, "near_due": 0, "overdue": 0, "past_dispatch_time": 1, "escalated": 1}
    assert (fresh(case.pk).escalation_level, fresh(case.pk).escalated_to.code) == (2, "100102")
    # Waiting as long again (4 hours in all): the city.
    with simulated(T0 + timedelta(hours=3, minutes=59)):
        assert services.sweep_deadlines()["escalated"] == 0
    with simulated(T0 + timedelta(hours=4)):
        assert services.sweep_deadlines()["escalated"] == 1
    assert _escalations(case) == [(2, "100102", "Past its dispatch time"),
                                  (3, f.CITY, "Waiting for dispatch twice as long as allowed")]
    assert fresh(case.pk).status == "new", "escalation never changes the status"
    client.force_login(admin_user)
    with simulated(T0 + timedelta(hours=4, minutes=1)):
        row = client.get("/console/", {"view": "past_dispatch"}).content.decode()
    row = row[row.index(f">{case.number}<"):]
    city = fresh(case.pk).escalated_to.display_name
    assert f'level 3 <span class="muted">{city}</span>' in row[:row.index("</tr>")], "the queue says to which centre"
    with simulated(T0 + timedelta(days=2)):
        assert services.sweep_deadlines() == {"checked": 0, "near_due": 0, "overdue": 0, "past_dispatch_time": 0,
                                              "escalated": 0}, "at the top: not read again"


def test_a_returned_case_is_escalated_counting_from_its_return_and_a_dispatched_one_is_not(category, admin_user,
                                                                                            settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        returned = f.drive_to(f.make_case(category=category, at="100102002", by=admin_user), "dispatched",
                              by=admin_user)
        sent = f.make_case(category=category, at="100102002", by=admin_user)
    back = T0 + timedelta(days=1)
    with simulated(back):
        services.return_case(fresh(returned.pk), by=admin_user, reason="not our pipe")
    with simulated(back + timedelta(hours=1)):
        f.drive_to(fresh(sent.pk), "dispatched", by=admin_user)  # a day late, but sent before the sweep came
        assert services.sweep_deadlines()["escalated"] == 0  # the returned one has waited an hour
    with simulated(back + timedelta(hours=2, minutes=30)):
        assert services.sweep_deadlines()["past_dispatch_time"] == 1
    assert [e[:2] for e in _escalations(returned)] == [(2, "100102")]
    assert fresh(sent.pk).escalation_level == 0


def test_a_case_waiting_without_an_area_goes_to_the_city(category, admin_user, settings):
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = services.create_case(title="Somewhere in town", category=category, by=admin_user)
    assert case.area_id is None
    with simulated(T0 + timedelta(hours=5)):
        services.sweep_deadlines()
    assert _escalations(case) == [(3, f.CITY, "Waiting for dispatch twice as long as allowed")]


def _in_district_escalated(category, admin_user, settings, then=None):
    """A case placed only in district 100102 at T0, swept just past its dispatch time
    (``then`` run in the same minute)."""
    from chengyun.areas.models import Area

    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = services.create_case(title="区里某处", category=category, by=admin_user,
                                    area=Area.objects.get(code="100102"))
    with simulated(T0 + timedelta(hours=2, minutes=1)):
        services.sweep_deadlines()
        if then is not None:
            then(case)
    return case


def test_a_case_placed_only_in_a_district_goes_to_that_district_then_the_city(category, admin_user, settings):
    """Its centres are the district and the city: "the district" is the district, not the
    city (a district-only address is what leaves cases waiting)."""
    case = _in_district_escalated(category, admin_user, settings)
    with simulated(T0 + timedelta(hours=4)):
        services.sweep_deadlines()
    # Levels keep their meaning (2: a district's centre, 3: the city's) whatever the case's area.
    assert [e[:2] for e in _escalations(case)] == [(2, "100102"), (3, f.CITY)]


def test_a_case_back_in_the_queue_is_escalated_afresh_for_its_dispatch_time(category, admin_user, settings):
    """Escalated as overdue while a department had it, then returned: a new stage, as
    dispatch starts one; its wait for a dispatcher is escalated on its own."""
    settings.DISPATCH_HOURS = 2
    with simulated(T0):
        case = f.drive_to(f.make_case(category=category, at="100102002", by=admin_user), "dispatched",
                          by=admin_user)
    with simulated(T0 + timedelta(days=2)):
        services.sweep_deadlines()
        assert fresh(case.pk).escalation_level == 3
        services.return_case(fresh(case.pk), by=admin_user, reason="not our pipe")
    back = fresh(case.pk)
    assert (back.escalation_level, back.escalated_to) == (0, None)
    with simulated(T0 + timedelta(days=2, hours=2, minutes=1)):
        assert services.sweep_deadlines()["escalated"] == 1
    assert _escalations(case)[-1] == (2, "100102", "Past its dispatch time")


def test_a_case_moved_into_its_street_after_escalation_to_its_district_is_not_escalated_there_again(
        category, admin_user, settings):
    from chengyun.areas.models import Area

    case = _in_district_escalated(category, admin_user, settings, then=lambda c: services.relocate_case(
        fresh(c.pk), by=admin_user, area=Area.objects.get(code="100102002")))
    with simulated(T0 + timedelta(hours=2, minutes=30)):
        assert services.sweep_deadlines()["escalated"] == 0, "already at its district's centre"
    with simulated(T0 + timedelta(hours=4)):
        services.sweep_deadlines()
    assert [e[:2] for e in _escalations(case)] == [(2, "100102"), (3, f.CITY)]


def test_the_migration_gives_escalated_cases_the_level_of_their_centre(category, admin_user):
    """Levels stored before they kept their meaning (a district-only case at its district: 1)."""
    from importlib import import_module

    from django.apps import apps

    from chengyun.areas.models import Area

    district = Area.objects.get(code="100102")
    case = services.create_case(title="区里某处", category=category, by=admin_user, area=district)
    street_case = f.make_case(category=category, at="100102002", by=admin_user)
    Case.objects.filter(pk=case.pk).update(escalation_level=1, escalated_to=district)  # as stored before
    Case.objects.filter(pk=street_case.pk).update(escalation_level=2, escalated_to=district)
    import_module("chengyun.cases.migrations.0009_escalation_level_meaning").levels_by_centre(apps, None)
    assert (fresh(case.pk).escalation_level, fresh(street_case.pk).escalation_level) == (2, 2)


def test_levels_count_from_the_top_of_the_centres_a_city_lists(category, admin_user, settings):
    """A city without street centres (OPS_CENTRE_LEVELS = district, city): a case past its
    dispatch time still goes to its district (2), not straight to the city."""
    settings.DISPATCH_HOURS = 2
    settings.OPS_CENTRE_LEVELS = ("district", "city")
    assert (services.level_number("district"), services.level_number("city")) == (2, 3)
    with simulated(T0):
        case = f.make_case(category=category, at="100102002", by=admin_user)
    with simulated(T0 + timedelta(hours=2, minutes=1)):
        services.sweep_deadlines()
    assert [e[:2] for e in _escalations(case)] == [(2, "100102")]


def test_the_migration_gives_a_case_escalated_to_the_city_without_an_area_the_top_level(category, admin_user):
    from importlib import import_module

    from django.apps import apps

    from chengyun.areas.models import Area

    case = services.create_case(title="Somewhere in town", category=category, by=admin_user)
    Case.objects.filter(pk=case.pk).update(escalation_level=1, escalated_to=Area.objects.get(code=f.CITY))
    import_module("chengyun.cases.migrations.0009_escalation_level_meaning").levels_by_centre(apps, None)
    assert fresh(case.pk).escalation_level == 3
    with simulated(T0 + timedelta(days=30)):
        assert services.sweep_deadlines()["escalated"] == 0, "not escalated to the city again"
