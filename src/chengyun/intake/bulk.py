"""Bulk intake: history migration and feeds from other hotline systems.

The same decisions as :func:`chengyun.intake.services.submit`, made for a
batch of reports at once (say 20,000)::

    skip rows already imported (same source and key)
    -> classify the batch (one featurisation, one matrix product)
    -> locate the batch (one vectorised locator query)
    -> in time order, per report: duplicate check against an in-memory
       spatial hash of the open cases -> attach | new case (+ ask a dispatcher)
    -> route the certain new cases (in-memory routing table, equal to
       :func:`chengyun.taxonomy.services.route`) with deadlines (vectorised
       working calendar, equal to :func:`chengyun.cases.services.compute_deadlines`)
    -> one transaction: raw inserts of contacts, cases, reports, handling
       parts, timeline entries and duplicate questions, and ONE audit record

Differences from :func:`submit`, on purpose (they keep a million reports
within a minute):

* a report keeps its original ``received_at``; its case is created, and if
  routed accepted and dispatched, at that time (deadlines count from it);
* the classification explanation has the model, category, confidence and
  threshold, but not the terms and alternatives (computing those per report
  costs more than the classification itself; staff can re-run ``predict``);
* a case gets one timeline entry, ``create`` to its final status (new,
  dispatched or closed), noting the import; a case that gains an imported
  duplicate gets ``report_attached`` as with :func:`submit`;
* one audit record per batch (``report.bulk_import``) with the counts, the
  first and last report number and a SHA-256 digest over the batch's reports
  (:func:`report_digest`, checked by :func:`verify_batch`), instead of one
  record per report and per automatic action;
* no cluster warnings (history would raise warnings about long-past bursts),
  unless ``warnings`` is set (a live feed from another hotline system): then
  the open reports received within their category's window of now are
  checked after each batch, as the live pipeline checks every report; no
  photos;
* rows marked closed in the source system are imported closed, without
  duplicate check or routing;
* open cases that another process creates *during* the import, inside a time
  span the import has already loaded, are not seen by its duplicate check.

Duplicates: candidates are open cases of the same or a sibling category,
and open cases nobody has classified yet, within the category's radius and window, scored exactly as in
:mod:`.dedup`; the text similarity (the only costly part) is computed only
when distance and time alone could lift the pair to the ask threshold.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext as _

from chengyun.areas.locator import get_locator, in_city
from chengyun.areas.models import Area, AreaLevel
from chengyun.audit.services import actor_name, record
from chengyun.cases.calendar import MAX_DAYS, WorkingCalendar
from chengyun.cases.models import (
    AssignmentRole,
    Case,
    CaseAssignment,
    Channel,
    DeadlineState,
    PartStatus,
    TimelineEntry,
)
from chengyun.cases.workflow import OPEN_STATUSES, CaseStatus
from chengyun.clock import now
from chengyun.org.models import Department, DepartmentKind
from chengyun.taxonomy.models import Category, Priority, RoutingRule

from . import cluster, dedup, numbers
from .classifier import active_model
from .dedup import (
    RELATED_MIN_TEXT,
    SIBLING_FACTOR,
    UNCLASSIFIED_FACTOR,
    WEIGHTS,
    address_key,
    outcome_of,
    rank,
    script_of,
)
from .geo import EARTH_RADIUS_M, area_from_address
from .models import DuplicateOutcome, DuplicateSuggestion, Report, ReporterContact, SuggestionStatus
from .services import MAX_DESCRIPTION, SYSTEM_ACTOR, next_ids
from .textfeatures import CharNgramTfidf

log = logging.getLogger(__name__)

BATCH_SIZE = 20_000
FEATURE_SLICE = 5_000
NOT_EMPTY_KEY = """NOT ("idempotency_key" = '')"""  # word for word the condition of the report_idempotency index
SQLITE_CACHE_KIB = 256 * 1024  # the indexes of a growing table stay in memory while importing
AUDIT_ACTION = "report.bulk_import"
DIGEST_FORMAT = "v1"
FIELDS = ("description", "title", "category", "lon", "lat", "address", "received_at", "channel", "external_id",
          "phone", "name", "email", "status", "closed_at")
CLOSED_WORDS = {"closed", "close", "done", "已办结", "办结", "已结案", "结案", "已关闭", "关闭", "已完成"}
OPEN_WORDS = {"", "open", "new", "未办结", "办理中", "处理中", "待处理", "受理", "已受理"}
FUTURE_SLACK = timedelta(hours=1)
FIRST_YEAR = 1900  # an earlier date is a typing error, not history (Open311 takes 1900-2199 too)
# The channel column of other systems' exports (12345 platforms name the way a
# matter came in): the words, casefolded, besides our own values and labels.
CHANNEL_WORDS = {
    Channel.HOTLINE: ("12345", "12345热线", "热线", "热线电话", "市民热线", "电话", "来电", "phone", "telephone", "call"),
    Channel.WEB: ("网站", "网页", "网上", "网络", "门户网站", "政府网站", "微信", "小程序", "app", "手机app", "邮件",
                  "电子邮件", "信箱", "市长信箱", "email", "website", "online"),
    Channel.INSPECTOR: ("网格员", "网格", "巡查", "巡查上报", "城管巡查", "patrol"),
    Channel.SENSOR: ("传感器", "物联网", "感知设备", "监测"),
    Channel.DEPARTMENT: ("部门", "部门系统", "部门转办", "department"),
}
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


# --------------------------------------------------------------------------- rows


@dataclass(slots=True)
class ImportRow:
    """One clean report, ready for the pipeline (see :class:`RowCleaner`)."""

    line: int
    key: str  # the idempotency key: the sender's id, else a digest of the row
    title: str
    description: str
    category_id: int | None  # given in the file
    lon: float | None
    lat: float | None
    address: str
    received_at: datetime  # aware, UTC
    channel: str
    external_id: str = ""
    name: str = ""
    phone: str = ""
    email: str = ""
    closed_at: datetime | None = None  # set: already closed in the sending system
    # Set for a report a machine channel stored as received (:func:`process_received`):
    report_id: int | None = None
    number: str = ""
    area_id: int | None = None  # the area the sender chose (used when there is no point)
    source: str = ""
    generated: bool = False


class Raced(RuntimeError):
    """Another process changed rows this batch was about to write: the batch
    is rolled back and may be prepared again."""


class RowRefused(Exception):
    """A row that cannot be imported; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = str(message)


