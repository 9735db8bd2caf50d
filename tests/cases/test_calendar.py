"""Working hours: weekends, CN public holidays, adjusted working days (调休), overrides."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from chengyun.cases import services
from chengyun.cases.calendar import WorkingCalendar
from chengyun.cases.models import Case, WorkingDayOverride
from chengyun.clock import simulated
from chengyun.taxonomy.models import PRIORITY_DEADLINE_FACTOR

from .. import factories as f

SH = ZoneInfo("Asia/Shanghai")


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.fixture
def cal():
    return WorkingCalendar(country="CN", tz="Asia/Shanghai", hours=[("09:00", "12:00"), ("13:00", "18:00")])


def test_friday_afternoon_plus_two_working_hours_is_monday_ten(cal):
    assert cal.add_working_hours(local(2025, 3, 14, 17, 0), 2) == local(2025, 3, 17, 10, 0)


def test_lunch_break_and_evening_are_not_working_time(cal):
    assert cal.add_working_hours(local(2025, 3, 11, 11, 0), 2) == local(2025, 3, 11, 14, 0)
    assert cal.add_working_hours(local(2025, 3, 11, 20, 0), 1) == local(2025, 3, 12, 10, 0)
    assert cal.add_working_hours(local(2025, 3, 11, 12, 30), Decimal("0.5")) == local(2025, 3, 11, 13, 30)


def test_input_in_utc_is_counted_in_the_city_time_zone(cal):
    from datetime import UTC

    friday_17_local = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    assert cal.add_working_hours(friday_17_local, 2) == local(2025, 3, 17, 10, 0)


def test_spring_festival_2026_is_skipped(cal):
    # 2026-02-15 .. 02-23 are off; 02-24 (Tuesday) is the first working day after.
    for day in range(15, 24):
        assert not cal.is_working_day(date(2026, 2, day)), day
    assert cal.is_working_day(date(2026, 2, 24))
    assert cal.add_working_hours(local(2026, 2, 14, 17, 0), 2) == local(2026, 2, 24, 10, 0)


def test_2026_02_14_saturday_is_an_adjusted_working_day(cal):
    assert date(2026, 2, 14).weekday() == 5
    assert cal.is_working_day(date(2026, 2, 14))
    assert not cal.is_working_day(date(2026, 2, 7))  # an ordinary Saturday
    # Friday evening + 2 working hours lands on the worked Saturday.
    assert cal.add_working_hours(local(2026, 2, 13, 17, 0), 2) == local(2026, 2, 14, 10, 0)


def test_working_hours_between(cal):
    assert cal.working_hours_between(local(2025, 3, 14, 17, 0), local(2025, 3, 17, 10, 0)) == 2
    assert cal.working_hours_between(local(2025, 3, 17, 10, 0), local(2025, 3, 14, 17, 0)) == -2
    assert cal.working_hours_between(local(2026, 2, 14, 17, 0), local(2026, 2, 24, 10, 0)) == 2


@pytest.mark.django_db
def test_an_override_row_wins():
    WorkingDayOverride.objects.create(date=date(2025, 3, 17), is_working_day=False, note="typhoon")
    WorkingDayOverride.objects.create(date=date(2025, 3, 15), is_working_day=True, note="city clean-up Saturday")
    cal = WorkingCalendar.from_db()
    assert not cal.is_working_day(date(2025, 3, 17)) and cal.is_working_day(date(2025, 3, 15))
    # Friday 17:00 + 2h: 1h on Friday, 1h on the worked Saturday.
    assert cal.add_working_hours(local(2025, 3, 14, 17, 0), 2) == local(2025, 3, 15, 10, 0)
    # Saturday 17:00 + 2h: Sunday off, Monday overridden off -> Tuesday 10:00.
    assert cal.add_working_hours(local(2025, 3, 15, 17, 0), 2) == local(2025, 3, 18, 10, 0)


def test_calendar_hours_just_add_hours(cal):
    assert cal.add_hours(local(2026, 2, 14, 17, 0), Decimal("48"), "calendar") == local(2026, 2, 16, 17, 0)
    assert cal.add_hours(local(2025, 3, 14, 17, 0), 2, "working") == local(2025, 3, 17, 10, 0)


# --------------------------------------------------------------------------- deadlines at dispatch


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("priority", "due"),
    [
        ("urgent", local(2025, 3, 17, 10, 0)),   # 8h x 0.25 = 2 working hours
        ("high", local(2025, 3, 17, 12, 0)),     # 8h x 0.5  = 4
        ("normal", local(2025, 3, 17, 17, 0)),   # 8h x 1    = 8
        ("low", local(2025, 3, 18, 12, 0)),      # 8h x 1.5  = 12
    ],
)
def test_dispatch_sets_deadlines_from_category_and_priority(world, admin_user, priority, due):
    assert set(PRIORITY_DEADLINE_FACTOR) == {"urgent", "high", "normal", "low"}
    with simulated(local(2025, 3, 14, 17, 0)):
        case = f.make_case(category=world.categories["0101"], priority=priority, by=admin_user)
        case = f.drive_to(case, "dispatched", by=admin_user)
    assert case.dispatched_at == local(2025, 3, 14, 17, 0)
    assert case.due_at == due
    assert case.response_due_at == local(2025, 3, 17, 10, 0)  # response: 2 working hours, whatever the priority


@pytest.mark.django_db
def test_calendar_hour_category_deadline_ignores_holidays(world, admin_user):
    hotline = f.make_category(code="0201", deadline_hours=24, deadline_kind="calendar", response_hours=1,
                              priority="high")
    f.make_routing_rule(category=hotline, lead_department=world.dept("water", "100101"))
    with simulated(local(2026, 2, 15, 20, 0)):  # Spring Festival Sunday evening
        case = f.make_case(category=hotline, by=admin_user)  # priority defaults to the category's: high
        case = f.drive_to(case, "dispatched", by=admin_user)
    assert case.priority == "high"
    assert case.due_at == local(2026, 2, 16, 20, 0)  # 24h: the category's hours are for its own priority
    assert case.response_due_at == local(2026, 2, 15, 21, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(("priority", "hours"), [("urgent", 4), ("high", 8), ("normal", 16), ("low", 24)])
def test_a_categorys_hours_are_for_its_own_priority_and_scale_from_there(world, admin_user, priority, hours):
    """Set to 4 urgent hours, a category's urgent case has 4 hours (it used to get a
    quarter of them); raised or lowered from there, a case gets less or more."""
    burst = f.make_category(code="0202", deadline_hours=4, deadline_kind="calendar", response_hours=2,
                            priority="urgent")
    f.make_routing_rule(category=burst, lead_department=world.dept("water", "100101"))
    with simulated(local(2026, 2, 15, 20, 0)):
        case = f.make_case(category=burst, priority=priority, by=admin_user)
        case = f.drive_to(case, "dispatched", by=admin_user)
    assert case.due_at == local(2026, 2, 15, 20, 0) + timedelta(hours=hours)
    assert case.response_due_at == local(2026, 2, 15, 22, 0)


@pytest.mark.django_db
def test_a_response_is_never_due_after_the_work(world, admin_user):
    quick = f.make_category(code="0203", deadline_hours=1, deadline_kind="calendar", response_hours=2)
    f.make_routing_rule(category=quick, lead_department=world.dept("water", "100101"))
    with simulated(local(2026, 2, 15, 20, 0)):
        case = f.drive_to(f.make_case(category=quick, by=admin_user), "dispatched", by=admin_user)
    assert case.due_at == case.response_due_at == local(2026, 2, 15, 21, 0)


@pytest.mark.django_db
def test_deadline_is_computed_again_at_redispatch(world, admin_user):
    with simulated(local(2025, 3, 14, 17, 0)):
        case = f.drive_to(f.make_case(category=world.categories["0101"], by=admin_user), "dispatched", by=admin_user)
    with simulated(local(2025, 3, 18, 9, 0)):
        services.return_case(Case.objects.get(pk=case.pk), by=admin_user, reason="wrong department")
        assert Case.objects.get(pk=case.pk).due_at is None
        services.dispatch_case(Case.objects.get(pk=case.pk), by=admin_user)
    assert Case.objects.get(pk=case.pk).due_at == local(2025, 3, 18, 18, 0)
