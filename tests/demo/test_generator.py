"""The demo's generated history, made in the tiny test city: every case goes
through the real services (timeline and audit chain intact), routing from the
generator's snapshot decides as the database does, and a batch that holds
many cases still keeps each case all-or-nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from chengyun.areas.models import AreaLevel
from chengyun.audit.services import verify_chain
from chengyun.cases.models import Case, TimelineEntry
from chengyun.cases.workflow import CaseStatus
from chengyun.demo import generator
from chengyun.demo.generator import generate_cases
from chengyun.demo.loader import SIM_USERS
from chengyun.taxonomy.models import Category
from chengyun.taxonomy.services import route

from .. import factories as f


def quiet(*_args) -> None:
    pass


NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


@pytest.fixture
def city(world, monkeypatch):
    """The tiny city with the simulated staff and two more demo-pack
    categories: one inspectors may close on the spot, and one routed to the
    roads department with the water department assisting. The clock stands
    still, so the generated history is the same on every run."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    for username, _display, role in SIM_USERS:
        f.make_user(username=username, role=role)
    group = f.make_category(code="03", deadline_hours=24)
    bins = f.make_category(code="0303", parent=group, deadline_hours=8, response_hours=1)
    bins.self_dispose = True
    bins.save()
    guardrail = f.make_category(code="0203", parent=group, deadline_hours=24, deadline_kind="calendar")
    f.make_routing_rule(category=group, lead_kind=world.kinds["roads"], level=AreaLevel.objects.get(key="district"),
                        assisting_kinds=(world.kinds["water"],))
    world.categories.update({"03": group, "0303": bins, "0203": guardrail})
    return world


def test_a_generated_history_is_made_by_the_services(city):
    made = generate_cases(60, seed=11, log=quiet)

    assert made == 60
    cases = list(Case.objects.filter(generated=True).select_related("category", "area"))
    assert len(cases) == 60
    statuses = {c.status for c in cases}
    assert {CaseStatus.RATED, CaseStatus.CLOSED} & statuses and len(statuses) >= 4, statuses
    for case in cases:
        first = TimelineEntry.objects.filter(case=case).order_by("at", "pk").first()
        assert first.action == "create", case.number
    assert list(verify_chain()) == []
    # What the generator's routing snapshot decided is what the database decides.
    dispatched = [c for c in cases if c.route_rule_id is not None]
    assert dispatched
    for case in dispatched:
        decision = route(case.category, case.area)
        assert case.route_rule_id == decision.rule.pk
        assert case.route_explanation["lead"] == decision.lead.code
        assert case.route_explanation["assisting"] == [d.code for d in decision.assisting]


def test_the_planted_incident_happening_now_has_no_call_from_the_future(city):
    from chengyun.intake.models import ClusterWarning, Report

    bins = Category.objects.get(code="0303")
    bins.cluster_reports, bins.cluster_window_minutes, bins.cluster_radius_m = 4, 120, 300
    bins.save()
    generate_cases(20, seed=3, log=quiet)
    assert ClusterWarning.objects.exists(), "incidents were planted"
    assert not Report.objects.filter(received_at__gt=NOW).exists()
    assert not TimelineEntry.objects.filter(at__gt=NOW).exists()
    newest = ClusterWarning.objects.order_by("-last_report_at").first()
    assert NOW - newest.last_report_at < timedelta(minutes=30), "one is happening now"