_DATE_TIME = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]*(\d{1,2})\s*[:：时点]\s*(\d{1,2})\s*分?(?:\s*[:：]?\s*(\d{1,2})(?:\.(\d{1,6}))?\s*秒?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(value, tz: ZoneInfo) -> datetime:
    """ISO 8601, ``2024/5/1 8:00``, ``2024年5月1日 08:00``; without a zone,
    the city's time. Returns an aware UTC datetime; ``ValueError`` if unreadable."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            m = _DATE_TIME.match(text)
            if m is None:
                raise ValueError(text) from None
            y, mo, d, h, mi, s, frac, zone = m.groups()
            dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                          int((frac or "0").ljust(6, "0")))
            if zone:
                dt = datetime.fromisoformat(dt.isoformat() + ("+00:00" if zone == "Z" else zone))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    return "" if value is None else str(value).replace("\x00", "").strip()


class RowCleaner:
    """Check one row of our field names (values as read from a file) and turn
    it into an :class:`ImportRow`; raise :class:`RowRefused` naming the field."""

    def __init__(self, *, channel: str = Channel.HOTLINE, tz: str | None = None, names: dict | None = None):
        """``names``: our field -> the file's column, so that reasons name what the user sees."""
        if channel not in Channel.values:
            raise ValueError(channel)
        self.channel = channel
        self.names = dict(names or {})
        self.channels = {str(c.value): str(c.value) for c in Channel}
        with translation.override("en"):
            self.channels.update({str(c.label).casefold(): str(c.value) for c in Channel})
        with translation.override("zh-hans"):
            self.channels.update({str(c.label).casefold(): str(c.value) for c in Channel})
        for value, words in CHANNEL_WORDS.items():
            self.channels.update({w.casefold(): str(value) for w in words})
        # Made by the platform itself (smart discovery), never imported: no word leads there.
        self.channels = {w: v for w, v in self.channels.items() if v != Channel.DISCOVERY}
        self.tz = ZoneInfo(tz or settings.TIME_ZONE)
        self.now = now()
        self.categories: dict[str, int | None] = {}  # code or name -> id (None: ambiguous)
        rows = list(Category.objects.filter(active=True).values_list("id", "code", "name", "name_en", "parent_id"))
        leaves = {r[0] for r in rows} - {r[4] for r in rows if r[4]}
        names: dict[str, list[int]] = {}
        for pk, _code, name, name_en, _parent in rows:
            for n in {name.strip(), name_en.strip().casefold()} - {""}:
                names.setdefault(n, []).append(pk)
        for n, ids in names.items():
            leaf_ids = [i for i in ids if i in leaves]
            ids = leaf_ids or ids
            self.categories[n] = ids[0] if len(ids) == 1 else None
        for pk, code, *_rest in rows:
            self.categories[code] = pk

    def category(self, value: str) -> int | None:
        if not value:
            return None
        found = self.categories.get(value, False)
        if found is False:
            found = self.categories.get(value.casefold(), False)
        if found is False and " " in value:  # "0101 上水井盖"
            found = self.categories.get(value.split()[0], False)
        if found is None:
            raise RowRefused("category", _("The category “%(value)s” names more than one category; give its code.")
                             % {"value": value})
        if found is False:
            raise RowRefused("category", _("Unknown category “%(value)s”.") % {"value": value})
        return found

    def coordinate(self, raw: dict, name: str, low: float, high: float) -> float | None:
        value = _text(raw, name)
        if value == "":
            return None
        try:
            v = float(value)
        except ValueError:
            raise RowRefused(name, _("%(field)s must be a number.") % {"field": self.name(name)}) from None
        if not math.isfinite(v) or not (low <= v <= high):
            raise RowRefused(name, _("%(field)s must be between %(low)s and %(high)s.")
                             % {"field": self.name(name), "low": low, "high": high})
        return v

    def time(self, raw: dict, name: str) -> datetime | None:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            at = parse_time(value, self.tz)
        except (ValueError, OverflowError):
            raise RowRefused(name, _("%(field)s is not a date and time: “%(value)s”.")
                             % {"field": self.name(name), "value": value}) from None
        if at > self.now + FUTURE_SLACK:
            raise RowRefused(name, _("%(field)s is in the future.") % {"field": self.name(name)})
        if at.year < FIRST_YEAR:
            raise RowRefused(name, _("%(field)s is before the year %(year)s: “%(value)s”.")
                             % {"field": self.name(name), "year": FIRST_YEAR, "value": value})
        return at

    def name(self, field: str) -> str:
        """The field as the file names it (its column), for messages."""
        return self.names.get(field, field)

    def clean(self, raw: dict, line: int) -> ImportRow:
        description, title = _text(raw, "description"), _text(raw, "title")
        if not description and not title:
            raise RowRefused("description", _("Describe the problem: the description is empty."))
        if len(description) > MAX_DESCRIPTION:
            raise RowRefused("description", _("The description is too long (at most %(n)s characters).")
                             % {"n": MAX_DESCRIPTION})
        if len(title) > 200:
            raise RowRefused("title", _("The title is too long (at most 200 characters)."))
        if not title:
            first = description.splitlines()[0]
            title = first if len(first) <= 60 else first[:59] + "…"
        lon = self.coordinate(raw, "lon", -180, 180)
        lat = self.coordinate(raw, "lat", -90, 90)
        if (lon is None) != (lat is None):
            raise RowRefused("lat" if lat is None else "lon", _("Give both latitude and longitude, or neither."))
        if lon == 0 and lat == 0:
            raise RowRefused("lon", _("0, 0 is not a place in the city; leave the coordinates empty instead."))
        received_at = self.time(raw, "received_at") or self.now
        given = _text(raw, "channel")
        channel = self.channels.get(given.casefold()) if given else self.channel
        if channel is None:
            raise RowRefused("channel", _("Unknown channel “%(channel)s”; for example: %(examples)s.") % {
                "channel": given, "examples": "hotline/12345/热线, web/网站/微信, inspector/网格员, sensor/传感器, "
                                              "department/部门"})
        if lon is not None and channel != Channel.SENSOR and not in_city(lon, lat):
            # As every other door: a point outside the city is refused unless an address
            # says where (then the stray point is dropped and the address places the row);
            # not a sensor's (the city's own sensors may stand beyond its boundary).
            if not _text(raw, "address"):
                raise RowRefused("lat", _("The point (%(lat)s, %(long)s) is outside the area this city serves.")
                                 % {"lat": lat, "long": lon})
            lon = lat = None
        status = _text(raw, "status").casefold()
        if status not in CLOSED_WORDS and status not in OPEN_WORDS:
            raise RowRefused("status", _("The status must be open or closed, not “%(value)s”.") % {"value": status})
        closed_at = None
        if status in CLOSED_WORDS:
            closed_at = self.time(raw, "closed_at") or received_at
            if closed_at < received_at:
                raise RowRefused("closed_at", _("%(closed)s is before %(received)s.")
                                 % {"closed": self.name("closed_at"), "received": self.name("received_at")})
        contact = {}
        for name, limit in (("external_id", 120), ("address", 300), ("name", 100), ("phone", 40), ("email", 254)):
            contact[name] = _text(raw, name)
            if len(contact[name]) > limit:
                raise RowRefused(name, _("%(field)s is too long (at most %(n)s characters).")
                                 % {"field": self.name(name), "n": limit})
        if contact["email"] and ("@" not in contact["email"] or " " in contact["email"]):
            raise RowRefused("email", _("This is not an email address."))
        key = contact["external_id"] or "row:" + hashlib.sha256(
            "\x1f".join(_text(raw, k) for k in FIELDS).encode()).hexdigest()[:40]
        return ImportRow(
            line=line, key=key, title=title, description=description, category_id=self.category(_text(raw, "category")),
            lon=lon, lat=lat, address=contact["address"], received_at=received_at, channel=channel,
            external_id=contact["external_id"], name=contact["name"], phone=contact["phone"], email=contact["email"],
            closed_at=closed_at,
        )


# --------------------------------------------------------------------------- routing

_PLACE = "\x00located_in\x00"
_PLACE_JSON = json.dumps(_PLACE)


@dataclass(slots=True)
class _Rule:
    id: int
    category_id: int
    area_id: int | None
    level_id: int | None
    lead_department_id: int | None
    lead_kind_id: int | None
    order: int
    assisting_departments: list[int]
    assisting_kinds: list[int]


@dataclass(slots=True)
class Route:
    rule_id: int | None
    lead_id: int | None
    assisting_ids: list[int]
    explanation: dict
    explanation_json: str = ""  # "located_in" a placeholder; without the closing brace


class Placed:
    """A decision for one area: the decision shared by the areas that route
    alike, with the area's own code as ``located_in``."""

    __slots__ = ("base", "located")

    def __init__(self, base: Route, located: str | None) -> None:
        self.base, self.located = base, located

    @property
    def rule_id(self) -> int | None:
        return self.base.rule_id

    @property
    def lead_id(self) -> int | None:
        return self.base.lead_id

    @property
    def assisting_ids(self) -> list[int]:
        return self.base.assisting_ids

    @property
    def explanation(self) -> dict:
        return {**self.base.explanation, "located_in": self.located}

    @property
    def explanation_json(self) -> str:
        """The explanation as JSON without its closing brace (to append the classification)."""
        return self.base.explanation_json.replace(_PLACE_JSON, json.dumps(self.located, ensure_ascii=False))


class RoutePlanner:
    """:func:`chengyun.taxonomy.services.route` over tables held in memory.

    ``route()`` costs a handful of queries (~3 ms); a city has thousands of
    (category, area) pairs. This gives the same decision and explanation from
    rules and departments loaded once (tests hold the two equal). Areas
    without departments or rules of their own (communities, grid cells) do
    not change a decision, so pairs are reduced to the deepest area that does.
    """

    def __init__(self) -> None:
        self.cat_parent = dict(Category.objects.values_list("id", "parent_id"))
        self.cat_code = dict(Category.objects.values_list("id", "code"))
        self.level_key = dict(AreaLevel.objects.values_list("id", "key"))
        self.kind_key = dict(DepartmentKind.objects.values_list("id", "kind"))
        self.area_code, self.area_level, self.chains = {}, {}, {}
        paths = {}
        for pk, code, level_id, path in Area.objects.values_list("id", "code", "level_id", "path"):
            self.area_code[pk], self.area_level[pk], paths[pk] = code, level_id, path
        for pk, path in paths.items():
            ids = [int(x) for x in path.strip("/").split("/") if x]
            self.chains[pk] = tuple(i for i in ids if i in paths)
        self.dept_code, self.dept_active = {}, {}
        self.by_kind_area: dict[tuple[int, int], int] = {}
        self.kind_areas: dict[int, set[int]] = {}
        for pk, code, kind_id, area_id, active in Department.objects.order_by("code").values_list(
                "id", "code", "kind_id", "area_id", "active"):
            self.dept_code[pk], self.dept_active[pk] = code, active
            if active:  # later (larger code) wins, as in route()'s dict of found departments
                self.by_kind_area[(kind_id, area_id)] = pk
                self.kind_areas.setdefault(kind_id, set()).add(area_id)
        through_d = RoutingRule.assisting_departments.through.objects.order_by("department__code")
        through_k = RoutingRule.assisting_kinds.through.objects.order_by("departmentkind__kind")
        assisting_d, assisting_k = {}, {}
        for rule_id, dept_id in through_d.values_list("routingrule_id", "department_id"):
            assisting_d.setdefault(rule_id, []).append(dept_id)
        for rule_id, kind_id in through_k.values_list("routingrule_id", "departmentkind_id"):
            assisting_k.setdefault(rule_id, []).append(kind_id)
        self.rules: dict[int, list[_Rule]] = {}
        for r in RoutingRule.objects.filter(active=True).values_list(
                "id", "category_id", "area_id", "level_id", "lead_department_id", "lead_kind_id", "order"):
            rule = _Rule(*r, assisting_d.get(r[0], []), assisting_k.get(r[0], []))
            self.rules.setdefault(rule.category_id, []).append(rule)
        self._relevant: dict[int, set[int]] = {}
        self._reduced: dict[tuple[int, int | None], Route] = {}
        self.cache: dict[tuple[int, int | None], Placed] = {}

    def lineage(self, cat_id: int) -> list[int]:
        out, node = [], cat_id
        while node is not None:
            out.append(node)
            node = self.cat_parent.get(node)
        return out

    def relevant(self, cat_id: int) -> set[int]:
        """Areas that can change this category's decision: rule areas and the
        areas of departments of the kinds its rules name."""
        found = self._relevant.get(cat_id)
        if found is None:
            found = set()
            for c in self.lineage(cat_id):
                for rule in self.rules.get(c, ()):
                    if rule.area_id:
                        found.add(rule.area_id)
                    for kind in ([rule.lead_kind_id] if rule.lead_kind_id else []) + rule.assisting_kinds:
                        found |= self.kind_areas.get(kind, set())
            self._relevant[cat_id] = found
        return found

    def route(self, cat_id: int, area_id: int | None) -> Placed:
        key = (cat_id, area_id)
        found = self.cache.get(key)
        if found is not None:
            return found
        chain = self.chains.get(area_id, ()) if area_id else ()
        relevant = self.relevant(cat_id)
        reduced = next((a for a in reversed(chain) if a in relevant), None)
        base = self._reduced.get((cat_id, reduced))
        if base is None:
            base = self._reduced[(cat_id, reduced)] = self._decide(cat_id, self.chains[reduced] if reduced else ())
            if base.lead_id is not None:
                base.explanation["overridden"] = False  # as dispatch_case() adds it
            base.explanation_json = json.dumps({**base.explanation, "located_in": _PLACE}, ensure_ascii=False)[:-1]
        found = self.cache[key] = Placed(base, self.area_code[chain[-1]] if chain else None)
        return found

    def _find_kind(self, kind_id: int, chain: tuple, level_id: int | None) -> int | None:
        candidates = chain if level_id is None else [a for a in chain if self.area_level[a] == level_id]
        for area in reversed(candidates):  # deepest first
            dept = self.by_kind_area.get((kind_id, area))
            if dept is not None:
                return dept
        return None

    def _decide(self, cat_id: int, chain: tuple) -> Route:
        depth_of = {a: i for i, a in enumerate(chain)}
        lineage = self.lineage(cat_id)
        spec = {c: i for i, c in enumerate(lineage)}
        rules = [r for c in lineage for r in self.rules.get(c, ()) if r.area_id is None or r.area_id in depth_of]
        rules.sort(key=lambda r: (spec[r.category_id], -(depth_of.get(r.area_id, -1)), r.order, r.id))
        located = self.area_code[chain[-1]] if chain else None
        skipped = []
        for rule in rules:
            lead = rule.lead_department_id
            if lead is None and rule.lead_kind_id:
                lead = self._find_kind(rule.lead_kind_id, chain, rule.level_id)
            if lead is None or not self.dept_active[lead]:
                skipped.append({
                    "rule": rule.id, "kind": self.kind_key[rule.lead_kind_id] if rule.lead_kind_id else None,
                    "level": self.level_key[rule.level_id] if rule.level_id else None, "reason": "no_department",
                })
                continue
            assisting = [d for d in rule.assisting_departments if self.dept_active[d] and d != lead]
            for kind in rule.assisting_kinds:
                d = self._find_kind(kind, chain, rule.level_id) or self._find_kind(kind, chain, None)
                if d is not None and d != lead and d not in assisting:
                    assisting.append(d)
            return Route(rule.id, lead, assisting, {
                "outcome": "routed", "rule": rule.id, "rule_category": self.cat_code[rule.category_id],
                "category": self.cat_code[cat_id], "inherited": rule.category_id != cat_id,
                "rule_area": self.area_code[rule.area_id] if rule.area_id else None,
                "level": self.level_key[rule.level_id] if rule.level_id else None,
                "lead_kind": self.kind_key[rule.lead_kind_id] if rule.lead_kind_id else None,
                "located_in": located, "lead": self.dept_code[lead], "assisting": [self.dept_code[d] for d in assisting],
                "skipped": skipped,
            })
        return Route(None, None, [], {"outcome": "no_rule", "category": self.cat_code[cat_id], "located_in": located,
                                      "skipped": skipped})


# --------------------------------------------------------------------------- deadlines


def micros(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def hours_micros(hours) -> int:
    return timedelta(hours=float(hours)) // _US


class DeadlineCalculator:
    """:func:`chengyun.cases.services.compute_deadlines` for many start times
    at once, to the microsecond: working time is a piecewise linear clock
    (cumulative working microseconds at each window), so "start + h working
    hours" is two binary searches."""

    def __init__(self, calendar: WorkingCalendar | None = None) -> None:
        self.cal = calendar or WorkingCalendar.from_db()

    def _windows(self, first: date, last_start: int, need: int) -> tuple[np.ndarray, np.ndarray]:
        ws, we = [], []
        day, after = first, 0
        span = (last_start - micros(datetime.combine(first, datetime.min.time(), self.cal.tz))) // 86_400_000_000
        for _day in range(MAX_DAYS + span + 2):
            if self.cal.is_working_day(day):
                for a, b in self.cal.windows:
                    s, e = micros(datetime.combine(day, a, self.cal.tz)), micros(datetime.combine(day, b, self.cal.tz))
                    ws.append(s)
                    we.append(e)
                    if e > last_start:
                        after += e - max(s, last_start)
            if after >= need and after > 0:
                return np.array(ws, np.int64), np.array(we, np.int64)
            day += timedelta(days=1)
        raise ValueError("deadline is more than ten years away")

    def add(self, starts: np.ndarray, hours: np.ndarray, working: np.ndarray) -> np.ndarray:
        """``starts`` and ``hours`` in microseconds (int64); ``working``: count
        in working hours (else calendar hours). Returns the due times (µs)."""
        out = starts + hours
        if working.any():
            s, h = starts[working], hours[working]
            first = datetime.fromtimestamp(int(s.min()) / 1e6, UTC).astimezone(self.cal.tz).date()
            ws, we = self._windows(first, int(s.max()), int(h.max()))
            cum_end = np.cumsum(we - ws)
            cum = cum_end - (we - ws)
            k = np.searchsorted(we, s, side="right")
            target = cum[k] + np.clip(s - ws[k], 0, None) + h
            k2 = np.maximum(np.searchsorted(cum_end, target, side="left"), k)
            out[working] = we[k2] - (cum_end[k2] - target)
        return out


# --------------------------------------------------------------------------- duplicates


def _row_dot(A, i: int, B, j: int) -> float:
    """Cosine similarity of row i of A and row j of B (L2-normalised CSR rows)."""
    a0, a1, b0, b1 = A.indptr[i], A.indptr[i + 1], B.indptr[j], B.indptr[j + 1]
    _common, ia, ib = np.intersect1d(A.indices[a0:a1], B.indices[b0:b1], assume_unique=True, return_indices=True)
    return float(np.dot(A.data[a0:a1][ia], B.data[b0:b1][ib])) if len(ia) else 0.0


_RAD = math.pi / 180


def _scored(e: list, cat: int, age: int, window: int, X, i: int, ask_at: float, weights: dict, where: str,
            closeness: float, script: str):
    """A candidate case's duplicate score for report ``i`` (its text in
    ``script``): ``(score, text, time, category factor)``, or None when even the
    same words could not lift it to ``ask_at`` (the texts are then not
    compared). ``where`` names the place part (distance, or place without a
    point) and ``closeness`` is its value. Texts in different languages are not
    compared: text is then None and the other weights are scaled up, as
    :func:`.dedup.scored` does."""
    factor = 1.0 if e[4] == cat else UNCLASSIFIED_FACTOR if e[4] is None else SIBLING_FACTOR
    tim = max(0.0, 1.0 - age / window) if window else 0.0
    rest = weights[where] * closeness + weights["time"] * tim
    if script and e[10] and script != e[10]:  # not dedup.comparable(), spelt out: called for every candidate
        if factor < 1.0:  # another category counts only with words alike (dedup.related_counts)
            return None
        score = factor * rest / (1.0 - weights["text"])
        return None if score < ask_at else (score, None, tim, factor)
    if factor * (weights["text"] + rest) < ask_at:
        return None
    text = max(0.0, min(1.0, _row_dot(X, i, e[6], e[7])))
    if factor < 1.0 and text < RELATED_MIN_TEXT:
        return None
    return factor * (weights["text"] * text + rest), text, tim, factor


def _text_parts(text: float | None, others: dict) -> dict:
    """The parts of a duplicate explanation, text first (see :func:`.dedup._rounded`)."""
    if text is None:
        return {"text": None, **others, "text_compared": False}
    return {"text": round(text, 4), **others}


UNSORTED = ("u", None)  # the group of open cases nobody has classified yet


class OpenCaseIndex:
    """Open cases by (category group, grid cell) when they have a point, and by
    (category group, address) and (category group, area) for reports without a
    point (:func:`.dedup.find_duplicate` by place).

    A group is a parent's children (siblings are duplicate candidates of each
    other) or a category without parent on its own; its cell is as large as
    the group's largest duplicate radius, so a search looks at 3 x 3 cells.
    Cases without a category are in a group of their own (:data:`UNSORTED`,
    cells as large as the largest radius), searched for every report.
    Entries: ``[since µs, lon, lat, case id, category id, number, matrix,
    row, address key, area id, script]`` (since: :func:`.dedup.active_since`, when
    it was made or came back to the queue; lon and lat None without a point; the
    address key as :func:`.dedup.address_key` makes it, "" for none; the
    script of the case's text as :func:`.dedup.script_of` tells it).
    """

    def __init__(self, features, *, lat_ref: float) -> None:
        self.features = features
        cats = list(Category.objects.values_list("id", "parent_id", "duplicate_radius_m", "duplicate_window_hours"))
        self.group = {pk: ("p", parent) if parent else ("c", pk) for pk, parent, *_ in cats}
        self.radius = {pk: r for pk, _p, r, _w in cats}
        self.radius_deg = {pk: math.degrees(r / EARTH_RADIUS_M) for pk, r in self.radius.items()}
        self.window = {pk: w * 3_600_000_000 for pk, _p, _r, w in cats}
        self.window_hours = {pk: w for pk, _p, _r, w in cats}
        self.max_window = max(self.window.values(), default=0)
        kx = 1.0 / max(0.01, math.cos(math.radians(lat_ref)))
        self.cell = {}
        for pk, group in self.group.items():
            r = max(1.0, float(self.radius[pk]))
            old = self.cell.get(group, (0.0, 0.0))
            dlat = math.degrees(r / EARTH_RADIUS_M)
            if dlat > old[0]:
                self.cell[group] = (dlat, dlat * kx)
        self.cell[UNSORTED] = max(self.cell.values(), default=(1.0, 1.0 * kx))
        self.group[None] = UNSORTED
        self.cells: dict[tuple, list] = {}
        self.places: dict[tuple, list] = {}  # (group, "s", address key) and (group, "a", area id) -> entries
        self.loaded: tuple[int, int] | None = None
        self.size = 0
        self.gone: set[int] = set()  # cases that left the open statuses after they were loaded
        self.entry_of: dict[int, list[list]] = {}  # case id -> its entries (to move one that staff reclassified)
        self.swept: int | None = None  # the last forget_before() that swept the cells
        self._children: dict | None = None  # area id -> its children's ids (for _around)
        self._around_of = None  # the locator they were worked out from
        self._around_cache: dict[int, list[int]] = {}

    def _group_of(self, cat: int | None) -> tuple:
        group = self.group.get(cat)
        if group is None:  # a category made after the index was built: a group of its own until the refresh
            group = self.group[cat] = ("c", cat)
            self.cell.setdefault(group, self.cell[UNSORTED])
        return group

    def add(self, entry: list) -> None:
        self.entry_of.setdefault(entry[3], []).append(entry)
        group = self._group_of(entry[4])
        if entry[1] is not None:
            dlat, dlon = self.cell[group]
            self.cells.setdefault((group, math.floor(entry[1] / dlon), math.floor(entry[2] / dlat)), []).append(entry)
            self.size += 1  # entries in the cells (as _sweep counts them)
        for key in self._place_keys(group, entry):
            self.places.setdefault(key, []).append(entry)

    @staticmethod
    def _place_keys(group: tuple, entry: list) -> list[tuple]:
        """Where an entry is found by place: its address key and its area."""
        keys = [(group, "s", entry[8])] if entry[8] else []
        if entry[9] is not None:
            keys.append((group, "a", entry[9]))
        return keys

    def _around(self, area_id: int) -> list[int]:
        """The areas whose cases are in the same place as a report placed in
        ``area_id`` (street or finer): it, those below it, and those above it down
        to the street (as :func:`.dedup.area_q` asks the database). Worked out at
        lookup, which only reports without a point do, not for every case filed."""
        loc = get_locator()
        if loc is not self._around_of:  # the areas changed (a new locator): work it out again
            self._around_of, self._children, self._around_cache = loc, None, {}
        found = self._around_cache.get(area_id)
        if found is None:
            if self._children is None:
                self._children = {}
                for a in loc.areas:
                    self._children.setdefault(a.parent_id, []).append(a.id)
            info = loc.by_id.get(area_id)
            found, todo = [], [area_id]
            while todo:  # the area and everything below it
                pk = todo.pop()
                found.append(pk)
                todo.extend(self._children.get(pk, ()))
            if info is not None:
                found += [pk for pk in dedup.area_places(info)[0] if pk != area_id]
            self._around_cache[area_id] = found
        return found

    def forget_before(self, t: int) -> None:
        """Drop cases opened before ``t``: no later report can match them.

        :meth:`best` passes over them anyway (by age), so this is for memory
        alone: the index is swept once ``t`` has moved on by an eighth of the
        longest window, not for every batch (the live pipeline's batches are
        small, and sweeping every case for each was a tenth of its time)."""
        if self.loaded is not None:
            self.loaded = (max(self.loaded[0], t), self.loaded[1])
        if self.swept is not None and t - self.swept < self.max_window // 8:
            return
        self._sweep(t)

    def _sweep(self, t: int) -> None:
        self.swept = t
        kept, places = {}, {}
        size = 0
        for key, entries in self.cells.items():
            left = [e for e in entries if e[0] >= t]
            if left:
                kept[key] = left
                size += len(left)
        for key, entries in self.places.items():
            left = [e for e in entries if e[0] >= t]
            if left:
                places[key] = left
        self.cells, self.places, self.size = kept, places, size
        self.entry_of = {pk: es for pk, es in self.entry_of.items() if es[0][0] >= t}

    def discard(self, pk: int) -> None:
        """Take case ``pk`` out, every copy of it (to add it again as it now is:
        reclassified, reopened); a case can be in twice, read by a load and
        again as new, even under two categories."""
        for entry in self.entry_of.pop(pk, ()):
            group = self._group_of(entry[4])
            if entry[1] is not None:
                dlat, dlon = self.cell[group]
                cell = self.cells.get((group, math.floor(entry[1] / dlon), math.floor(entry[2] / dlat)), [])
                before = len(cell)
                cell[:] = [e for e in cell if e[3] != pk]
                self.size -= before - len(cell)
            for key in self._place_keys(group, entry):
                if key in self.places:
                    self.places[key] = [e for e in self.places[key] if e[3] != pk]

    def load(self, lo: int, hi: int) -> int:
        """Make sure the open cases created in [lo, hi] (µs) are in the index
        (a case loaded twice, after an unsorted batch, is harmless)."""
        if self.loaded is not None and lo < self.loaded[0]:
            # Cases before loaded[0] may still be in the cells (the sweep is
            # lazy): drop them, or those read again would be in twice.
            self._sweep(self.loaded[0])
        spans = [(lo, hi)] if self.loaded is None or hi < self.loaded[0] or lo > self.loaded[1] else [
            (lo, self.loaded[0] - 1), (self.loaded[1] + 1, hi)]
        added = 0
        for a, b in spans:
            if a > b:
                continue
            # Only the time range in SQL: given the open statuses too, SQLite
            # walks the (status, due_at) index through every open case. A case
            # back in the queue (reopened) counts from then, as in dedup.find_duplicate.
            start, end = _EPOCH + a * _US, _EPOCH + b * _US
            qs = Case.objects.filter(Q(created_at__gte=start, created_at__lte=end)
                                     | Q(waiting_since__gte=start, waiting_since__lte=end)).values_list(*CASE_FIELDS)
            added += self.add_rows(qs.iterator(chunk_size=5000))
        if self.loaded is None or hi < self.loaded[0] or lo > self.loaded[1]:
            self.loaded = (lo, hi)
        else:
            self.loaded = (min(lo, self.loaded[0]), max(hi, self.loaded[1]))
        return added

    def add_rows(self, rows: Iterable[tuple]) -> int:
        """Add cases given as :data:`CASE_FIELDS`; those not open are left out,
        and so are those with neither a point nor an address nor an area.
        Returns how many were added."""
        rows = [r for r in rows if r[8] in OPEN_STATUSES
                and ((r[2] is not None and r[3] is not None) or r[9] or r[10] is not None)]
        if rows:
            X = self.features.transform([f"{r[6]}\n{r[7]}" for r in rows])
            for j, (pk, number, lon, lat, created, cat, title, text, _status, address, area_id,
                    waiting_since) in enumerate(rows):
                point = lon is not None and lat is not None
                self.add([micros(dedup.active_since(created, waiting_since)), lon if point else None, lat if point else None, pk, cat, number, X, j,
                          address_key(address), area_id, script_of(f"{title}\n{text}")])
        return len(rows)

    def best_by_place(self, cat: int, address: str, area_id: int | None, t: int, X, i: int, ask_at: float,
                      script: str, attach_at: float):
        """:meth:`best` for a report without a point, as :func:`.dedup.find_duplicate`
        by place: the open cases with the same address key, and in the area
        ``area_id`` (None: the area is too wide to match in)."""
        window, radius = self.window[cat], self.radius[cat]
        key = address_key(address)
        lists = []
        around = self._around(area_id) if area_id is not None else []
        for group in (self.group[cat], UNSORTED):
            lists += ([self.places.get((group, "s", key), ())] if key else []) + \
                [self.places.get((group, "a", pk), ()) for pk in around]
        weights, gone, seen = dedup.PLACE_WEIGHTS, self.gone, set()
        best, best_score, best_rank, best_parts, n = None, -1.0, (False, False, -1.0), None, 0
        for entries in lists:
            for e in entries:
                age = t - e[0]
                if e[3] in seen or age < 0 or age > window or e[3] in gone:
                    continue
                seen.add(e[3])
                n += 1
                same_address = bool(key) and e[8] == key
                place, spread = dedup.place_closeness(same_address, area_id, e[9], radius)
                got = _scored(e, cat, age, window, X, i, ask_at, weights, "place", place, script)
                if got is not None and (order := rank(got[0], got[1] is not None, attach_at, ask_at)) > best_rank:
                    best, best_rank, (best_score, text, tim, factor) = e, order, got
                    best_parts = {**_text_parts(text, {"place": round(place, 4), "time": round(tim, 4)}),
                                  "category_factor": factor, **dedup.place_by(same_address, spread)}
        return best, best_score, best_parts, n

    def best(self, cat: int, lon: float, lat: float, t: int, X, i: int, ask_at: float, script: str,
             attach_at: float):
        """-> (best entry or None, score, parts, number of candidates); the report's
        text is in ``script`` (:func:`.dedup.script_of`), and a candidate that
        attaches (score ``attach_at`` or more, texts compared) beats any that asks."""
        radius = self.radius[cat]
        window = self.window[cat]
        lat1 = lat * _RAD
        cos1 = math.cos(lat1)
        r_lat = self.radius_deg[cat]  # the square around the circle, as geo.box()
        r_lon = r_lat / max(0.01, cos1)
        cells, gone = self.cells, self.gone
        best, best_score, best_rank, best_parts, n = None, -1.0, (False, False, -1.0), None, 0
        for group, cx, cy in self._cells_around(cat, lon, lat, r_lon, r_lat):
            entries = cells.get((group, cx, cy))
            if not entries:
                continue
            for e in entries:
                age = t - e[0]
                if age < 0 or age > window or e[3] in gone:
                    continue
                lat2 = e[2] * _RAD
                a = math.sin((lat2 - lat1) / 2) ** 2 + cos1 * math.cos(lat2) * math.sin((e[1] - lon) * _RAD / 2) ** 2
                d = 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
                if d > radius:
                    continue
                n += 1
                dist = 1.0 - d / radius if radius else 1.0
                got = _scored(e, cat, age, window, X, i, ask_at, WEIGHTS, "distance", dist, script)
                if got is not None and (order := rank(got[0], got[1] is not None, attach_at, ask_at)) > best_rank:
                    best, best_rank, (best_score, text, tim, factor) = e, order, got
                    best_parts = {**_text_parts(text, {"distance": round(dist, 4), "time": round(tim, 4)}),
                                  "distance_m": round(d, 1), "category_factor": factor}
        return best, best_score, best_parts, n

    def _cells_around(self, cat: int, lon: float, lat: float, r_lon: float, r_lat: float):
        """The (group, x, y) cells that may hold candidates within the square
        around the circle: the category's group's, then the unclassified cases'."""
        for group in (self.group[cat], UNSORTED):
            dlat, dlon = self.cell[group]
            for cx in range(math.floor((lon - r_lon) / dlon), math.floor((lon + r_lon) / dlon) + 1):
                for cy in range(math.floor((lat - r_lat) / dlat), math.floor((lat + r_lat) / dlat) + 1):
                    yield group, cx, cy


# What the index reads of a case (OpenCaseIndex.add_rows).
CASE_FIELDS = ("id", "number", "lon", "lat", "created_at", "category_id", "title", "description", "status", "address",
               "area_id", "waiting_since")



# --------------------------------------------------------------------------- writing


class _Tables:
    """Raw inserts with ids chosen up front: one multi-row statement stream per
    table (SQLite ``executemany``, PostgreSQL ``COPY``)."""

    def __init__(self) -> None:
        self.vendor = connection.vendor
        self.seconds: dict[str, float] = {}  # time spent inserting, per table
        if self.vendor not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"bulk intake supports SQLite and PostgreSQL, not {self.vendor}")
        if self.vendor == "sqlite":
            with connection.cursor() as cur:
                cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

    def dt(self, value: datetime | None):
        """A datetime as the database takes it (SQLite: Django's UTC text form)."""
        if value is None or self.vendor != "sqlite":
            return value
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")

    def dt_us(self, value: int):
        if self.vendor == "sqlite":
            return (_EPOCH_NAIVE + value * _US).isoformat(" ")
        return _EPOCH + value * _US

    def allocate(self, model, n: int) -> list[int]:
        return next_ids(model, n)

    def reserve(self, model, n: int) -> list[int]:
        """Like :meth:`allocate`, but the ids stay taken when this returns,
        outside any longer transaction: on SQLite the table's AUTOINCREMENT
        counter is moved past them in a transaction of its own (on PostgreSQL
        ``nextval`` does that anyway)."""
        if n == 0 or self.vendor != "sqlite":
            return self.allocate(model, n)
        table = model._meta.db_table
        with transaction.atomic(), connection.cursor() as cur:
            ids = self.allocate(model, n)
            cur.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [ids[-1], table])
            if cur.rowcount == 0:
                cur.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, ids[-1]])
        return ids

    def insert(self, model, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        started = time.perf_counter()
        table = model._meta.db_table
        names = ", ".join(f'"{c}"' for c in columns)
        with connection.cursor() as cur:
            if self.vendor == "sqlite":
                cur.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join(["%s"] * len(columns))})', rows)
            else:
                with cur.cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
        self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - started


