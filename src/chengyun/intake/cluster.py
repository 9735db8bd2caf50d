"""Cluster warnings (智能发现): many reports of one category, close together,
in a short time, mean something bigger (a burst main, a blocked drain, a
power cut). Per category: ``cluster_reports`` reports within
``cluster_radius_m`` metres and ``cluster_window_minutes`` minutes.

Reports without a point (hotline calls placed by their address) are counted
by street instead, together with the pinned reports of the same street:
``cluster_reports`` reports of the category placed in one street
(``dedup.PLACE_DEPTH``) or in an area inside it, within the window, at least
one of them without a point, raise a warning ``by_area`` for that street;
later reports there join it. Pinned reports alone keep to the radius rule (a
street is wider than any radius). A report with a point first joins a
warning around it, then one of its street; it raises one around it when
enough are within the radius, else one for its street when enough are in the
street and calls without a point are among them.

A warning is ongoing while its case is open (or the open case it was merged
into): once the case is closed (the main repaired), new reports raise a new warning and case, not a silent join
to the closed one. A report counts toward one warning only, so the reports
of a handled burst do not raise another warning, and a spreading burst is
one warning, not several overlapping ones.

:func:`check_cluster` checks one report (``submit()``); :func:`check_many`
checks a batch of them (the intake pipeline) with the same outcome, reading
the near reports once per category and spatial cell instead of once a report."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils.translation import gettext as _

from chengyun.audit.services import record
from chengyun.cases.models import Case
from chengyun.cases.workflow import OPEN_STATUSES
from chengyun.clock import now
from chengyun.taxonomy.models import Category

from .geo import EARTH_RADIUS_M, box, distance_m
from .models import ClusterWarning, Report


@dataclass(slots=True)
class Arrival:
    """What the check needs of a report (stored already, with its category):
    the category's cluster rules as they are now, and, if at hand, the category."""

    pk: int
    category_id: int
    lon: float | None  # None: counted by area (area_id, a street or finer)
    lat: float | None
    at: datetime
    area_id: int | None
    reports: int  # the category's cluster_reports, cluster_radius_m, cluster_window_minutes
    radius_m: int
    window_minutes: int
    category: Category | None = None  # read when a warning is raised, if not given


def check_cluster(report: Report, *, open_case) -> ClusterWarning | None:
    """Add ``report`` to an ongoing warning, or raise a new one when the
    threshold is reached. ``open_case(warning)`` creates the warning's case.
    Reads first; what it writes is one transaction (so that a caller outside
    a transaction holds SQLite's write lock only when there is something to write)."""
    c = report.category
    if c is None or not c.cluster_reports:
        return None
    point = report.lon is not None and report.lat is not None
    found = check_many([Arrival(report.pk, c.pk, report.lon if point else None, report.lat if point else None,
                                report.received_at, report.area_id, c.cluster_reports, c.cluster_radius_m,
                                c.cluster_window_minutes, c)], open_case=open_case)
    return found[0] if found else None


def check_many(arrivals: list[Arrival], *, open_case, seen: set[int] | None = None) -> list[ClusterWarning | None]:
    """:func:`check_cluster` for each of ``arrivals`` (in time order; those of
    categories without cluster rules are left out, and so are those without a
    point outside any street), with the same outcome: the
    warnings that could still be ongoing are read once, the reports near
    each arrival once per category and spatial cell (a burst is one query),
    and the reports of the arrivals' streets once, then picked per arrival
    by the same bounds the single check reads by. ``seen`` collects the ids of
    the warnings raised or joined, as they are (also when a later one fails)."""
    counted = []
    for a in sorted((a for a in arrivals if a.reports), key=lambda a: (a.at, a.pk)):
        street = street_of(a.area_id)
        if a.lon is None and street is None:  # no point, placed no finer than a district: too wide to count
            continue
        counted.append((a, street))
    if not counted:
        return []
    cats = sorted({a.category_id for a, _street in counted})
    since = counted[0][0].at - timedelta(minutes=max(a.window_minutes for a, _street in counted))
    statuses = sorted(OPEN_STATUSES)
    with connection.cursor() as cur:  # mostly there are none: then one raw query, no ORM query built
        # Ongoing: its case is open, or was merged into a case that is (a dispatcher joined it to one).
        in_open = f'IN ({", ".join(["%s"] * len(statuses))})'
        cur.execute(f'SELECT w.id FROM "{ClusterWarning._meta.db_table}" w LEFT JOIN "{Case._meta.db_table}" c '
                    f'ON c.id = w.case_id LEFT JOIN "{Case._meta.db_table}" m ON m.id = c.merged_into_id '
                    f'WHERE w.category_id IN ({", ".join(["%s"] * len(cats))}) AND w.last_report_at >= %s '
                    f'AND (w.case_id IS NULL OR c.status {in_open} OR m.status {in_open})',
                    [*cats, connection.ops.adapt_datetimefield_value(since), *statuses, *statuses])
        ids = [r[0] for r in cur.fetchall()]
    ongoing = list(ClusterWarning.objects.filter(pk__in=ids)) if ids else []  # newest raised first
    # Reports in a warning: those this batch puts into one (the rows read do not say so), and
    # arrivals already in one (raised by an earlier report of the same moment): they count once.
    claimed: set[int] = set(_in_a_warning([a.pk for a, _street in counted]))
    near = _NearReports([a for a, _street in counted if a.lon is not None], claimed)
    in_street = _StreetReports([(a, street) for a, street in counted if street is not None], claimed)
    results = []
    for a, street in counted:
        warning = _check(a, street, near, in_street, ongoing, open_case)
        if warning is not None and seen is not None:
            seen.add(warning.pk)
        results.append(warning)
    return results


