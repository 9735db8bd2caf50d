"""Cluster warnings checked a batch at a time (:func:`chengyun.intake.cluster.check_many`,
the intake pipeline's check) raise the same warnings with the same reports as
the check one report at a time (:func:`~chengyun.intake.cluster.check_cluster`,
``submit()``'s), and as the rule itself worked out by brute force: generated
reports over a city with planted bursts (seeded), bursts split between two batches."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from chengyun.intake import cluster
from chengyun.intake.geo import box, distance_m
from chengyun.intake.models import ClusterWarning, Report

from .. import factories as f

pytestmark = pytest.mark.django_db

# code: (reports, radius in metres, window in minutes)
RULES = {"7001": (3, 300, 60), "7002": (5, 1500, 120), "7003": (4, 500, 30), "7004": (0, 500, 60)}
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CENTRE = (121.47, 31.23)


def _categories():
    cats = {}
    for code, (n, radius, minutes) in RULES.items():
        c = f.make_category(code=code)
        c.cluster_reports, c.cluster_radius_m, c.cluster_window_minutes = n, radius, minutes
        c.save()
        cats[code] = c
    return cats


def _offset(lon, lat, metres, rng):
    """A point about ``metres`` away in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    dlat = metres * math.sin(angle) / 111_195
    return lon + metres * math.cos(angle) / (111_195 * math.cos(math.radians(lat))), lat + dlat


def _generate(seed: int, cats) -> list[Report]:
    """Background reports city-wide over three hours, and bursts: some big
    enough for a warning, some one short, some spread wider than the radius or
    longer than the window; a few reports share their moment."""
    rng = random.Random(seed)
    rows = []
    for _ in range(250):
        code = rng.choice(list(cats))
        lon, lat = CENTRE[0] + rng.uniform(-0.15, 0.15), CENTRE[1] + rng.uniform(-0.12, 0.12)
        rows.append((code, lon, lat, T0 + timedelta(seconds=rng.uniform(0, 3 * 3600))))
    for _ in range(14):
        code = rng.choice(["7001", "7002", "7003"])
        n, radius, minutes = RULES[code]
        size = n + rng.choice([-1, 0, 1, 3, 6])
        spread = radius * rng.choice([0.4, 0.6, 1.2])  # up to beyond the radius
        step = minutes * rng.choice([0.1, 0.3, 0.6]) / max(1, size)
        clon, clat = CENTRE[0] + rng.uniform(-0.12, 0.12), CENTRE[1] + rng.uniform(-0.1, 0.1)
        at = T0 + timedelta(minutes=rng.uniform(0, 150))
        for _k in range(size):
            rows.append((code, *_offset(clon, clat, rng.uniform(0, spread), rng), at))
            if rng.random() > 0.15:  # else the next one comes at the same moment
                at += timedelta(minutes=rng.uniform(0, 2 * step))
    # Twin bursts 1.2 radii apart, then reports between them, near both warnings:
    # they join the newest raised. And a burst with stragglers after its window.
    n, radius, minutes = RULES["7001"]
    a = (CENTRE[0] + rng.uniform(-0.1, 0.1), CENTRE[1] + rng.uniform(-0.1, 0.1))
    b = _offset(*a, 1.2 * radius, rng)
    middle = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    at = T0 + timedelta(minutes=rng.uniform(0, 60))
    for centre, size in ((a, n), (b, n), (middle, 3)):
        for _k in range(size):
            rows.append(("7001", *_offset(*centre, rng.uniform(0, 0.1 * radius), rng), at))
            at += timedelta(minutes=rng.uniform(0.5, 3))
    n, radius, minutes = RULES["7003"]
    c = (CENTRE[0] + rng.uniform(-0.1, 0.1), CENTRE[1] + rng.uniform(-0.1, 0.1))
    at = T0 + timedelta(minutes=rng.uniform(0, 60))
    for k in range(n + 4):
        rows.append(("7003", *_offset(*c, rng.uniform(0, 0.3 * radius), rng), at))
        at += timedelta(minutes=rng.uniform(1, 4) if k < n else rng.uniform(0.3, 0.6) * minutes)
    rng.shuffle(rows)
    reports = Report.objects.bulk_create([
        Report(number=f"T{seed}-{i:05d}", channel="web", title="test", category=cats[code], lon=lon, lat=lat,
               received_at=at)
        for i, (code, lon, lat, at) in enumerate(rows)])
    reports = list(Report.objects.select_related("category").filter(pk__in=[r.pk for r in reports]))
    reports.sort(key=lambda r: (r.received_at, r.pk))
    return reports


