"""Property tests of the case state machine against ``workflow.TRANSITIONS``.

Random sequences of actions with random inputs, by a superuser and by random
role users: every success is an allowed (from, to) pair, is taken by someone
holding one of the action's roles, and writes exactly one timeline entry and
one audit record; every failure is a CaseError that changes nothing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chengyun.audit.models import AuditRecord
from chengyun.cases.api import ActionIn, run_action
from chengyun.cases.errors import CaseError
from chengyun.cases.models import Case, CaseAssignment, ExtensionRequest, TimelineEntry
from chengyun.cases.workflow import ACTIONS, TRANSITIONS
from chengyun.org import scope
from chengyun.org.models import Role, User

from .. import factories as f

pytestmark = pytest.mark.django_db

ACTION_NAMES = sorted(ACTIONS)

steps = st.lists(
    st.fixed_dictionaries({
        "action": st.sampled_from(ACTION_NAMES),
        "who": st.integers(0, 6),
        "reason": st.sampled_from(["", "   ", "because"]),
        "hours": st.sampled_from([None, 4, -1]),
        "satisfaction": st.sampled_from(["", "satisfied", "basically_satisfied", "unsatisfied", "unreachable", "bad"]),
        "lead": st.sampled_from([None, "WATER-100101", "ROADS-100101", "WATER-100104"]),
        "into": st.booleans(),
    }),
    min_size=1, max_size=25,
)


@pytest.fixture
def actors(world, admin_user) -> list[User]:
    city = world.areas[f.CITY]
    return [
        admin_user,
        f.make_user(username="p_operator", role=Role.OPERATOR),
        f.make_user(username="p_dispatcher", role=Role.DISPATCHER, area=city),
        f.make_user(username="p_water", role=Role.HANDLER, department=world.dept("water", "100101")),
        f.make_user(username="p_roads", role=Role.HANDLER, department=world.dept("roads", "100101")),
        f.make_user(username="p_supervisor", role=Role.SUPERVISOR, area=world.areas["100101"]),
        f.make_user(username="p_inspector", role=Role.INSPECTOR, area=city),
    ]


def snapshot(case: Case) -> tuple:
    fresh = Case.objects.get(pk=case.pk)
    return (
        {k: v for k, v in fresh.__dict__.items() if not k.startswith("_")},
        TimelineEntry.objects.filter(case=case).count(),
        AuditRecord.objects.count(),
        sorted(CaseAssignment.objects.filter(case=case).values_list("pk", "status", "active")),
        sorted(ExtensionRequest.objects.filter(case=case).values_list("pk", "status")),
    )


def run_sequence(world, actors, sequence, *, superuser_only: bool) -> None:
    admin = actors[0]
    case = f.make_case(category=world.categories["0101"], by=admin)
    sibling = f.make_case(title="sibling", category=world.categories["0101"], by=admin)
    for step in sequence:
        user = admin if superuser_only else User.objects.get(pk=actors[step["who"]].pk)  # fresh role cache
        before = snapshot(case)
        status_before = before[0]["status"]
        body = ActionIn(
            reason=step["reason"], hours=step["hours"], satisfaction=step["satisfaction"] or None,
            lead=step["lead"], into=sibling.number if step["into"] else None,
        )
        try:
            run_action(user, Case.objects.get(pk=case.pk), step["action"], body)
        except CaseError:
            assert snapshot(case) == before, f"failed {step['action']} changed the case"
            continue
        after = snapshot(case)
        status_after = after[0]["status"]
        assert status_after in TRANSITIONS[status_before], (step["action"], status_before, status_after)
        action = ACTIONS[step["action"]]
        assert status_before in action.sources
        assert status_after in (action.targets or {status_before})
        assert user.is_superuser or action.roles & scope.roles_of(user), (user, step["action"])
        assert after[1] == before[1] + 1, "one timeline entry per action"
        assert after[2] == before[2] + 1, "one audit record per action"
        assert after[0]["version"] == before[0]["version"] + 1
        if action.needs_reason:
            entry = TimelineEntry.objects.filter(case=case).order_by("-pk").first()
            assert entry.note.strip(), "an action that needs a reason records one"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_superuser_sequences_respect_the_transition_table(world, actors, sequence):
    run_sequence(world, actors, sequence, superuser_only=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_role_user_sequences_respect_the_transition_table(world, actors, sequence):
    run_sequence(world, actors, sequence, superuser_only=False)


def test_every_status_is_reachable_and_transitions_only_name_statuses():
    from chengyun.cases.workflow import CaseStatus

    reached, frontier = {CaseStatus.NEW}, [CaseStatus.NEW]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(CaseStatus)
    assert TRANSITIONS["rejected"] == frozenset()
    # A merge can be undone: the case is new again, and nothing else.
    assert TRANSITIONS["merged"] == frozenset({CaseStatus.NEW})


def test_a_happy_path_by_role_users(world, actors):
    """The sequence a real city runs, each step by the role meant for it."""
    admin, operator, dispatcher, water, roads, supervisor, inspector = actors
    case = f.make_case(category=world.categories["0101"], by=operator)
    for user, action, body in [
        (operator, "accept", {}),
        (dispatcher, "dispatch", {}),
        (roads, "start", {}),
        (water, "start", {}),
        (water, "request_extension", {"hours": 4, "reason": "parts"}),
        (supervisor, "approve_extension", {}),
        (roads, "report_done", {}),
        (water, "report_done", {}),
        (inspector, "verify_ok", {}),
        (operator, "callback", {"satisfaction": "basically_satisfied"}),
    ]:
        before = snapshot(case)
        run_action(User.objects.get(pk=user.pk), Case.objects.get(pk=case.pk), action, ActionIn(**body))
        after = snapshot(case)
        assert after[0]["status"] in TRANSITIONS[before[0]["status"]]
        assert (after[1], after[2]) == (before[1] + 1, before[2] + 1)
    assert Case.objects.get(pk=case.pk).status == "rated"