def street_of(area_id: int | None) -> int | None:
    """The street (``dedup.PLACE_DEPTH``) holding this area, or None when the
    area is wider (a district) or unknown: where reports are counted by street."""
    return _streets().get(area_id) if area_id is not None else None


def _streets() -> dict[int, int]:
    """Area id -> the street holding it, for every area a street or finer; kept
    with the locator (built again when the area set changes)."""
    from chengyun.areas.locator import get_locator

    from .dedup import PLACE_DEPTH

    loc = get_locator()
    found = getattr(loc, "_cluster_streets", None)
    if found is None:
        found = {info.id: next(a.id for a in loc.chain(info) if a.depth == PLACE_DEPTH)
                 for info in loc.areas if info.depth >= PLACE_DEPTH}
        loc._cluster_streets = found
    return found


def _check(a: Arrival, street: int | None, near: _NearReports, in_street: _StreetReports,
           ongoing: list[ClusterWarning], open_case) -> ClusterWarning | None:
    """One arrival: join a warning around it, else one of its street; else
    raise one around it, else one for its street; else nothing. An arrival
    already in a warning is left there."""
    if a.pk in near.claimed:
        return None
    at, radius = a.at, a.radius_m
    since = at - timedelta(minutes=a.window_minutes)
    joined = None
    if a.lon is not None:
        joined = next((w for w in ongoing if w.category_id == a.category_id and not w.by_area
                       and w.last_report_at >= since and distance_m(a.lon, a.lat, w.lon, w.lat) <= radius), None)
    if joined is None and street is not None:
        joined = next((w for w in ongoing if w.by_area and w.category_id == a.category_id and w.area_id == street
                       and w.last_report_at >= since), None)
    if joined is not None:
        joined.report_count, joined.last_report_at = _join(joined.pk, a.pk, at), max(at, joined.last_report_at)
        near.claimed.add(a.pk)
        return joined
    if a.lon is not None:
        rows = near.of(a)
        if len(rows) >= a.reports:
            lon = sum(r[1] for r in rows) / len(rows)
            lat = sum(r[2] for r in rows) / len(rows)
            return _raised(a, rows, lon, lat, open_case, ongoing, near.claimed)
    if street is not None:
        rows = in_street.of(a, street)
        if len(rows) >= a.reports and any(r[1] is None for r in rows):
            from chengyun.areas.models import Area

            lon, lat = Area.objects.filter(pk=street).values_list("point_lon", "point_lat").get()
            return _raised(replace(a, area_id=street), rows, lon, lat, open_case, ongoing, near.claimed, by_area=True)
    return None


def _raised(a: Arrival, rows, lon, lat, open_case, ongoing: list, claimed: set, *, by_area: bool = False):
    with transaction.atomic():
        warning = _raise(a, rows, lon, lat, open_case, by_area=by_area)
    claimed.update(r[0] for r in rows)
    ongoing.insert(0, warning)  # the newest raised first, as read
    return warning


def _join(warning_id: int, report_id: int, at: datetime) -> int:
    """Add a report to a warning (if not in it yet); its report count and last
    report are updated; returns the count. One transaction, raw SQL: in a burst
    this runs for most reports, and building the ORM's add, count and update
    costs more than running them (nothing listens to the m2m signals)."""
    through, of, to = _LINK, _LINK_WARNING, _LINK_REPORT
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f'INSERT INTO "{through}" ("{of}", "{to}") SELECT CAST(%s AS BIGINT), CAST(%s AS BIGINT) '
                    'WHERE NOT EXISTS '
                    f'(SELECT 1 FROM "{through}" WHERE "{of}" = %s AND "{to}" = %s)',
                    [warning_id, report_id, warning_id, report_id])
        cur.execute(f'SELECT COUNT(*) FROM "{through}" WHERE "{of}" = %s', [warning_id])
        count = cur.fetchone()[0]
        at_db = connection.ops.adapt_datetimefield_value(at)
        cur.execute(f'UPDATE "{ClusterWarning._meta.db_table}" SET report_count = %s, last_report_at = '
                    'CASE WHEN last_report_at > %s THEN last_report_at ELSE %s END WHERE id = %s',
                    [count, at_db, at_db, warning_id])
    return count