def _columns(model) -> tuple[str, ...]:
    return tuple(f.column for f in model._meta.concrete_fields)


def report_digest(rows: Iterable[tuple]) -> str:
    """SHA-256 over a batch's reports, in id order. Each row: (number, case
    number, idempotency key, received_at (a datetime, or microseconds since
    1970-01-01 UTC), category code, lon, lat, duplicate, title, description);
    written as text with received_at in microseconds, fields joined by U+001F,
    rows ended by a newline."""
    h = hashlib.sha256()
    for number, case_number, key, received, code, lon, lat, dup, title, description in rows:
        h.update("\x1f".join((
            number, case_number or "", key, str(received if isinstance(received, int) else micros(received)), code or "",
            "" if lon is None else repr(float(lon)), "" if lat is None else repr(float(lat)), dup, title, description,
        )).encode())
        h.update(b"\n")
    return h.hexdigest()


def verify_batch(audit) -> bool:
    """Recompute a ``report.bulk_import`` record's digest from the reports in the database."""
    data = audit.data
    qs = (Report.objects.filter(source=data["source"], pk__gte=data["first_id"], pk__lte=data["last_id"])
          .order_by("pk").values_list("number", "case__number", "idempotency_key", "received_at", "category__code",
                                      "lon", "lat", "duplicate", "title", "description"))
    return report_digest(qs.iterator(chunk_size=5000)) == data["digest"]


