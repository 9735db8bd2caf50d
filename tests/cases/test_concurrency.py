"""Two people acting on the same case at once: exactly one wins."""

from __future__ import annotations

import threading

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.cases import api as cases_api
from chengyun.cases import services
from chengyun.cases.errors import CaseConflict
from chengyun.cases.models import Case, CaseAssignment, TimelineEntry
from chengyun.org.models import Role

from .. import factories as f
from .api_actions import action_url

pytestmark = pytest.mark.django_db


def two_dispatchers(world):
    city = world.areas[f.CITY]
    return (f.make_user(username="d1", role=Role.DISPATCHER, area=city),
            f.make_user(username="d2", role=Role.DISPATCHER, area=city))


def test_stale_copy_loses_with_case_conflict(world, admin_user):
    d1, d2 = two_dispatchers(world)
    case = f.drive_to(f.make_case(category=world.categories["0101"], by=admin_user), "accepted", by=admin_user)
    first, second = Case.objects.get(pk=case.pk), Case.objects.get(pk=case.pk)
    timeline, audit = TimelineEntry.objects.count(), AuditRecord.objects.count()

    services.dispatch_case(first, by=d1)
    with pytest.raises(CaseConflict):
        services.dispatch_case(second, by=d2, lead=world.dept("roads", "100101"))

    fresh = Case.objects.get(pk=case.pk)
    assert fresh.status == "dispatched" and fresh.version == case.version + 1
    assert [p.department.code for p in CaseAssignment.objects.filter(case=case, role="lead")] == ["WATER-100101"]
    assert TimelineEntry.objects.count() == timeline + 1
    assert AuditRecord.objects.count() == audit + 1


def test_stale_copy_loses_even_when_the_status_is_the_same(world, admin_user):
    """An escalation does not change the status; a stale copy still conflicts."""
    case = f.drive_to(f.make_case(category=world.categories["0101"], by=admin_user), "dispatched", by=admin_user)
    stale = Case.objects.get(pk=case.pk)
    services.escalate_case(Case.objects.get(pk=case.pk), by=admin_user, reason="slow")
    with pytest.raises(CaseConflict):
        services.start_case(stale, by=admin_user)
    assert Case.objects.get(pk=case.pk).status == "dispatched"


@pytest.mark.parametrize("action", ["reject", "merge", "accept"])
def test_two_different_actions_from_stale_copies(world, admin_user, action):
    d1, d2 = two_dispatchers(world)
    case = f.make_case(category=world.categories["0101"], by=admin_user)
    other = f.make_case(title="other", category=world.categories["0101"], by=admin_user)
    first, second = Case.objects.get(pk=case.pk), Case.objects.get(pk=case.pk)
    services.accept_case(first, by=d1)
    with pytest.raises(CaseConflict):
        match action:
            case "reject":
                services.reject_case(second, by=d2, reason="dup")
            case "merge":
                services.merge_case(second, into=other, by=d2)
            case "accept":
                services.accept_case(second, by=d2)
    assert Case.objects.get(pk=case.pk).status == "accepted"
    assert not TimelineEntry.objects.filter(case=other, action="merged_in").exists()


def test_conflict_over_http_is_409(client, world, admin_user, monkeypatch):
    """The other dispatcher commits between this request's read and its write."""
    d1, d2 = two_dispatchers(world)
    case = f.drive_to(f.make_case(category=world.categories["0101"], by=admin_user), "accepted", by=admin_user)
    real_get_visible = cases_api.get_visible

    def read_then_someone_else_acts(user, number):
        seen = real_get_visible(user, number)
        if seen is not None and user == d2 and seen.status == "accepted":
            services.dispatch_case(Case.objects.get(pk=seen.pk), by=d1)
        return seen

    monkeypatch.setattr(cases_api, "get_visible", read_then_someone_else_acts)
    client.force_login(d2)
    response = client.post(action_url(case.number, "dispatch"), data={"lead": "ROADS-100101"},
                           content_type="application/json")

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    fresh = Case.objects.get(pk=case.pk)
    assert fresh.status == "dispatched" and fresh.lead.department.code == "WATER-100101"
    assert list(fresh.timeline.values_list("actor_name", "action")) == [
        ("root", "create"), ("root", "accept"), ("d1", "dispatch")]


@pytest.mark.django_db(transaction=True)
def test_two_threads_exactly_one_wins(world, admin_user):
    """Real concurrent transactions, each thread with its own connection: on
    PostgreSQL, and on SQLite too (the test database is a file; IMMEDIATE
    transactions and the busy timeout make the second writer wait, then lose)."""
    d1, d2 = two_dispatchers(world)
    case = f.drive_to(f.make_case(category=world.categories["0101"], by=admin_user), "accepted", by=admin_user)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def dispatch(user, lead_code):
        from django.db import connections

        try:
            mine = Case.objects.get(pk=case.pk)
            lead = world.departments[lead_code]
            barrier.wait(timeout=10)
            services.dispatch_case(mine, by=user, lead=lead)
            outcomes[user.username] = "won"
        except CaseConflict as exc:
            outcomes[user.username] = exc
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[user.username] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatch, args=(d1, "WATER-100101")),
               threading.Thread(target=dispatch, args=(d2, "ROADS-100101"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    results = sorted(str(type(v).__name__) if not isinstance(v, str) else v for v in outcomes.values())
    assert results == ["CaseConflict", "won"], outcomes
    winner = next(u for u, v in outcomes.items() if v == "won")
    fresh = Case.objects.get(pk=case.pk)
    assert fresh.status == "dispatched"
    assert CaseAssignment.objects.filter(case=case, role="lead", active=True).count() == 1
    assert list(fresh.timeline.filter(action="dispatch").values_list("actor_name", flat=True)) == [winner]
    assert AuditRecord.objects.filter(action="case.dispatch").count() == 1