class _NearReports:
    """The reports of an arrival's category received in the window up to it
    (``[at - window, at]``) within its radius and in no warning yet, as
    ``(id, lon, lat, received_at)`` newest first (the order the single check's
    query had): what the database holds now, read per category and cell of
    about twice the radius, when a cell's first arrival asks, less those
    ``claimed`` since. Reading all of a category at once would read a
    city-wide one's every report in the window."""

    def __init__(self, arrivals: list[Arrival], claimed: set[int]) -> None:
        self.claimed = claimed
        self.cell_of: dict[int, tuple] = {}
        self.cells: dict[tuple, list] = {}  # cell -> [its arrivals' bounds, the rows read (None: not yet)]
        for a in arrivals:
            bounds = (*box(a.lon, a.lat, a.radius_m), a.at - timedelta(minutes=a.window_minutes), a.at)
            side = math.degrees(2 * a.radius_m / EARTH_RADIUS_M)
            key = (a.category_id, math.floor(a.lat / side),
                   math.floor(a.lon * max(0.01, math.cos(math.radians(a.lat))) / side))
            self.cell_of[id(a)] = (key, bounds)
            self.cells.setdefault(key, [[], None])[0].append(bounds)

    def of(self, a: Arrival) -> list[tuple]:
        key, (min_lon, min_lat, max_lon, max_lat, since, until) = self.cell_of[id(a)]
        cell = self.cells[key]
        if cell[1] is None:
            cell[1] = _read(key[0], cell[0])
        rows = [r for r in cell[1] if since <= r[3] <= until and min_lon <= r[1] <= max_lon
                and min_lat <= r[2] <= max_lat and distance_m(a.lon, a.lat, r[1], r[2]) <= a.radius_m
                and r[0] not in self.claimed]
        rows.sort(key=lambda r: (r[3], r[0]), reverse=True)
        return rows


class _StreetReports:
    """The reports of an arrival's category placed in its street or inside
    it, with or without a point, received in the window up to it and in no
    warning yet, as ``(id, lon, lat, received_at)`` newest first; read for all
    the arrivals' (category, street) pairs in one query, when the first asks."""

    def __init__(self, pairs: list[tuple[Arrival, int]], claimed: set[int]) -> None:
        self.claimed = claimed
        self.spans: dict[tuple, list] = {}  # (category, street) -> [earliest since, latest until]
        for a, street in pairs:
            since = a.at - timedelta(minutes=a.window_minutes)
            span = self.spans.setdefault((a.category_id, street), [since, a.at])
            span[0], span[1] = min(span[0], since), max(span[1], a.at)
        self.rows: dict[tuple, list] | None = None

    def of(self, a: Arrival, street: int) -> list[tuple]:
        if self.rows is None:
            self.rows = self._read()
        since = a.at - timedelta(minutes=a.window_minutes)
        rows = [r for r in self.rows.get((a.category_id, street), ())
                if since <= r[3] <= a.at and r[0] not in self.claimed]
        rows.sort(key=lambda r: (r[3], r[0]), reverse=True)
        return rows

    def _read(self) -> dict[tuple, list]:
        """The calls without a point first (few, and a street counts only with
        one); then the pinned reports of only the streets that have a call."""
        streets = _streets()
        cats = sorted({cat for cat, _street in self.spans})
        ops = connection.ops
        window = [ops.adapt_datetimefield_value(min(s[0] for s in self.spans.values())),
                  ops.adapt_datetimefield_value(max(s[1] for s in self.spans.values()))]
        select = (f'SELECT r.id, r.lon, r.lat, r.received_at, r.category_id, r.area_id FROM "{Report._meta.db_table}" r '
                  f'WHERE r.category_id IN ({", ".join(["%s"] * len(cats))}) AND r.received_at >= %s '
                  f'AND r.received_at <= %s AND {_UNCLAIMED} ')
        rows: dict[tuple, list] = {}

        def keep(found):
            for pk, lon, lat, at, cat, area in found:
                key = (cat, streets.get(area))
                span = self.spans.get(key)
                if span is not None and span[0] <= at <= span[1] and (lon is None or key in rows):
                    rows.setdefault(key, []).append((pk, lon, lat, at))

        keep(_fetch(select + "AND r.lon IS NULL AND r.area_id IS NOT NULL", [*cats, *window]))
        with_calls = {street for _cat, street in rows}
        areas = sorted(area for area, street in streets.items() if street in with_calls)
        for i in range(0, len(areas), AREA_CHUNK):
            chunk = areas[i:i + AREA_CHUNK]
            keep(_fetch(select + f'AND r.lon IS NOT NULL AND r.area_id IN ({", ".join(["%s"] * len(chunk))})',
                        [*cats, *window, *chunk]))
        return rows