def _by_rule(reports) -> list[tuple]:
    """The rule by brute force over every report: in time order, a report joins
    the newest raised warning of its category within its radius whose last
    report is within the window; else its category's reports received in the
    window up to it within the radius (and the query's square around it), and
    in no warning yet, raise a warning if there are enough of them. A report
    already in a warning (raised by one of the same moment) is left there."""
    warnings: list[dict] = []  # newest raised first
    claimed: set[int] = set()
    for r in reports:
        c = r.category
        if not c.cluster_reports or r.pk in claimed:  # in a warning already (raised at the same moment)
            continue
        window, radius = timedelta(minutes=c.cluster_window_minutes), c.cluster_radius_m
        joined = [w for w in warnings if w["category"] == c.pk and w["last"] >= r.received_at - window
                  and distance_m(r.lon, r.lat, w["lon"], w["lat"]) <= radius]
        if joined:
            joined[0]["reports"].add(r.pk)
            joined[0]["last"] = max(joined[0]["last"], r.received_at)
            claimed.add(r.pk)
            continue
        min_lon, min_lat, max_lon, max_lat = box(r.lon, r.lat, radius)
        near = sorted((x for x in reports if x.category_id == c.pk
                       and r.received_at - window <= x.received_at <= r.received_at
                       and min_lon <= x.lon <= max_lon and min_lat <= x.lat <= max_lat
                       and distance_m(r.lon, r.lat, x.lon, x.lat) <= radius and x.pk not in claimed),
                      key=lambda x: (x.received_at, x.pk), reverse=True)
        if len(near) >= c.cluster_reports:
            warnings.insert(0, {
                "category": c.pk, "lon": sum(x.lon for x in near) / len(near),
                "lat": sum(x.lat for x in near) / len(near), "started": min(x.received_at for x in near),
                "last": r.received_at, "reports": {x.pk for x in near}, "raised_by": r.pk})
            claimed.update(x.pk for x in near)
    return sorted((w["category"], w["lon"], w["lat"], w["started"], frozenset(w["reports"])) for w in warnings)


def _raised() -> list[tuple]:
    """The warnings in the database, as :func:`_by_rule` gives them; then removed."""
    found = sorted((w.category_id, w.lon, w.lat, w.started_at, frozenset(w.reports.values_list("pk", flat=True)))
                   for w in ClusterWarning.objects.all())
    for w in ClusterWarning.objects.all():
        assert w.report_count == w.reports.count()
    ClusterWarning.objects.all().delete()
    return found


def _arrival(r: Report) -> cluster.Arrival:
    c = r.category
    return cluster.Arrival(r.pk, c.pk, r.lon, r.lat, r.received_at, r.area_id, c.cluster_reports,
                           c.cluster_radius_m, c.cluster_window_minutes)


def _no_case(warning):
    return None


