"""The bulk pipeline's shortcuts give the same answers as the services they
stand in for: routing (``taxonomy.services.route``), deadlines
(``cases.services.compute_deadlines``), and the import's time formats."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from chengyun.areas.models import Area
from chengyun.cases.models import WorkingDayOverride
from chengyun.cases.services import compute_deadlines
from chengyun.intake.bulk import (
    DeadlineCalculator,
    RoutePlanner,
    check_columns,
    hours_micros,
    micros,
    parse_time,
)
from chengyun.taxonomy.models import Category
from chengyun.taxonomy.services import route

from .. import factories as f

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def routing_world(intake_world):
    """More rule shapes than the basic world: an area-limited rule with a named
    lead, a rule whose kind has no department, a rule without a level, an
    inactive department, assisting departments named outright."""
    w = intake_world
    _street_kind, lone = f.add_routing_edge_cases(w, w.categories["0102"])
    w.categories["02"] = lone
    return w


def test_route_planner_gives_the_same_decision_as_route(routing_world):
    planner = RoutePlanner()
    areas = [None, *Area.objects.all()]
    checked = routed = 0
    for cat in Category.objects.all():
        for area in areas:
            expected = route(cat, area)
            got = planner.route(cat.pk, area.pk if area else None)
            assert got.rule_id == (expected.rule.pk if expected.rule else None), (cat.code, area)
            assert got.lead_id == (expected.lead.pk if expected.lead else None), (cat.code, area)
            assert got.assisting_ids == [d.pk for d in expected.assisting], (cat.code, area)
            want = dict(expected.explanation)
            if expected.lead is not None:
                want["overridden"] = False  # what dispatch_case() stores
                routed += 1
            assert got.explanation == want, (cat.code, area)
            assert got.explanation_json + "}" == json.dumps(got.explanation, ensure_ascii=False)
            checked += 1
    assert checked == Category.objects.count() * len(areas) and routed > 10


@pytest.mark.parametrize("kind", ["working", "calendar"])
def test_deadlines_are_those_of_compute_deadlines(intake_world, kind):
    WorkingDayOverride.objects.create(date=date(2026, 12, 24), is_working_day=False, note="local day off")
    WorkingDayOverride.objects.create(date=date(2026, 12, 26), is_working_day=True, note="worked Saturday")
    cats = [f.make_category(code=f"9{i}", deadline_hours=hours, response_hours=resp, deadline_kind=kind,
                            priority=priority)
            for i, (hours, resp, priority) in enumerate([(8, 2, "normal"), (40, "0.5", "urgent"), (3.75, 1, "low"),
                                                         (120, 4, "high"), (1, 0, "normal")])]
    rng = random.Random(7)
    base = datetime(2026, 9, 28, tzinfo=SHANGHAI)  # the National Day holidays and their adjusted days ahead
    starts = [base + timedelta(minutes=rng.randrange(0, 100 * 24 * 60), seconds=rng.random() * 60) for _ in range(300)]
    starts += [datetime(2026, 12, 24, 9, tzinfo=SHANGHAI), datetime(2026, 12, 25, 18, tzinfo=SHANGHAI),
               datetime(2026, 12, 25, 12, 30, tzinfo=SHANGHAI), datetime(2026, 12, 26, 8, 59, tzinfo=SHANGHAI)]
    calc = DeadlineCalculator()
    for cat in cats:
        hours = hours_micros(Decimal(cat.deadline_hours))  # imported cases have their category's priority
        t = np.array([micros(s.astimezone(UTC)) for s in starts], np.int64)
        working = np.full(len(t), kind == "working")
        due = calc.add(t, np.full(len(t), hours, np.int64), working)
        response = np.minimum(calc.add(t, np.full(len(t), hours_micros(cat.response_hours), np.int64), working), due)
        for s, d, r in zip(starts, due.tolist(), response.tolist(), strict=True):
            want_response, want_due = compute_deadlines(cat, cat.priority, s.astimezone(UTC))
            assert (r, d) == (micros(want_response), micros(want_due)), (cat.code, s)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-20 10:00", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
    ("2026-11-20T10:00:00+08:00", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
    ("2026-11-20T02:00:00Z", datetime(2026, 11, 20, 2, 0, tzinfo=UTC)),
    ("2026/11/2 8:05", datetime(2026, 11, 2, 0, 5, tzinfo=UTC)),
    ("2026/11/2 8:05:09.5", datetime(2026, 11, 2, 0, 5, 9, 500000, tzinfo=UTC)),
    ("2026年11月2日 08:05", datetime(2026, 11, 2, 0, 5, tzinfo=UTC)),
    ("2026年11月2日8时5分", datetime(2026, 11, 2, 0, 5, tzinfo=UTC)),
    ("2026-11-02", datetime(2026, 11, 1, 16, 0, tzinfo=UTC)),
    ("2026/11/2 8:05 +0000", datetime(2026, 11, 2, 8, 5, tzinfo=UTC)),
])
def test_time_formats_of_hotline_exports(text, expected):
    assert parse_time(text, SHANGHAI) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01 10:00", "20/11/2026", ""])
def test_unreadable_times_are_refused(text):
    with pytest.raises(ValueError):
        parse_time(text, SHANGHAI)


def test_the_raw_inserts_name_every_column(db):
    check_columns()  # raises when a model gains or loses a column


def test_the_open_case_index_matches_by_window_whether_or_not_it_has_swept(intake_world):
    """forget_before() sweeps old cases out only now and then (memory); best()
    never matches a case older than its category's window either way."""
    from chengyun.intake.bulk import OpenCaseIndex
    from chengyun.intake.textfeatures import CharNgramTfidf

    leak = intake_world.categories["0101"]
    features = CharNgramTfidf(min_df=1).fit(["水管爆裂冒水", "路灯不亮", "井盖缺失"])
    index = OpenCaseIndex(features, lat_ref=30.5)
    window = index.window[leak.pk]
    X = features.transform(["水管爆裂冒水"])
    lon, lat = f.centre("100101001")
    t0 = micros(datetime(2026, 1, 5, 8, tzinfo=UTC))
    index.add([t0, lon, lat, 1, leak.pk, "C1", X, 0, "", None, "zh"])

    def match(t):
        return index.best(leak.pk, lon, lat, t, X, 0, 0.0, "zh", 0.72)[0]

    assert match(t0 + window)[3] == 1  # at the edge of the window: still a candidate
    index.forget_before(t0 + 1 - index.max_window)  # the first call sweeps
    assert index.size == 1 and index.swept == t0 + 1 - index.max_window
    index.forget_before(t0 + 1)  # a whole window after the last sweep: it sweeps
    assert index.size == 0 and match(t0 + 1) is None

    index.add([t0, lon, lat, 2, leak.pk, "C2", X, 0, "", None, "zh"])
    index.forget_before(t0 + 2)  # moments after the last sweep: kept in memory...
    assert index.size == 1
    assert match(t0 + window + 1) is None  # ...but out of its window all the same
    assert match(t0 + window)[3] == 2