# --------------------------------------------------------------------------- the importer


@dataclass
class Counts:
    rows: int = 0
    reports: int = 0
    cases: int = 0
    attached: int = 0
    asked: int = 0
    routed: int = 0
    closed: int = 0
    already: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class _Batch:
    """One batch on its way through the pipeline. :meth:`BulkImporter.prepare`
    fills the arrays (no database); :meth:`keep` drops rows already imported;
    the per-report loop then works on plain lists."""

    def __init__(self, rows: list[ImportRow]) -> None:
        for r in rows:
            if r.received_at.utcoffset():
                r.received_at = r.received_at.astimezone(UTC)
        rows.sort(key=lambda r: r.received_at)
        self.rows, self.n = rows, len(rows)
        self.texts = [f"{r.title}\n{r.description}" for r in rows]
        self.seconds: dict[str, float] = {}
        self.X = self.P = None
        self.explanations: dict[int, dict] = {}  # row -> classification explanation (live intake only)
        self.arrays: dict[str, np.ndarray] = {}  # pred, conf, given, decided, certain, check, area

    def keep(self, known: set[str]) -> int:
        """Drop rows whose key is known or repeated in the batch; returns how many."""
        seen, keep = set(), []
        for i, r in enumerate(self.rows):
            if r.key not in known and r.key not in seen:
                seen.add(r.key)
                keep.append(i)
        dropped = self.n - len(keep)
        if dropped:
            self.rows = [self.rows[i] for i in keep]
            self.texts = [self.texts[i] for i in keep]
            self.X = self.X[keep]
            if self.P is not None:
                self.P = self.P[keep]
            self.arrays = {k: v[keep] for k, v in self.arrays.items()}
            self.n = len(keep)
        a = self.arrays
        self.t = [micros(r.received_at) for r in self.rows]
        self.pred, self.conf, self.given = a["pred"].tolist(), a["conf"].tolist(), a["given"].tolist()
        self.decided, self.certain, self.check = a["decided"].tolist(), a["certain"].tolist(), a["check"].tolist()
        self.area = a["area"].tolist()
        self.case_of: list[int | None] = [None] * self.n
        self.dup_of = [DuplicateOutcome.NEW] * self.n
        self.dup_json = [""] * self.n
        self.cases: list[tuple] = []  # (row, case id, number, status, route or None)
        self.attached: list[tuple] = []  # (case id, row, score)
        self.suggestions: list[tuple] = []  # (row, case id, candidate case id, score)
        self.case_number: dict[int, str] = {}
        self.deadlines: dict[int, tuple[int, int]] = {}
        return dropped