@pytest.mark.parametrize("seed", [3, 17, 2026])
def test_a_batch_raises_the_warnings_one_report_at_a_time_raises(seed):
    reports = _generate(seed, _categories())
    expected = _by_rule(reports)
    assert len(expected) >= 3  # the planted bursts raise warnings (and the test means something)
    assert any(len(w[4]) > RULES["7001"][0] for w in expected)  # some are joined afterwards

    for r in reports:
        cluster.check_cluster(r, open_case=_no_case)
    one_at_a_time = _raised()

    # Two batches, cut in the middle of the biggest warning's reports: the second
    # batch finds what the first raised ongoing, or raises it from reports of both.
    biggest = max(expected, key=lambda w: len(w[4]))
    members = [i for i, r in enumerate(reports) if r.pk in biggest[4]]
    cut = members[len(members) // 2]
    assert 0 < cut < len(reports) - 1
    for part in (reports[:cut], reports[cut:]):
        results = cluster.check_many([_arrival(r) for r in part], open_case=_no_case)
        assert len(results) == sum(1 for r in part if r.category.cluster_reports)
    in_two_batches = _raised()

    assert one_at_a_time == expected
    assert in_two_batches == expected


def test_a_batch_reads_near_reports_once_per_cell(django_assert_max_num_queries):
    """Three reports close together, one category, one cell: one read of near reports
    (and one of the warnings ongoing, one of which arrivals are in a warning already),
    not one a report."""
    cats = _categories()
    rng = random.Random(5)
    rows = [Report(number=f"B-{i}", channel="web", title="test", category=cats["7002"],
                   lon=CENTRE[0] + rng.uniform(-0.0001, 0.0001), lat=CENTRE[1] + rng.uniform(-0.0001, 0.0001),
                   received_at=T0 + timedelta(minutes=i)) for i in range(3)]
    reports = Report.objects.bulk_create(rows)
    for r in reports:
        r.category = cats["7002"]
    with django_assert_max_num_queries(3):
        assert cluster.check_many([_arrival(r) for r in reports], open_case=_no_case) == [None, None, None]


@pytest.mark.parametrize("early", [timedelta(0), timedelta(microseconds=1)])
def test_the_window_holds_its_first_moment_in_a_batch_as_in_the_query(early):
    """Three leaks at one spot, the first exactly one window before the third:
    a warning; a microsecond earlier: none (the single check's query bounds)."""
    cats = _categories()
    times = [T0 - early, T0 + timedelta(minutes=20), T0 + timedelta(minutes=60)]
    reports = Report.objects.bulk_create([
        Report(number=f"W-{i}", channel="web", title="test", category=cats["7001"], lon=CENTRE[0], lat=CENTRE[1],
               received_at=at) for i, at in enumerate(times)])
    for r in reports:
        r.category = cats["7001"]
    results = cluster.check_many([_arrival(r) for r in reports], open_case=_no_case)
    assert results[:2] == [None, None]
    if early:
        assert results[2] is None and not ClusterWarning.objects.exists()
    else:
        warning = ClusterWarning.objects.get()
        assert results[2] == warning and warning.report_count == 3 and warning.started_at == T0
        assert set(warning.reports.values_list("pk", flat=True)) == {r.pk for r in reports}


@pytest.mark.parametrize("seed", [1, 8])
def test_streets_with_pinned_reports_and_calls_give_the_same_warnings_in_a_batch(intake_world, seed):
    """Reports placed in three streets, about half without a point, some with
    a point somewhere in their street (a few pinned and placed nowhere), many
    at the same moment: the warnings by street (and around points) a batch
    raises are those the check one report at a time raises, and no report is
    in two."""
    from chengyun.areas.models import Area

    cats = _categories()
    streets = list(Area.objects.filter(code__in=["100101001", "100101002", "100102001"]).order_by("code"))
    rng = random.Random(seed)
    rows = []
    for k in range(90):
        street = rng.choice(streets)
        code = rng.choice(["7001", "7003"])
        lon = lat = None
        if rng.random() < 0.5:
            lon, lat = f.centre(street.code)
            lon, lat = lon + rng.uniform(-0.004, 0.004), lat + rng.uniform(-0.004, 0.004)
        # Times on 5-minute marks: many reports share their moment, as in feeds with coarse times.
        rows.append(Report(number=f"S{seed}-{k:03d}", channel="hotline" if lon is None else "web", title="test",
                           category=cats[code], lon=lon, lat=lat,
                           area=None if lon is not None and rng.random() < 0.15 else street,
                           received_at=T0 + timedelta(minutes=5 * rng.randint(0, 24))))
    reports = list(Report.objects.select_related("category").filter(
        pk__in=[r.pk for r in Report.objects.bulk_create(rows)]))
    reports.sort(key=lambda r: (r.received_at, r.pk))

    def raised():
        found = sorted((w.category_id, w.by_area, w.area_id, w.started_at,
                        frozenset(w.reports.values_list("pk", flat=True))) for w in ClusterWarning.objects.all())
        ClusterWarning.objects.all().delete()
        return found

    for r in reports:
        cluster.check_cluster(r, open_case=_no_case)
    one_at_a_time = raised()
    cluster.check_many([_arrival(r) for r in reports], open_case=_no_case)
    assert raised() == one_at_a_time
    by_street = [w for w in one_at_a_time if w[1]]
    assert by_street, "the test means something: warnings by street were raised"
    pinned = {r.pk for r in reports if r.lon is not None}
    assert any(w[4] & pinned for w in by_street), "pinned reports counted in a street's warning"
    for w in by_street:
        assert w[4] - pinned, "every street warning holds a call without a point"
    members = [pk for w in one_at_a_time for pk in w[4]]
    assert len(members) == len(set(members)), "a report counts toward one warning only"