def test_loading_a_span_again_that_reaches_back_leaves_each_case_in_the_index_once(intake_world):
    """A batch that starts before the span loaded so far (an unsorted import)
    reads that earlier span; cases of it still in memory (the sweep is lazy)
    must not be in the index twice."""
    from chengyun.cases.models import Case
    from chengyun.intake.bulk import OpenCaseIndex
    from chengyun.intake.textfeatures import CharNgramTfidf

    leak = intake_world.categories["0101"]
    t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    for k, at in enumerate(("100101001", "100102001", "100103001")):
        case = f.make_case(title="水管爆裂", category=leak, at=at)
        Case.objects.filter(pk=case.pk).update(created_at=t0 + timedelta(hours=k))
    index = OpenCaseIndex(CharNgramTfidf(min_df=1).fit(["水管爆裂", "路灯不亮"]), lat_ref=30.5)
    hour = 3_600_000_000
    start = micros(t0)
    index.load(start + hour, start + 2 * hour)  # the second and third
    index.forget_before(start + hour)  # the first call sweeps
    index.forget_before(start + hour + 1)  # moments later: no sweep
    assert index.size == 2
    index.load(start, start + 2 * hour)  # reaches back to the first
    ids = sorted(e[3] for entries in index.cells.values() for e in entries)
    assert ids == sorted(Case.objects.values_list("pk", flat=True))  # each once