class _Clock:
    def __init__(self, into: dict) -> None:
        self.into, self.t = into, time.perf_counter()

    def __call__(self, phase: str) -> None:
        t = time.perf_counter()
        self.into[phase] = self.into.get(phase, 0.0) + t - self.t
        self.t = t


@dataclass
class _Writes:
    """What a batch writes: ``(model, columns, rows)`` to insert, the reports'
    rows (inserted or updated, see ``_put_reports``), the audit record."""

    inserts: list[tuple]
    reports: list
    audit: dict  # its first report (first_id) is the record's object


@dataclass
class BatchResult:
    counts: Counts = field(default_factory=Counts)
    first: str = ""
    last: str = ""
    digest: str = ""
    seconds: dict = field(default_factory=dict)


class BulkImporter:
    """Import reports in batches; each :meth:`import_batch` is one transaction.

    ``source`` names the sender (``import:hotline-2024.csv``); with the rows'
    keys it makes the import idempotent.
    """

    def __init__(self, *, source: str, by=None, generated: bool = False, warnings: bool = False) -> None:
        if not source or len(source) > 80:
            raise ValueError("source must be 1..80 characters")
        self.source = source
        self.by = by if by is not None else SYSTEM_ACTOR
        self.person_id = by.pk if by is not None and not isinstance(by, str) else None
        self.actor = actor_name(self.by)
        self.generated = generated
        self.tables = _Tables()
        self.tz = ZoneInfo(settings.TIME_ZONE)
        self.threshold = settings.INTAKE_CONFIDENCE_THRESHOLD
        self.attach_at = settings.DUPLICATE_ATTACH_SCORE
        self.ask_at = settings.DUPLICATE_ASK_SCORE
        self.version, self.model = active_model()
        cats = {c.pk: c for c in Category.objects.all()}
        self.cats = cats
        self.cat_code = {pk: c.code for pk, c in cats.items()}
        self.code_json = {pk: json.dumps(c.code, ensure_ascii=False) for pk, c in cats.items()}
        self.cat_priority = {pk: c.priority for pk, c in cats.items()}
        if self.model is not None:
            by_code = {c.code: pk for pk, c in cats.items()}
            self.model_cat = np.array([by_code.get(code, -1) for code in self.model.codes], np.int64)
            self.features = self.model.features
        else:
            self.model_cat = np.zeros(0, np.int64)
            self.features = None  # fitted on the first batch
        self.locator = get_locator()
        self.loc_ids = np.array([a.id for a in self.locator.areas] or [0], np.int64)
        self.area_path = dict(Area.objects.values_list("id", "path"))
        self.planner = RoutePlanner()
        self.deadlines = DeadlineCalculator()
        self.index: OpenCaseIndex | None = None
        self.totals = Counts()
        self._address_area: dict[str, int | None] = {}
        self._days: dict[int, str] = {}
        self._json_cache: dict = {}
        self._specs: dict[int, tuple[int, int, bool]] = {}
        self._analyze_at = 0
        with translation.override(settings.LANGUAGE_CODE):  # stored: the site's language, not the terminal's
            self.note = _("Imported from %(source)s.") % {"source": source}
        self.attach_note = ""
        # Cluster warnings for rows recent enough that their burst may still be on
        # (a live feed from another hotline system); history raises none.
        self.warnings = warnings
        self.warnings_seen: set[int] = set()  # the warnings its reports raised or joined
        self.warnings_failed: list[tuple[int, str]] = []  # (rows, error) of batches whose check failed
        self._checking = 0
        self._routing = None  # for cluster cases: read at the first one

    # ---------------------------------------------------------------- helpers

    def _day(self, t_us: int) -> str:
        """The city's date (YYYYMMDD) of a moment; cached per UTC quarter hour."""
        q = t_us // 900_000_000
        day = self._days.get(q)
        if day is None:
            day = self._days[q] = f"{datetime.fromtimestamp(q * 900, UTC).astimezone(self.tz):%Y%m%d}"
        return day

    def _area_of_address(self, address: str) -> int | None:
        if address not in self._address_area:
            info = area_from_address(address)
            self._address_area[address] = info.id if info else None
        return self._address_area[address]

    def _statistics(self) -> None:
        """PostgreSQL plans by table statistics, which autovacuum refreshes
        late after a bulk load: without them it takes the reports' ``source``
        index for the idempotency check and reads every report of the source.
        Refreshed at the start and whenever this import has doubled the tables."""
        if connection.vendor != "postgresql" or self.totals.reports < self._analyze_at:
            return
        with connection.cursor() as cur:
            cur.execute(f'ANALYZE "{Report._meta.db_table}", "{Case._meta.db_table}"')
        self._analyze_at = max(2 * self.totals.reports, BATCH_SIZE)

    def _known(self, keys: list[str]) -> set[str]:
        """The keys among ``keys`` this source has already sent (raw SQL: the
        ORM spends longer building a 20,000-value IN than the database answers
        it). The condition is spelled as the unique index's, so that SQLite
        uses that index rather than scanning every report of the source."""
        table = Report._meta.db_table
        found: set[str] = set()
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute(f'SELECT idempotency_key FROM "{table}" WHERE source = %s AND idempotency_key = ANY(%s) '
                            f"AND {NOT_EMPTY_KEY}", [self.source, keys])
                found.update(r[0] for r in cur.fetchall())
                return found
            for s in range(0, len(keys), 900):
                chunk = keys[s:s + 900]
                cur.execute(f'SELECT idempotency_key FROM "{table}" WHERE source = %s AND idempotency_key IN '
                            f'({", ".join(["%s"] * len(chunk))}) AND {NOT_EMPTY_KEY}', [self.source, *chunk])
                found.update(r[0] for r in cur.fetchall())
        return found

    # ---------------------------------------------------------------- the pipeline

    def run(self, rows: Iterable[ImportRow], batch_size: int = BATCH_SIZE,
            on_batch: Callable[[BatchResult], None] | None = None) -> Counts:
        """Import ``rows`` in batches of ``batch_size``, one transaction each."""
        for result, _meta in self.import_batches((chunk, None) for chunk in batches(rows, batch_size)):
            if on_batch:
                on_batch(result)
        return self.totals

    def import_batches(self, items: Iterable[tuple[list[ImportRow], object]]) -> Iterator[tuple[BatchResult, object]]:
        """Import ``(rows, anything)`` items, yielding ``(result, anything)`` once
        each batch is committed. The next batch is classified and located in a
        second thread while the current one is written (the database and numpy
        work without holding the interpreter lock)."""
        items = iter(items)
        item = next(items, None)
        if item is None:
            return
        batch, meta = self.prepare(item[0]), item[1]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-prepare") as pool:
            while batch is not None:
                item = next(items, None)
                future = None

                def start_next(item=item):
                    # Started when the writing begins: before, both threads would
                    # mostly wait for each other's hold on the interpreter.
                    nonlocal future
                    if item is not None and future is None:
                        future = pool.submit(self.prepare, item[0])

                result = self.import_prepared(batch, before_write=start_next)
                start_next()
                yield result, meta
                batch, meta = (future.result(), item[1]) if item is not None else (None, None)

    def import_batch(self, rows: list[ImportRow]) -> BatchResult:
        """Import one batch in one transaction; rows already imported are skipped."""
        return self.import_prepared(self.prepare(rows))

    def prepare(self, rows: list[ImportRow]) -> _Batch:
        """Classify and locate a batch: numpy only, no database (safe in another thread)."""
        b = _Batch(rows)
        clock = _Clock(b.seconds)
        self._classify(b)
        clock("classify")
        self._locate(b)
        clock("locate")
        return b

    def _decide_in_transaction(self) -> bool:
        """Whether the decisions are made inside the batch's transaction (an
        import: yes) or only the writing is (see :mod:`.received`)."""
        return True

    def import_prepared(self, b: _Batch, before_write: Callable[[], None] | None = None) -> BatchResult:
        result = BatchResult()
        result.counts.rows = b.n
        result.seconds.update(b.seconds)
        inside = self._decide_in_transaction()
        gc_was_on = gc.isenabled()
        gc.disable()  # millions of fresh tuples, no cycles: the collector would only rescan them
        try:
            with transaction.atomic() if inside else nullcontext():
                clock = _Clock(result.seconds)
                self._statistics()
                result.counts.already = b.keep(self._known([r.key for r in b.rows]))
                clock("skip imported")
                if b.n:
                    self._addresses(b)
                    self._open_cases(b)
                    clock("open cases")
                    self._decide(b, result.counts)
                    clock("dedup+route")
                    self._deadlines(b)
                    clock("deadlines")
                    self._before_write(b)
                    if before_write is not None:
                        before_write()
                    writes = None
                    if not inside:  # live intake: the rows are built before the write lock is taken
                        writes = self._build(b, result)
                        clock("rows")
                    with nullcontext() if inside else transaction.atomic():
                        self._write(b, result, writes)
                    clock("write")
            if b.n:
                self._after_commit(b)
                clock("commit" if inside else "after commit")  # with the transaction around it all: its COMMIT
        except BaseException:
            self.index = None  # it may hold cases of the rolled-back batch: load afresh
            raise
        finally:
            if gc_was_on:
                gc.enable()
        self.totals.add(result.counts)
        return result

    def _classify(self, b: _Batch) -> None:
        rows, n = b.rows, b.n
        if self.features is None:
            self.features = CharNgramTfidf(min_df=1).fit(b.texts)
        # In slices: featurising holds a (texts x longest text) array per n-gram length.
        X = b.X = sp.vstack([self.features.transform(b.texts[s:s + FEATURE_SLICE])
                             for s in range(0, n, FEATURE_SLICE)], format="csr")
        if self.model is not None:
            P = b.P = self.model.probabilities(X)
            best = P.argmax(axis=1)
            pred, conf = self.model_cat[best], P[np.arange(n), best]
        else:
            pred, conf = np.full(n, -1, np.int64), np.full(n, np.nan, np.float32)
        given = np.array([r.category_id if r.category_id is not None else -1 for r in rows], np.int64)
        has_given = given >= 0
        confident = (pred >= 0) & (conf >= self.threshold)
        decided = np.where(has_given, given, np.where(confident, pred, -1))
        certain = np.where(has_given, ~(confident & (pred != given)), confident)
        check = np.where(decided >= 0, decided, pred)  # submit() checks the suggestion too
        b.arrays.update(pred=pred, conf=conf, given=has_given, decided=decided, certain=certain, check=check)

    def _locate(self, b: _Batch) -> None:
        rows = b.rows
        has_point = np.array([r.lon is not None for r in rows], bool)
        area = np.full(b.n, -1, np.int64)
        if has_point.any():
            lons = np.array([r.lon for r in rows if r.lon is not None], np.float64)
            lats = np.array([r.lat for r in rows if r.lon is not None], np.float64)
            idx = self.locator.locate_many(lons, lats)
            area[has_point] = np.where(idx >= 0, self.loc_ids[np.maximum(idx, 0)], -1)
        b.arrays["area"] = area

    def _addresses(self, b: _Batch) -> None:
        """Reports without a point: the area their address names."""
        for i, r in enumerate(b.rows):
            if r.lon is None and r.area_id is not None:
                b.area[i] = r.area_id
            elif r.lon is None and r.address:
                found = self._area_of_address(r.address)
                b.area[i] = found if found is not None else -1

    def _open_cases(self, b: _Batch) -> None:
        if self.index is None:
            lats = [r.lat for r in b.rows if r.lat is not None]
            self.index = OpenCaseIndex(self.features, lat_ref=float(np.median(lats)) if lats else 30.0)
        index = self.index
        index.forget_before(b.t[0] - index.max_window)
        index.load(b.t[0] - index.max_window, b.t[-1])

    def _decide(self, b: _Batch, c: Counts) -> None:
        """Duplicate check, case or attachment, route: one report at a time, in time order."""
        rows, n, index, planner = b.rows, b.n, self.index, self.planner
        b.report_ids = self._report_ids(b)
        case_ids = self._case_ids(n)
        decided, check, certain, area, t, X = b.decided, b.check, b.certain, b.area, b.t, b.X
        ask_at, attach_at = self.ask_at, self.attach_at
        case_of, dup_of, dup_json = b.case_of, b.dup_of, b.dup_json
        cases, attached, suggestions = b.cases, b.attached, b.suggestions
        day = self._day
        not_checked = '{"reason": "no category or no point: not checked"}'
        closed_json = '{"reason": "closed in the sending system: not checked"}'
        next_case = 0
        texts = b.texts
        for i, r in enumerate(rows):
            cat = decided[i]
            outcome = "new"
            script = script_of(texts[i])
            if r.closed_at is not None:
                dup_json[i] = closed_json
            elif check[i] < 0:
                dup_json[i] = not_checked
            elif r.lon is None:
                entry, score, parts, dup_json[i] = self._place_match(check[i], r.address, area[i], t[i], X, i,
                                                                     script)
                if entry is not None:
                    outcome = outcome_of(score, parts["text"] is not None, attach_at, ask_at)
            else:
                entry, score, parts, candidates = index.best(check[i], r.lon, r.lat, t[i], X, i, ask_at, script,
                                                             attach_at)
                if entry is not None:
                    outcome = outcome_of(score, parts["text"] is not None, attach_at, ask_at)
                dup_json[i] = self._dup_json(check[i], candidates, entry, score, parts)
            if outcome == "attach":
                case_of[i] = entry[3]
                b.case_number[entry[3]] = entry[5]
                dup_of[i] = DuplicateOutcome.ATTACHED
                attached.append((entry[3], i, score))
                continue
            case_id = case_ids[next_case]
            next_case += 1
            number = f"{day(t[i])}{case_id:07d}"
            case_of[i] = case_id
            b.case_number[case_id] = number
            plan = None
            if r.closed_at is not None:
                status = CaseStatus.CLOSED
                c.closed += 1
            else:
                status = CaseStatus.NEW
                if outcome == "ask":
                    dup_of[i] = DuplicateOutcome.ASK
                    suggestions.append((i, case_id, entry[3], score))
                elif certain[i] and cat >= 0 and area[i] >= 0:
                    plan = planner.route(cat, area[i])
                    if plan.lead_id is None:
                        plan = None
                    else:
                        status = CaseStatus.DISPATCHED
                        c.routed += 1
                index.add([t[i], r.lon, r.lat, case_id, cat if cat >= 0 else None, number, X, i,
                           address_key(r.address), area[i] if area[i] >= 0 else None, script])
            cases.append((i, case_id, number, status, plan))
        c.reports, c.cases, c.attached, c.asked = n, len(cases), len(attached), len(suggestions)

    def _deadlines(self, b: _Batch) -> None:
        """compute_deadlines() of every dispatched case, as arrays."""
        routed = [k for k, case in enumerate(b.cases) if case[4] is not None]
        if not routed:
            return
        spec = [self._deadline_spec(b.decided[b.cases[k][0]]) for k in routed]
        starts = np.array([b.t[b.cases[k][0]] for k in routed], np.int64)
        working = np.array([s[2] for s in spec], bool)
        due = self.deadlines.add(starts, np.array([s[0] for s in spec], np.int64), working).tolist()
        response = np.minimum(self.deadlines.add(starts, np.array([s[1] for s in spec], np.int64), working),
                              np.array(due, np.int64)).tolist()  # never after the work's own deadline
        b.deadlines = {k: (due[j], response[j]) for j, k in enumerate(routed)}

    def _deadline_spec(self, cat_id: int) -> tuple[int, int, bool]:
        spec = self._specs.get(cat_id)
        if spec is None:
            cat = self.cats[cat_id]
            # Imported cases have their category's priority: its deadline hours as they are
            # (taxonomy.models.deadline_factor is 1 there).
            spec = self._specs[cat_id] = (hours_micros(Decimal(cat.deadline_hours)),
                                          hours_micros(cat.response_hours), cat.deadline_kind != "calendar")
        return spec

    def _write(self, b: _Batch, result: BatchResult, writes: _Writes | None = None) -> None:
        """The batch's rows into the database, and its audit record. ``writes``:
        the rows built beforehand (:meth:`_build`; live intake builds them before
        taking the write lock), else they are built here."""
        writes = writes if writes is not None else self._build(b, result)
        tables = self.tables
        for model, columns, rows in writes.inserts:
            tables.insert(model, columns, rows)
        self._put_reports(b, writes.reports)
        record(self.audit_action, actor=self.by, object_type="intake.report", object_id=writes.audit["first_id"],
               data=writes.audit)
        self._after_write(b)

    def _build(self, b: _Batch, result: BatchResult) -> _Writes:
        """Every row the batch writes, ids included (:meth:`_ids`), and its audit
        record's data and digest: all of the writing that is not the database's."""
        rows, n, tables = b.rows, b.n, self.tables
        fmt = tables.dt
        at = [fmt(r.received_at) for r in rows]
        acted = self._acted_at(rows, at)
        person, actor, generated = self.person_id, self.actor, self.generated
        decided, given, area, t = b.decided, b.given, b.area, b.t
        by = ["reporter" if given[i] else "classifier" if decided[i] >= 0 else "nobody" for i in range(n)]
        inserts = []

        with_contact = [i for i, r in enumerate(rows) if r.name or r.phone or r.email]
        contact_ids = self._ids(ReporterContact, len(with_contact))
        contact_of = dict(zip(with_contact, contact_ids, strict=True))
        inserts.append((ReporterContact, CONTACT_COLUMNS, [
            # Imported reporters asked for no messages (notify false, no language).
            (pk, rows[i].name, rows[i].phone, rows[i].email, "", "", False, "", at[i])
            for pk, i in zip(contact_ids, with_contact, strict=True)]))

        now_us, share = micros(now()), settings.NEAR_DUE_SHARE
        case_rows, part_rows, timeline_rows = [], [], []
        path, priority_of, deadlines = self.area_path, self.cat_priority, b.deadlines
        timeline_data = {}
        for k, (i, case_id, number, status, plan) in enumerate(b.cases):
            r = rows[i]
            cat = decided[i]
            area_id = area[i] if area[i] >= 0 else None
            accepted = response_due = due = closed = None
            deadline_state = DeadlineState.ON_TIME
            route_json, rule_id, lead = "{}", None, None
            if plan is not None:
                accepted = acted[i]
                due_us, response_us = deadlines[k]
                due, response_due = tables.dt_us(due_us), tables.dt_us(response_us)
                if now_us >= due_us:
                    deadline_state = DeadlineState.OVERDUE
                elif due_us - now_us <= (due_us - t[i]) * share:
                    deadline_state = DeadlineState.NEAR_DUE
                rule_id, lead = plan.rule_id, plan.lead_id
                route_json = (plan.explanation_json + ', "classification": '
                              + self._route_classification_json(b, i, by[i]) + "}")
                part_rows.append((AssignmentRole.LEAD, PartStatus.DISPATCHED, True, acted[i], None, None, "", case_id,
                                  lead))
                for d in plan.assisting_ids:
                    part_rows.append((AssignmentRole.ASSISTING, PartStatus.DISPATCHED, True, acted[i], None, None, "",
                                      case_id, d))
            elif status == CaseStatus.CLOSED:
                closed = fmt(r.closed_at)
            case_rows.append((
                case_id, number, r.title, r.description, priority_of[cat] if cat >= 0 else Priority.NORMAL, status,
                r.channel, r.lon, r.lat, r.address, path.get(area_id, "") if area_id else "", at[i], accepted, accepted,
                None, response_due, due, None, closed, deadline_state, 0, route_json, None, "", generated or r.generated, 0,
                area_id, cat if cat >= 0 else None, person, None, None, rule_id, None,
            ))
            data = timeline_data.get((r.channel, r.source, lead))
            if data is None:
                payload = self._create_payload(r)
                if lead is not None:
                    payload["lead"] = self.planner.dept_code[lead]
                data = timeline_data[(r.channel, r.source, lead)] = json.dumps(payload, ensure_ascii=False)
            timeline_rows.extend(self._case_entries(r, at[i], acted[i], case_id, status, plan, data))
        inserts.append((Case, CASE_COLUMNS, case_rows))

        report_ids, case_of, dup_of, dup_json = b.report_ids, b.case_of, b.dup_of, b.dup_json
        number, report_rows = self._report_rows(b, at, by, contact_of)

        part_ids = self._ids(CaseAssignment, len(part_rows))
        inserts.append((CaseAssignment, PART_COLUMNS, [(pk, *row) for pk, row in zip(part_ids, part_rows, strict=True)]))
        for case_id, i, score in b.attached:
            timeline_rows.append((acted[i], actor, "report_attached", "", "", "", json.dumps(
                {"report": number[i], "channel": rows[i].channel, "score": round(score, 4)}, ensure_ascii=False),
                person, case_id))
        timeline_ids = self._ids(TimelineEntry, len(timeline_rows))
        inserts.append((TimelineEntry, TIMELINE_COLUMNS, [(pk, *row) for pk, row in zip(timeline_ids, timeline_rows,
                                                                                           strict=True)]))
        suggestion_ids = self._ids(DuplicateSuggestion, len(b.suggestions))
        inserts.append((DuplicateSuggestion, SUGGESTION_COLUMNS, [
            (pk, score, dup_json[i], SuggestionStatus.PENDING, acted[i], None, candidate, case_id, None, report_ids[i])
            for pk, (i, case_id, candidate, score) in zip(suggestion_ids, b.suggestions, strict=True)]))

        order = sorted(range(n), key=report_ids.__getitem__)
        first, last = order[0], order[-1]
        result.first, result.last = number[first], number[last]
        result.digest = report_digest(
            (number[i], b.case_number[case_of[i]], rows[i].key, t[i], self.cat_code.get(decided[i]),
             rows[i].lon, rows[i].lat, dup_of[i], rows[i].title, rows[i].description) for i in order)
        audit = {
            "source": self.source, **result.counts.as_dict(), "first": result.first, "last": result.last,
            "first_id": report_ids[first], "last_id": report_ids[last],
            "digest": result.digest, "digest_format": DIGEST_FORMAT, "classifier_version": self.version,
            **self._audit_extra(b),
        }
        return _Writes(inserts, report_rows, audit)

    # ---------------------------------------------------------------- what live intake changes

    audit_action = AUDIT_ACTION

    def _report_ids(self, b: _Batch) -> list[int]:
        return self.tables.allocate(Report, b.n)

    def _case_ids(self, n: int) -> list[int]:
        return self.tables.allocate(Case, n)

    def _create_payload(self, r: ImportRow) -> dict:
        """The data of a new case's ``create`` timeline entry."""
        return {"channel": r.channel, "import": self.source}

    def _acted_at(self, rows: list[ImportRow], at: list) -> list:
        """When the pipeline's own acts on each report (routing, attaching, asking)
        are dated: an import replays history, so at the report's own time."""
        return at

    def _case_entries(self, r: ImportRow, at, acted, case_id: int, status: str, plan: Placed | None,
                      data: str) -> list[tuple]:
        """A new case's timeline: one ``create`` entry to its final status, noting the import."""
        return [(at, self.actor, "create", "", status, self.note, data, self.person_id, case_id)]

    def _ids(self, model, n: int) -> list[int]:
        """Ids for ``n`` new rows of ``model`` (an import: taken under the write
        lock its transaction holds)."""
        return self.tables.allocate(model, n)

    def _report_rows(self, b: _Batch, at: list, by: list[str], contact_of: dict[int, int]) -> tuple[list[str], list]:
        """The batch's reports as rows to insert, and their tracking numbers."""
        rows, t, report_ids, given, conf, pred, area, decided = (
            b.rows, b.t, b.report_ids, b.given, b.conf, b.pred, b.area, b.decided)
        number = numbers.tracking_numbers([self._day(t[i]) for i in range(b.n)], [report_ids[i] for i in range(b.n)])
        return number, [(
            report_ids[i], number[i], r.channel, self.source, r.key, r.external_id, r.title, r.description, given[i],
            None if conf[i] != conf[i] else conf[i], self.version, self._classification_json(b, i, by[i]),
            r.lon, r.lat, r.address, "{}", "", b.dup_of[i], b.dup_json[i], at[i], self.generated,
            area[i] if area[i] >= 0 else None, b.case_of[i], decided[i] if decided[i] >= 0 else None, self.person_id,
            pred[i] if pred[i] >= 0 else None, contact_of.get(i),
        ) for i, r in enumerate(rows)]

    def _put_reports(self, b: _Batch, rows: list) -> None:
        """Write the rows :meth:`_report_rows` built."""
        self.tables.insert(Report, REPORT_COLUMNS, rows)

    def _audit_extra(self, b: _Batch) -> dict:
        return {}

    def _before_write(self, b: _Batch) -> None:
        pass

    def _after_write(self, b: _Batch) -> None:
        pass

    def _after_commit(self, b: _Batch) -> None:
        if self.warnings:
            # The batch is in: a failed check (the database busy, say) must not stop the import
            # or lose its place; it is counted, named in the summary and logged.
            self._checking = 0
            try:
                self._check_clusters(b, recent_only=True)
            except Exception as exc:  # noqa: BLE001 - reported, not swallowed
                log.exception("import %s: cluster check of a batch failed", self.source)
                self.warnings_failed.append((self._checking, f"{type(exc).__name__}: {exc}"[:200]))

    def _check_clusters(self, b: _Batch, *, recent_only: bool = False) -> None:
        """Cluster warnings: the same check as :func:`.services.submit` makes, per
        new report in time order (:func:`.cluster.check_many`). The live
        pipeline runs it for every batch: on SQLite right after the batch's
        transaction, so that the write lock is not held for the reading (each
        warning raised or joined is a transaction of its own); on PostgreSQL in
        the batch's. An import with ``warnings`` runs it after each batch for
        the open reports received within their category's window of now
        (``recent_only``). What the check needs of a report is in the batch;
        its category's cluster rules are read afresh (an administrator may
        have changed them since the pipeline was built)."""
        todo = [i for i, r in enumerate(b.rows)
                if b.decided[i] >= 0 and self.cats[b.decided[i]].cluster_reports and r.closed_at is None
                and (r.lon is not None or b.area[i] >= 0)]  # without a point: check_many counts it by street
        if not todo:
            return
        self._checking = len(todo)
        cats = sorted({b.decided[i] for i in todo})
        with connection.cursor() as cur:
            cur.execute(f'SELECT id, cluster_reports, cluster_radius_m, cluster_window_minutes FROM '
                        f'"{Category._meta.db_table}" WHERE id IN ({", ".join(["%s"] * len(cats))})', cats)
            rules = {pk: rest for pk, *rest in cur.fetchall()}
        at = now()
        arrivals = []
        for i in todo:
            r, cat = b.rows[i], b.decided[i]
            if cat not in rules or (recent_only and r.received_at < at - timedelta(minutes=rules[cat][2])):
                continue
            arrivals.append(cluster.Arrival(b.report_ids[i], cat, r.lon, r.lat, r.received_at,
                                            b.area[i] if b.area[i] >= 0 else None, *rules[cat]))
        self._checking = len(arrivals)  # the rows a failure leaves unchecked
        cluster.check_many(arrivals, open_case=self._open_cluster_case, seen=self.warnings_seen)

    def _open_cluster_case(self, warning) -> Case:
        """:func:`.services._open_cluster_case`, routed from tables this pipeline
        keeps (read at its first warning, as fresh as its own routing tables):
        ``route()`` from the database is about 3 ms, and in a burst warnings come
        one after another (measured: 41 % of the time of raising one)."""
        from chengyun.taxonomy.services import RoutingTables, routing_snapshot

        from .services import _open_cluster_case

        if self._routing is None:
            self._routing = RoutingTables()
        with routing_snapshot(self._routing):
            return _open_cluster_case(warning)

    def _classification_json(self, b: _Batch, i: int, by: str) -> str:
        """The report's ``classification`` (as :func:`services.classify`, without terms)."""
        p, conf, given, certain = b.pred[i], b.conf[i], b.given[i], b.certain[i]
        if p < 0:
            return '{"model": null, "threshold": %s, "decided_by": "%s", "bulk": true}' % (self.threshold, by)
        extra = ', "disagrees": %s' % ("false" if certain else "true") if given else ""
        return '{"model": %s, "category": %s, "confidence": %s, "threshold": %s, "decided_by": "%s"%s, "bulk": true}' % (
            self.version, self.code_json[p], round(conf, 4), self.threshold, by, extra)

    def _route_classification_json(self, b: _Batch, i: int, by: str) -> str:
        """The ``classification`` part of a route explanation (as :func:`services.auto_route`)."""
        p, conf = b.pred[i], b.conf[i]
        return '{"decided_by": "%s", "confidence": %s, "model": %s, "terms": []}' % (
            by, "null" if p < 0 else round(conf, 4), "null" if p < 0 else self.version)

    def _place_match(self, cat: int, address: str, area_id: int, t: int, X, i: int, script: str):
        """A report without a point, matched by place as :func:`.dedup.find_duplicate`
        does: -> (best entry or None, score, parts, ``duplicate_explanation`` JSON)."""
        place = dedup.place_of(area_id if area_id >= 0 else None, address)
        if place is None:
            return None, 0.0, None, json.dumps({"reason": dedup.NOT_CHECKED_PLACE})
        area, address = place
        entry, score, parts, n = self.index.best_by_place(cat, address, area.id if area is not None else None, t, X,
                                                          i, self.ask_at, script, self.attach_at)
        explanation = dedup.place_explanation(area=area, address=address, window_hours=self.index.window_hours[cat],
                                              candidates=n, attach_at=self.attach_at, ask_at=self.ask_at)
        if n:
            explanation["text_compared_only_above"] = self.ask_at
        if entry is not None:
            explanation.update({"best_case": entry[5], "score": round(score, 4), **parts})
            if parts["text"] is None:  # not compared (two languages): the weights the score was made with
                explanation["weights"] = dedup.scaled_weights(explanation["weights"])
        return entry, score, parts, json.dumps(explanation, ensure_ascii=False)

    def _dup_json(self, cat: int, candidates: int, entry, score: float, parts) -> str:
        """The report's ``duplicate_explanation`` (as :func:`dedup.find_duplicate`)."""
        key = (cat, candidates)
        base = self._json_cache.get(key)
        if base is None:
            index = self.index
            explanation = {
                "radius_m": index.radius[cat], "window_hours": index.window_hours[cat], "candidates": candidates,
                "attach_at": self.attach_at, "ask_at": self.ask_at, "weights": WEIGHTS,
            }
            if candidates:
                explanation["text_compared_only_above"] = self.ask_at
            base = self._json_cache[key] = json.dumps(explanation, ensure_ascii=False)
        if entry is None:
            return base
        best = {"best_case": entry[5], "score": round(score, 4), **parts}
        if parts["text"] is None:  # not compared (two languages): the weights the score was made with
            return json.dumps({**json.loads(base), "weights": dedup.scaled_weights(WEIGHTS), **best},
                              ensure_ascii=False)
        return base[:-1] + ", " + json.dumps(best, ensure_ascii=False)[1:]


