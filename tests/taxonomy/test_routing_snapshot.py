"""Inside ``routing_snapshot()``, ``route()`` answers from tables read once:
the same decisions and explanations as from the database, without queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chengyun.areas.models import Area
from chengyun.taxonomy.models import Category
from chengyun.taxonomy.services import route, routing_snapshot

from .. import factories as f


@pytest.fixture
def routing_world(world):
    """Rule shapes beyond the basic world: an area-limited rule with a named
    lead and an assisting department, a rule whose kind has no department, a
    rule without a level, an inactive department, two departments of one kind
    in one area, a category whose only rule finds nobody."""
    w = world
    lights = f.make_category(code="0102", parent=w.categories["01"], deadline_hours=16)
    street_kind, _lone = f.add_routing_edge_cases(w, lights)
    f.make_department(code="OFFICE-100101001-B", kind=street_kind, area=w.areas["100101001"])  # two of one kind
    f.make_category(code="03")  # no rule at all
    return w


def _same(a, b) -> bool:
    return (a.rule == b.rule and a.lead == b.lead and [d.pk for d in a.assisting] == [d.pk for d in b.assisting]
            and a.explanation == b.explanation)


def test_the_snapshot_routes_as_the_database_does(routing_world):
    areas = [None, *Area.objects.all()]
    categories = list(Category.objects.all())
    expected = {(c.pk, a.pk if a else None): route(c, a) for c in categories for a in areas}
    routed = 0
    with routing_snapshot(), CaptureQueriesContext(connection) as queries:
        for c in categories:
            for a in areas:
                got = route(c, a)
                want = expected[(c.pk, a.pk if a else None)]
                assert _same(got, want), (c.code, a.code if a else None, got.explanation, want.explanation)
                routed += want.lead is not None
    assert len(queries) == 0
    assert routed > 10
    assert any(d.explanation["outcome"] == "no_rule" for d in expected.values())
    assert any(d.explanation.get("skipped") for d in expected.values() if d.lead is not None)


def test_rows_made_after_the_snapshot_are_routed_from_the_database(routing_world):
    w = routing_world
    with routing_snapshot():
        late = f.make_category(code="0103", parent=w.categories["01"])
        decision = route(late, w.areas["100101001"])
    assert decision.lead == w.dept("water", "100101")  # the parent's rule, read from the database
    assert decision.explanation["inherited"] is True


def test_the_snapshot_ends_with_its_block(routing_world):
    w = routing_world
    with routing_snapshot():
        route(w.categories["0101"], w.areas["100101001"])
    with CaptureQueriesContext(connection) as queries:
        route(w.categories["0101"], w.areas["100101001"])
    assert len(queries) > 0