def test_each_demo_handlers_department_finds_work_in_its_queue(city):
    """The history ends with most cases closed; a person playing a handler needs open ones."""
    from chengyun.cases.models import CaseAssignment

    water, roads = city.dept("water", "100101"), city.dept("roads", "100102")
    gen = generator.Generator(7, quiet)
    made = gen.give_handlers_work([water, roads], per_department=2)
    for dept in (water, roads):
        held = CaseAssignment.objects.filter(department=dept, active=True, role="lead",
                                             case__status=CaseStatus.DISPATCHED)
        assert held.count() == 2, dept.code
        assert all(p.case.generated and p.case.created_at <= NOW for p in held)
    assert made == 4
    assert gen.give_handlers_work([water, roads], per_department=2) == 0, "they have work already"
    # A city bureau that no rule names (they name the districts' departments): its
    # cases are recalled from the district and sent to it (改派), as a dispatcher would.
    bureau = f.make_department(code="WATER-CITY", kind=city.kinds["water"], area=city.areas[f.CITY])
    assert gen.give_handlers_work([bureau], per_department=2) == 2
    held = CaseAssignment.objects.filter(department=bureau, active=True, role="lead")
    assert held.count() == 2
    assert any(p.case.timeline.filter(action="recall").exists() for p in held)


def test_some_web_reporters_ask_for_messages_and_get_them_at_example_org(city):
    from chengyun.intake.models import Notification, Report

    generate_cases(120, seed=11, log=quiet)
    asking = Report.objects.filter(contact__notify=True)
    assert asking.exists() and not asking.exclude(channel="web").exists()
    assert all(email.endswith("@example.org") for email in asking.values_list("contact__email", flat=True))
    messages = Notification.objects.select_related("report")
    assert messages.exists(), "their cases moved on: messages are waiting for the worker"
    assert {n.report_id for n in messages} <= set(asking.values_list("pk", flat=True))


def test_a_refused_case_leaves_nothing_and_the_batch_goes_on(city, monkeypatch):
    from chengyun.cases.errors import CaseInvalid

    real = generator.Generator.one_case
    calls = {"n": 0}

    def sometimes_refused(self, t):
        calls["n"] += 1
        case = real(self, t)
        if calls["n"] == 3:  # written, then refused: the whole case must go
            raise CaseInvalid("refused by the test", field="test")
        return case

    monkeypatch.setattr(generator.Generator, "one_case", sometimes_refused)
    lines = []
    made = generate_cases(10, seed=5, log=lines.append)

    assert made == 9
    assert Case.objects.filter(generated=True).count() == 9
    assert any("skipped one generated case: refused by the test" in line for line in lines)
    assert list(verify_chain()) == []


def test_generating_twice_adds_nothing(city):
    generate_cases(5, seed=1, log=quiet)
    lines = []
    assert generate_cases(5, seed=1, log=lines.append) == 0
    assert Case.objects.filter(generated=True).count() == 5
    assert "already present" in lines[0]


def test_the_history_leaves_no_case_waiting_days_for_a_dispatcher(city):
    """A living city: the incidents of earlier this month were handled as one case
    each (repeated calls merged, the rest taken into the smart-discovery case, that
    sent on), and a case reopened twice was sent on again; only the last hours'
    cases wait for a dispatcher."""
    from chengyun.cases.queries import waiting_for_dispatch
    from chengyun.intake.models import ClusterWarning, DuplicateSuggestion

    bins = Category.objects.get(code="0303")
    bins.cluster_reports, bins.cluster_window_minutes, bins.cluster_radius_m = 4, 120, 300
    bins.save()
    generate_cases(80, seed=5, log=quiet)
    waiting = {c.number: NOW - c.waiting_from for c in waiting_for_dispatch(Case.objects.all())}
    assert all(age < timedelta(days=1) for age in waiting.values()), waiting
    earlier = ClusterWarning.objects.exclude(last_report_at__gt=NOW - timedelta(days=1))
    assert earlier.exists(), "incidents of earlier this month were planted"
    for warning in earlier.select_related("case"):
        assert warning.case.status not in (CaseStatus.NEW, CaseStatus.ACCEPTED), warning.case.number
    assert not DuplicateSuggestion.objects.filter(status="pending", case__created_at__lt=NOW - timedelta(days=1))
    assert not Case.objects.filter(merged_into__status=CaseStatus.MERGED).exists(), "merged into a merged case"