CASE_COLUMNS = (
    "id", "number", "title", "description", "priority", "status", "channel", "lon", "lat", "address", "area_path",
    "created_at", "accepted_at", "dispatched_at", "responded_at", "response_due_at", "due_at", "done_at", "closed_at",
    "deadline_state", "escalation_level", "route_explanation", "resolved", "satisfaction", "generated", "version",
    "area_id", "category_id", "created_by_id", "escalated_to_id", "merged_into_id", "route_rule_id",
    "waiting_since",  # None: a new case waits since it was created
)
REPORT_COLUMNS = (
    "id", "number", "channel", "source", "idempotency_key", "external_id", "title", "description", "category_given",
    "confidence", "classifier_version", "classification", "lon", "lat", "address", "attributes", "media_url",
    "duplicate", "duplicate_explanation", "received_at", "generated", "area_id", "case_id", "category_id",
    "created_by_id", "suggested_category_id", "contact_id",
)
CONTACT_COLUMNS = ("id", "name", "phone", "email", "device_id", "account_id", "notify", "language", "created_at")
PART_COLUMNS = ("id", "role", "status", "active", "dispatched_at", "started_at", "done_at", "note", "case_id",
                "department_id")
TIMELINE_COLUMNS = ("id", "at", "actor_name", "action", "from_status", "to_status", "note", "data", "actor_id",
                    "case_id")
SUGGESTION_COLUMNS = ("id", "score", "explanation", "status", "created_at", "decided_at", "candidate_id", "case_id",
                      "decided_by_id", "report_id")


def check_columns() -> None:
    """The raw inserts name every column; fail loudly when a model changes."""
    for model, columns in ((Case, CASE_COLUMNS), (Report, REPORT_COLUMNS), (CaseAssignment, PART_COLUMNS),
                           (TimelineEntry, TIMELINE_COLUMNS), (DuplicateSuggestion, SUGGESTION_COLUMNS),
                           (ReporterContact, CONTACT_COLUMNS)):
        if set(_columns(model)) != set(columns):
            raise RuntimeError(f"bulk intake: {model._meta.label} columns changed: {sorted(set(_columns(model)) ^ set(columns))}")


def batches(rows: Iterable, size: int) -> Iterator[list]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