def _in_a_warning(report_ids: list[int]) -> list[int]:
    """Those of the reports that are in a warning already."""
    found = []
    with connection.cursor() as cur:
        for i in range(0, len(report_ids), AREA_CHUNK):
            chunk = report_ids[i:i + AREA_CHUNK]
            cur.execute(f'SELECT "{_LINK_REPORT}" FROM "{_LINK}" WHERE '
                        f'"{_LINK_REPORT}" IN ({", ".join(["%s"] * len(chunk))})', chunk)
            found += [r[0] for r in cur.fetchall()]
    return found


def _read(category_id: int, bounds: list[tuple]) -> list[tuple]:
    """Reports of the category in the union of ``bounds`` (raw SQL: this runs
    for many cells a batch, and the ORM took about ten times as long to build
    the query as the database to answer it through the (category, received_at) index)."""
    ops = connection.ops
    params = [category_id, ops.adapt_datetimefield_value(min(b[4] for b in bounds)),
              ops.adapt_datetimefield_value(max(b[5] for b in bounds)),
              min(b[0] for b in bounds), max(b[2] for b in bounds), min(b[1] for b in bounds), max(b[3] for b in bounds)]
    return _fetch(f'SELECT r.id, r.lon, r.lat, r.received_at FROM "{Report._meta.db_table}" r '
                  "WHERE r.category_id = %s AND r.received_at >= %s AND r.received_at <= %s AND r.lon >= %s "
                  f"AND r.lon <= %s AND r.lat >= %s AND r.lat <= %s AND {_UNCLAIMED}", params)


# The warning-report link table and its columns; SQL for "report r is in no
# warning yet" (answered through the link table's report index).
_FIELD = ClusterWarning._meta.get_field("reports")
_LINK, _LINK_WARNING, _LINK_REPORT = _FIELD.m2m_db_table(), _FIELD.m2m_column_name(), _FIELD.m2m_reverse_name()
_UNCLAIMED = f'NOT EXISTS (SELECT 1 FROM "{_LINK}" t WHERE t."{_LINK_REPORT}" = r.id)'
AREA_CHUNK = 5000  # ids a query (SQLite takes 32,766 parameters; PostgreSQL 65,535)


def _fetch(sql: str, params: list) -> list[tuple]:
    """Rows of (id, lon, lat, received_at, …), received_at with its zone."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    if connection.vendor == "sqlite":  # stored as UTC without a zone
        rows = [(pk, lon, lat, at.replace(tzinfo=UTC), *rest) for pk, lon, lat, at, *rest in rows]
    return rows


def _raise(a: Arrival, near, lon, lat, open_case, *, by_area: bool = False) -> ClusterWarning:
    category = a.category or Category.objects.get(pk=a.category_id)
    radius = a.radius_m
    warning = ClusterWarning.objects.create(
        category=category, lon=lon, lat=lat, radius_m=radius, window_minutes=a.window_minutes, threshold=a.reports,
        area_id=a.area_id, started_at=min(r[3] for r in near), raised_at=now(), last_report_at=a.at,
        report_count=len(near), by_area=by_area,
    )
    warning.reports.set([r[0] for r in near])
    warning.case = open_case(warning)
    ClusterWarning.objects.filter(pk=warning.pk).update(case=warning.case)
    record("cluster.raise", obj=warning, actor="intake", data={
        "category": category.code, "reports": len(near), "radius_m": radius, "by_area": by_area,
        "window_minutes": a.window_minutes, "case": warning.case.number if warning.case else None,
    })
    return warning


def warning_title(warning: ClusterWarning) -> str:
    if warning.by_area:
        return _("Smart discovery: %(count)s reports of “%(category)s” in %(area)s in %(minutes)s minutes") % {
            "count": warning.report_count, "category": warning.category.display_name,
            "area": warning.area.display_name, "minutes": warning.window_minutes,
        }
    return _("Smart discovery: %(count)s reports of “%(category)s” within %(radius)s m in %(minutes)s minutes") % {
        "count": warning.report_count, "category": warning.category.display_name, "radius": warning.radius_m,
        "minutes": warning.window_minutes,
    }
