"""Vital signs over JSON at /api/v1/signs: post readings, the registry of
sensor kinds, sensors and indicators, series by range with the rollup
chosen, and warnings (list, acknowledge).

Every write calls one function: :func:`chengyun.signs.ingest.ingest` for
readings, :mod:`chengyun.signs.services` for the registry,
:func:`chengyun.signs.rules.acknowledge` for warnings.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from itertools import islice
from zoneinfo import ZoneInfo

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import Http404
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from chengyun.areas.models import Area
from chengyun.cases.errors import CaseError, CaseForbidden, CaseInvalid
from chengyun.clock import now

from . import queries, services
from .ingest import ingest_columns, parse_ts
from .models import (
    HOUR_MS,
    Indicator,
    Level,
    Rule,
    Sensor,
    SensorKind,
    Source,
    Warning,
    from_ms,
    to_ms,
)
from .models import (
    Status as SignStatus,
)
from .queries import sensor_state, silent_q
from .rules import acknowledge

router = Router(tags=["vital signs"])

MAX_BATCH = 100_000          # readings in one POST
MAX_POINTS = 10_000          # points in one series answer
CSV_TYPES = ("text/csv", "application/csv")


class BatchTooLarge(CaseError):
    status_code = 413
    code = "too_large"


# --------------------------------------------------------------------------- schemas


class RefusalOut(Schema):
    index: int = Field(description="Position of the reading in the batch (0-based; CSV: data rows after the header).")
    sensor: str
    field: str = Field(description="sensor, ts, value, or reading (the item as a whole).")
    reason: str


class IngestOut(Schema):
    received: int
    stored: int = Field(description="New readings written.")
    duplicates: int = Field(description="Readings already stored (same sensor and time), or twice in the batch.")
    refused: int
    refusals: list[RefusalOut] = Field(description="The first 1,000 refused readings with their reasons.")
    warnings_opened: int
    warnings_closed: int


class SourceOut(Schema):
    source: str = Field(description="`user:{id}` for an API account, `mqtt:{client id}` for a subscriber.")
    account: str | None = Field(description="The API account's username, for `user:{id}`.")
    batches: int
    received: int
    stored: int
    duplicates: int
    refused: int
    last_at: datetime
    last_refusal: str = Field(description="The latest reason a reading of this source was refused, if any.")


class KindOut(Schema):
    code: str
    name: str
    name_en: str
    unit: str
    theme: str
    alarm_category: str | None
    sensors: int


class SensorOut(Schema):
    code: str
    name: str
    kind: str
    kind_name: str
    theme: str
    unit: str
    lon: float | None
    lat: float | None
    area: str | None
    area_name: str | None
    department: str | None
    interval_s: int
    virtual: bool
    active: bool
    generated: bool
    indicator: str | None
    status: str = Field(description="ok, warning, alarm, silent or unknown: its indicator's status, or silent "
                                    "when no reading came for longer than its missing-data rule allows (3 "
                                    "intervals without an indicator), as on the board.")
    last_ms: int | None
    last_at: datetime | None
    last_value: float | None


class SensorPage(Schema):
    count: int
    items: list[SensorOut]


class SensorIn(Schema):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    code: str = Field(description="Unique; letters, digits and . : - _ (it is part of the MQTT topic).")
    kind: str = Field(description="Code of a sensor kind (GET /signs/kinds).")
    name: str = ""
    unit: str = Field("", description="Empty: the kind's unit.")
    lon: float | None = Field(None, description="WGS84; the point is located to its deepest area.")
    lat: float | None = None
    area: str | None = Field(None, description="Area code, for a sensor without a point.")
    department: str | None = Field(None, description="Code of the owner department.")
    interval_s: int = Field(300, description="Expected seconds between readings (the missing-data rule counts them).")
    active: bool = True


class SensorPatch(Schema):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    kind: str | None = None
    name: str | None = None
    unit: str | None = None
    lon: float | None = None
    lat: float | None = None
    area: str | None = None
    department: str | None = None
    interval_s: int | None = None
    active: bool | None = None


class Bands(Schema):
    warn_low: float | None
    warn_high: float | None
    alarm_low: float | None
    alarm_high: float | None


class WarningOut(Schema):
    id: int
    indicator: str
    indicator_name: str
    sensor: str
    rule: str
    rule_label: str
    level: str
    open: bool
    started_ms: int
    started_at: datetime
    ended_ms: int | None
    ended_at: datetime | None
    peak_value: float | None
    peak_ms: int | None
    last_value: float | None
    explanation: dict
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    case: str | None
    generated: bool


class WarningPage(Schema):
    count: int
    items: list[WarningOut]


class IndicatorOut(Schema):
    code: str
    name: str
    name_en: str
    theme: str
    source: str
    sensor: str = Field(description="The sensor holding its series (a virtual one for a computed indicator).")
    unit: str
    inputs: list[str]
    aggregate: str
    case_category: str | None
    case_area: str | None
    area: str | None
    bands: Bands
    hysteresis: float
    rate_limit: float | None
    missing_intervals: int
    flatline_minutes: int | None
    flatline_tolerance: float
    anomaly: bool
    anomaly_score: float
    anomaly_clear: float
    alarm_category: str | None
    active: bool
    status: str
    value: float | None = Field(description="The latest value.")
    value_ms: int | None
    value_at: datetime | None
    open_warnings: list[WarningOut]


class IndicatorPage(Schema):
    count: int
    items: list[IndicatorOut]


class RulesIn(Schema):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    warn_low: float | None = None
    warn_high: float | None = None
    alarm_low: float | None = None
    alarm_high: float | None = None
    hysteresis: float | None = Field(None, description="A band warning ends only this far back inside the band.")
    rate_limit: float | None = Field(None, description="Largest change per minute; empty or 0: not used.")
    missing_intervals: int | None = Field(None, description="Silent after this many intervals; 0: not used.")
    flatline_minutes: int | None = Field(None, description="Stuck value: a warning when the readings stay within "
                                                           "flatline_tolerance for this many minutes; empty or 0: "
                                                           "not used.")
    flatline_tolerance: float | None = Field(None, description="Changes up to this much count as no change "
                                                               "(default 0: the same value).")
    anomaly: bool | None = Field(None, description="Learned anomaly detection (robust z per hour of week).")
    anomaly_score: float | None = None
    anomaly_clear: float | None = None
    alarm_category: str | None = Field(None, description="Category of alarm cases; empty: the sensor kind's.")


class IndicatorIn(RulesIn):
    code: str
    name: str = Field(description="Chinese name.")
    name_en: str = ""
    theme: str | None = Field(None, description="water, roads, environment, safety or services; "
                                                "default: the sensor kind's.")
    source: str = Field("sensor", description="sensor (one sensor's readings), aggregate (computed from "
                                              "`inputs`) or cases (counted from cases).")
    sensor: str | None = Field(None, description="source=sensor: the sensor's code.")
    inputs: list[str] = Field(default_factory=list, description="source=aggregate: sensor codes.")
    aggregate: str | None = Field(None, description="source=aggregate: mean, max, min or sum.")
    case_category: str | None = Field(None, description="source=cases: category code counted.")
    case_area: str | None = Field(None, description="source=cases: area code counted.")
    kind: str | None = Field(None, description="Computed: kind of its virtual sensor (default: the first "
                                               "input's; for cases the kind case_count).")
    interval_s: int | None = Field(None, description="Computed: seconds between values (default: the slowest "
                                                     "input, or 3600).")
    active: bool = True


class IndicatorPatch(RulesIn):
    name: str | None = None
    name_en: str | None = None
    theme: str | None = None
    inputs: list[str] | None = None
    aggregate: str | None = None
    case_category: str | None = None
    case_area: str | None = None
    active: bool | None = None


class SeriesWarning(Schema):
    id: int
    rule: str
    level: str
    started_ms: int
    ended_ms: int | None


class SeriesOut(Schema):
    indicator: str
    unit: str
    resolution: str = Field(description="raw, m (minute rollups) or h (hour rollups).")
    start: int
    end: int
    points: list[tuple[int, float, float, float, int]] = Field(
        description="[ts_ms, mean, min, max, count] in time order; raw readings have count 1.")
    warnings: list[SeriesWarning] = Field(description="Warnings of the indicator overlapping the range.")


class AcknowledgeIn(Schema):
    note: str = ""


# --------------------------------------------------------------------------- permissions


def _require_registry_admin(user) -> None:
    if not services.is_registry_admin(user):
        raise CaseForbidden(_("Only administrators may change the sensor registry."))


def _require_covers(user, *sensors: Sensor) -> None:
    for sensor in sensors:
        if not services.may_edit_registry(user, sensor):
            raise CaseForbidden(_("Sensor %(code)s is outside the area you administer.") % {"code": sensor.code})


# --------------------------------------------------------------------------- output


def _ms_param(value: str | None, fld: str) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        return parse_ts(value, ZoneInfo(settings.TIME_ZONE))
    except (TypeError, ValueError, OverflowError):
        raise CaseInvalid(_("Not an RFC 3339 time or milliseconds since the epoch."), field=fld) from None


def _area_path(code: str | None, fld: str = "area") -> str | None:
    if not code:
        return None
    area = Area.objects.filter(code=code).first()
    if area is None:
        raise CaseInvalid(_("Unknown area “%(code)s”.") % {"code": code}, field=fld)
    return area.path


def _choice(value: str | None, choices, fld: str) -> str | None:
    if value and value not in choices:
        raise CaseInvalid(_("Unknown value “%(value)s” (one of %(choices)s).")
                          % {"value": value, "choices": ", ".join(choices)}, field=fld)
    return value or None


def _patch(body: Schema) -> dict:
    """The fields sent; a null yes/no field means "leave as it is"."""
    data = body.model_dump(exclude_unset=True)
    return {k: v for k, v in data.items() if not (v is None and k in ("active", "anomaly"))}


def _page(limit: int, offset: int, most: int = 500) -> tuple[int, int]:
    return max(0, offset), max(1, min(limit, most))


def kind_out(k: SensorKind) -> dict:
    return {"code": k.code, "name": k.name, "name_en": k.name_en, "unit": k.unit, "theme": k.theme,
            "alarm_category": k.alarm_category.code if k.alarm_category_id else None,
            "sensors": getattr(k, "n_sensors", 0)}


def _sensors():
    return Sensor.objects.select_related("kind", "area", "department", "indicator")


def sensor_out(s: Sensor, now_ms: int | None = None) -> dict:
    ind = getattr(s, "indicator", None)  # reverse one-to-one: None without an indicator
    now_ms = now_ms if now_ms is not None else to_ms(now())
    return {
        "code": s.code, "name": s.name, "kind": s.kind.code, "kind_name": s.kind.display_name,
        "theme": s.kind.theme, "unit": s.stored_unit, "lon": s.lon, "lat": s.lat,
        "area": s.area.code if s.area_id else None, "area_name": s.area.display_name if s.area_id else None,
        "department": s.department.code if s.department_id else None, "interval_s": s.interval_s,
        "virtual": s.virtual, "active": s.active, "generated": s.generated,
        "indicator": ind.code if ind else None, "status": sensor_state(s, now_ms),
        "last_ms": s.last_ms, "last_at": from_ms(s.last_ms) if s.last_ms is not None else None,
        "last_value": s.last_value,
    }


def _state_q(state: str, now_ms: int) -> Q:
    """The sensors :func:`~chengyun.signs.queries.sensor_state` shows in ``state``, as a filter."""
    silent = silent_q(now_ms)
    if state == SignStatus.SILENT:
        return silent
    if state in (SignStatus.ALARM, SignStatus.WARNING):
        return Q(indicator__status=state)
    measured = state == SignStatus.OK
    return ~silent & ~Q(indicator__status__in=[SignStatus.ALARM, SignStatus.WARNING, SignStatus.SILENT]) & (
        Q(indicator__status=state) | Q(indicator__isnull=True, last_ms__isnull=not measured))


def _sensor_or_404(code: str) -> Sensor:
    sensor = _sensors().filter(code=code).first()
    if sensor is None:
        raise Http404(_("No sensor %(code)s.") % {"code": code})
    return sensor


def warning_out(w: Warning, ind: Indicator | None = None) -> dict:
    ind = ind or w.indicator
    return {
        "id": w.pk, "indicator": ind.code, "indicator_name": ind.display_name, "sensor": ind.sensor.code,
        "rule": w.rule, "rule_label": str(Rule(w.rule).label), "level": w.level, "open": w.ended_ms is None,
        "started_ms": w.started_ms, "started_at": w.started_at, "ended_ms": w.ended_ms, "ended_at": w.ended_at,
        "peak_value": w.peak_value, "peak_ms": w.peak_ms, "last_value": w.last_value,
        "explanation": w.explanation or {},
        "acknowledged_by": w.acknowledged_by.get_username() if w.acknowledged_by_id else None,
        "acknowledged_at": w.acknowledged_at, "case": w.case.number if w.case_id else None,
        "generated": w.generated,
    }


def _indicators():
    open_warnings = Warning.objects.filter(ended_ms__isnull=True).select_related("acknowledged_by", "case")
    return Indicator.objects.select_related(
        "sensor", "sensor__kind", "sensor__area", "case_category", "case_area", "alarm_category",
    ).prefetch_related("inputs", Prefetch("warnings", queryset=open_warnings, to_attr="open_list"))


def indicator_out(ind: Indicator) -> dict:
    s = ind.sensor
    return {
        "code": ind.code, "name": ind.name, "name_en": ind.name_en, "theme": ind.theme, "source": ind.source,
        "sensor": s.code, "unit": s.stored_unit, "inputs": sorted(x.code for x in ind.inputs.all()),
        "aggregate": ind.aggregate,
        "case_category": ind.case_category.code if ind.case_category_id else None,
        "case_area": ind.case_area.code if ind.case_area_id else None,
        "area": s.area.code if s.area_id else None,
        "bands": {"warn_low": ind.warn_low, "warn_high": ind.warn_high,
                  "alarm_low": ind.alarm_low, "alarm_high": ind.alarm_high},
        "hysteresis": ind.hysteresis, "rate_limit": ind.rate_limit, "missing_intervals": ind.missing_intervals,
        "flatline_minutes": ind.flatline_minutes, "flatline_tolerance": ind.flatline_tolerance,
        "anomaly": ind.anomaly, "anomaly_score": ind.anomaly_score, "anomaly_clear": ind.anomaly_clear,
        "alarm_category": ind.alarm_category.code if ind.alarm_category_id else None,
        "active": ind.active, "status": ind.status,
        "value": s.last_value, "value_ms": s.last_ms, "value_at": from_ms(s.last_ms) if s.last_ms is not None else None,
        "open_warnings": [warning_out(w, ind) for w in getattr(ind, "open_list", [])],
    }


def _indicator_or_404(code: str) -> Indicator:
    ind = _indicators().filter(code=code).first()
    if ind is None:
        raise Http404(_("No indicator %(code)s.") % {"code": code})
    return ind


# --------------------------------------------------------------------------- readings

READINGS_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["readings"],
            "properties": {"readings": {"type": "array", "maxItems": MAX_BATCH, "items": {
                "type": "object", "required": ["sensor", "ts", "value"],
                "properties": {
                    "sensor": {"type": "string", "description": "Sensor code."},
                    "ts": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
                           "description": "RFC 3339 (no zone = city time), or seconds or milliseconds since "
                                          "the epoch."},
                    "value": {"type": "number"},
                }}}},
            "example": {"readings": [{"sensor": "WP-0001", "ts": "2025-06-01T08:00:00+08:00", "value": 0.31}]},
        }},
        "text/csv": {"schema": {"type": "string", "example": "sensor,ts,value\nWP-0001,1748736000000,0.31\n"}},
    },
}


Columns = tuple[list, list, list]  # sensor codes, times and values, as sent


def _check_size(n: int) -> None:
    if n > MAX_BATCH:
        raise BatchTooLarge(_("Too many readings in one batch; send at most %(n)s at a time.")
                            % {"n": f"{MAX_BATCH:,}"}, field="readings")


def _json_columns(body: bytes) -> tuple[Columns, dict[int, tuple[str, str]]]:
    """The readings of a JSON body, parsed with orjson and handed to ingest
    column by column: for 50,000 readings that takes about 12 ms
    (``json.loads``: 24 ms), where a pydantic body takes several times as long
    to validate and hand over as objects (ingest checks each reading anyway,
    with a reason per reading). orjson takes strict JSON only; a body it
    refuses is read again with ``json.loads``, which also takes ``NaN`` and
    ``Infinity``, so that such a reading is still refused alone, with its reason."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise CaseInvalid(_("The body is not JSON."), field="readings") from None
    items = data.get("readings") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CaseInvalid(_("Send an object with a list of readings: {\"readings\": [{\"sensor\", \"ts\", "
                            "\"value\"}, …]}."), field="readings")
    _check_size(len(items))
    bad: dict[int, tuple[str, str]] = {}
    try:  # the usual body: every item an object
        codes = [item.get("sensor") for item in items]
    except AttributeError:
        codes, times, values = [], [], []
        for i, item in enumerate(items):
            if type(item) is not dict:
                bad[i] = (_("A reading is an object with sensor, ts and value."), "reading")
                item = {}
            codes.append(item.get("sensor"))
            times.append(item.get("ts"))
            values.append(item.get("value"))
    else:
        times = [item.get("ts") for item in items]
        values = [item.get("value") for item in items]
    try:
        blank = None in (names := set(codes)) or "" in names
    except TypeError:  # a list or an object as the sensor
        blank = True
    if blank:
        for i, code in enumerate(codes):
            if i not in bad and (code is None or code == ""):
                bad[i] = (_("The reading names no sensor."), "sensor")
    return (codes, times, values), bad


def _csv_columns(body: bytes) -> tuple[Columns, dict[int, tuple[str, str]]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CaseInvalid(_("The CSV body is not UTF-8."), field="readings") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if not all(c in header for c in ("sensor", "ts", "value")):
        raise CaseInvalid(_("The first line of the CSV body must name the columns sensor, ts and value."),
                          field="header")
    at_code, at_ts, at_value = (header.index(c) for c in ("sensor", "ts", "value"))
    rows = list(islice((cells for cells in reader if cells), MAX_BATCH + 1))  # blank lines are skipped
    _check_size(len(rows))
    bad: dict[int, tuple[str, str]] = {}
    try:  # the usual body: every row complete
        codes = [cells[at_code].strip() for cells in rows]
        times = [cells[at_ts] for cells in rows]
        values = [cells[at_value] for cells in rows]
    except IndexError:
        need = max(at_code, at_ts, at_value) + 1
        codes, times, values = [], [], []
        for i, cells in enumerate(rows):
            if len(cells) < need:
                bad[i] = (_("The row has fewer cells than the header."), "reading")
                cells = [None] * need
            codes.append(cells[at_code].strip() if cells[at_code] is not None else None)
            times.append(cells[at_ts])
            values.append(cells[at_value])
    return (codes, times, values), bad


READINGS_DOC = dict(
    response=IngestOut, summary="Post a batch of readings",
    description=(
        "Take in up to 100,000 readings: a JSON body `{\"readings\": [{\"sensor\", \"ts\", \"value\"}, …]}` or a "
        "`text/csv` body whose first line is `sensor,ts,value`. `ts` is an RFC 3339 time (no zone = city "
        "time) or seconds or milliseconds since the epoch. Each reading is checked on its own: unknown or "
        "inactive sensors, values that are not numbers, times in the future or too far in the past are refused "
        "with a reason (`refusals`: index, sensor, field, reason) and the rest of the batch is stored, still "
        "200. A reading already stored (same sensor and time) is counted in `duplicates` and stored once, so a "
        "retry is safe. The batch is written in one transaction before the answer is sent, rollups are updated "
        "and the indicators' rules run (`warnings_opened`, `warnings_closed`). Any authenticated user may post "
        "(bearer token or session); the readings' source is recorded as `user:{id}`. An empty or unreadable "
        "body is 400 naming the field; more than 100,000 readings is 413."
    ),
    openapi_extra={"requestBody": READINGS_BODY},
)


@router.post("/readings", **READINGS_DOC)
def post_readings(request):
    try:
        body = request.body
    except RequestDataTooBig:
        raise BatchTooLarge(_("The body is too large; send at most %(n)s readings at a time.")
                            % {"n": f"{MAX_BATCH:,}"}, field="readings") from None
    if not body.strip():
        raise CaseInvalid(_("The body is empty; send readings as JSON or CSV."), field="readings")
    content_type = (request.content_type or "").lower()
    parse = _csv_columns if content_type in CSV_TYPES else _json_columns
    (codes, times, values), bad = parse(body)
    if not codes:
        raise CaseInvalid(_("The batch holds no readings."), field="readings")
    result = ingest_columns(codes, times, values, source=f"user:{request.user.pk}")
    for refusal in result.refused:
        if refusal.index in bad:
            refusal.reason, refusal.field = bad[refusal.index]
    return result.as_dict()


# The same endpoint at the short address ``/api/v1/readings`` that gateways
# are configured with (docs/sensors.md); ``/api/v1/signs/readings`` stays.
readings_router = Router(tags=["vital signs"])
readings_router.post("", operation_id="post_readings_batch", **READINGS_DOC)(post_readings)


@router.get(
    "/sources", response=list[SourceOut], summary="Readings by source",
    description="What each source sent over the last `hours` hours (default 24, at most 2,160), counted by "
                "arrival: batches, readings received, stored, duplicates and refused, with the latest reason "
                "for a refusal; the sources with refusals first. Registry administrators see every source; "
                "anyone else sees only what their own account sent.",
)
def list_sources(request, hours: int = 24):
    if not 1 <= hours <= 2160:
        raise CaseInvalid(_("hours must be between 1 and 2,160."), field="hours")
    since = (to_ms(now()) // HOUR_MS - hours + 1) * HOUR_MS
    mine = None if services.is_registry_admin(request.user) else f"user:{request.user.pk}"
    return queries.sources(since, only=mine)


# --------------------------------------------------------------------------- kinds and sensors


@router.get("/kinds", response=list[KindOut], summary="Sensor kinds",
            description="What sensors measure (water pressure, manhole cover, PM2.5 …), with unit, theme, the "
                        "category of alarm cases and the number of sensors of each.")
def list_kinds(request):
    kinds = SensorKind.objects.select_related("alarm_category").annotate(n_sensors=Count("sensors"))
    return [kind_out(k) for k in kinds.order_by("theme", "code")]


@router.get(
    "/sensors", response=SensorPage, summary="Sensors",
    description="Sensors by code, filtered by `kind`, `theme`, `area` (the area's whole subtree), `status` (their "
                "indicator's: ok, warning, alarm, silent, unknown), `active` and `virtual`; paged with `limit` (at "
                "most 1,000) and `offset`. Readable by any authenticated user.",
)
def list_sensors(request, kind: str | None = None, theme: str | None = None, area: str | None = None,
                 status: str | None = None, active: bool | None = None, virtual: bool | None = None,
                 limit: int = 100, offset: int = 0):
    qs = _sensors()
    if kind:
        qs = qs.filter(kind__code=kind)
    if theme:
        qs = qs.filter(kind__theme=theme)
    path = _area_path(area)
    if path:
        qs = qs.filter(area_path__startswith=path)
    now_ms = to_ms(now())
    if _choice(status, SignStatus.values, "status"):
        qs = qs.filter(_state_q(status, now_ms))
    if active is not None:
        qs = qs.filter(active=active)
    if virtual is not None:
        qs = qs.filter(virtual=virtual)
    offset, limit = _page(limit, offset, most=1000)
    return {"count": qs.count(),
            "items": [sensor_out(s, now_ms) for s in qs.order_by("code")[offset: offset + limit]]}


@router.post(
    "/sensors", response={201: SensorOut}, summary="Register a sensor",
    description="Administrators only (an area's administrator for sensors located in its subtree). The point "
                "is located to its deepest area. 409 when the code is taken; 400 naming the field for bad input. "
                "Audited.",
)
def create_sensor(request, body: SensorIn):
    _require_registry_admin(request.user)
    with transaction.atomic():
        sensor = services.create_sensor(by=request.user, **body.model_dump())
        _require_covers(request.user, sensor)
    return Status(201, sensor_out(_sensor_or_404(sensor.code)))


@router.get("/sensors/{code}", response=SensorOut, summary="One sensor",
            description="With its area, owner, indicator, status and latest reading.")
def get_sensor(request, code: str):
    return sensor_out(_sensor_or_404(code))


@router.patch(
    "/sensors/{code}", response=SensorOut, summary="Change a sensor",
    description="Only the fields sent change (a new point is located again); the code cannot change. "
                "Administrators only, as for registering. Audited.",
)
def update_sensor(request, code: str, body: SensorPatch):
    _require_registry_admin(request.user)
    sensor = _sensor_or_404(code)
    with transaction.atomic():
        _require_covers(request.user, sensor)
        services.update_sensor(sensor, by=request.user, **_patch(body))
        _require_covers(request.user, sensor)
    return sensor_out(_sensor_or_404(code))


# --------------------------------------------------------------------------- indicators


@router.get(
    "/indicators", response=IndicatorPage, summary="Indicators",
    description="Watched series with current value, status, bands and open warnings; filtered by `theme`, "
                "`status`, `source`, `area` (subtree of its series' area) and `active`; paged.",
)
def list_indicators(request, theme: str | None = None, status: str | None = None, source: str | None = None,
                    area: str | None = None, active: bool | None = None, limit: int = 100, offset: int = 0):
    qs = _indicators()
    if theme:
        qs = qs.filter(theme=theme)
    if _choice(status, SignStatus.values, "status"):
        qs = qs.filter(status=status)
    if _choice(source, Source.values, "source"):
        qs = qs.filter(source=source)
    path = _area_path(area)
    if path:
        qs = qs.filter(sensor__area_path__startswith=path)
    if active is not None:
        qs = qs.filter(active=active)
    offset, limit = _page(limit, offset)
    return {"count": qs.count(), "items": [indicator_out(i) for i in qs.order_by("theme", "code")[offset: offset + limit]]}


@router.post(
    "/indicators", response={201: IndicatorOut}, summary="Register an indicator",
    description="`source=sensor` watches one sensor's readings (`sensor`); `aggregate` is computed from "
                "`inputs` with `aggregate`; `cases` counts cases (`case_category`, `case_area`). A computed "
                "indicator gets a virtual sensor with the indicator's code that holds its values. Bands: "
                "alarm_low ≤ warn_low < warn_high ≤ alarm_high (any may be empty). Administrators only. Audited.",
)
def create_indicator(request, body: IndicatorIn):
    _require_registry_admin(request.user)
    data = body.model_dump(exclude_unset=True)
    data.setdefault("code", body.code)
    data.setdefault("name", body.name)
    data["aggregate"] = data.get("aggregate") or ""
    if data.get("theme") is None:
        data.pop("theme", None)
    with transaction.atomic():
        ind = services.create_indicator(by=request.user, **data)
        _require_covers(request.user, ind.sensor)
    return Status(201, indicator_out(_indicator_or_404(ind.code)))


@router.get("/indicators/{code}", response=IndicatorOut, summary="One indicator",
            description="Current value, status, bands, rules and open warnings.")
def get_indicator(request, code: str):
    return indicator_out(_indicator_or_404(code))


@router.patch(
    "/indicators/{code}", response=IndicatorOut, summary="Change an indicator's rules or names",
    description="Only the fields sent change; code, source and series cannot. The new bands apply from the next "
                "reading. Administrators only. Audited.",
)
def update_indicator(request, code: str, body: IndicatorPatch):
    _require_registry_admin(request.user)
    ind = _indicator_or_404(code)
    with transaction.atomic():
        _require_covers(request.user, ind.sensor)
        services.update_indicator(ind, by=request.user, **_patch(body))
    return indicator_out(_indicator_or_404(code))


@router.get(
    "/indicators/{code}/series", response=SeriesOut, summary="An indicator's values over a range",
    description=(
        "Points `[ts_ms, mean, min, max, count]` between `start` and `end` (RFC 3339, or milliseconds since the "
        "epoch; default: the last 24 hours). `resolution`: `raw` (the readings, count 1), `m` (minute "
        "rollups), `h` (hour rollups) or `auto`: raw for ranges up to 6 hours, minute rollups up to 7 days, "
        "hour rollups beyond — and the next coarser one when the finer would give more than 10,000 points or "
        "holds nothing for the range (pruned already). A sensor reporting once a minute or less often keeps no "
        "minute rollups: its `m` series is its raw readings. "
        "At most 10,000 points: a range that would give more at the chosen resolution is 400 naming `start`. "
        "Raw readings are kept for SIGNS_RAW_DAYS, minute rollups for SIGNS_MINUTE_DAYS, hour rollups for "
        "SIGNS_HOUR_DAYS. The indicator's warnings overlapping the range come along for marking the chart."
    ),
)
def get_series(request, code: str, start: str | None = None, end: str | None = None, resolution: str = "auto"):
    ind = _indicator_or_404(code)
    _choice(resolution, ("auto", "raw", "m", "h"), "resolution")
    end_ms = _ms_param(end, "end")
    end_ms = end_ms if end_ms is not None else to_ms(now())
    start_ms = _ms_param(start, "start")
    start_ms = start_ms if start_ms is not None else end_ms - 24 * HOUR_MS
    if start_ms >= end_ms:
        raise CaseInvalid(_("The end must be after the start."), field="end")
    auto = resolution == "auto"
    chosen = queries.resolution_for(end_ms - start_ms) if auto else resolution
    while True:
        points = queries.points(ind.sensor, chosen, start_ms, end_ms, MAX_POINTS + 1)
        if auto and chosen in queries.COARSER and (len(points) > MAX_POINTS or not points):
            chosen = queries.COARSER[chosen]  # too many points, or the finer data is pruned already
            continue
        if len(points) <= MAX_POINTS:
            break
        raise CaseInvalid(_("The range from start to end holds more than %(n)s points at this resolution; "
                            "narrow it or choose a coarser resolution.") % {"n": f"{MAX_POINTS:,}"}, field="start")
    warnings = (Warning.objects.filter(indicator=ind, started_ms__lt=end_ms)
                .filter(Q(ended_ms__isnull=True) | Q(ended_ms__gte=start_ms)).order_by("started_ms")[:500])
    return {
        "indicator": ind.code, "unit": ind.sensor.stored_unit, "resolution": chosen,
        "start": start_ms, "end": end_ms, "points": points,
        "warnings": [{"id": w.pk, "rule": w.rule, "level": w.level, "started_ms": w.started_ms,
                      "ended_ms": w.ended_ms} for w in warnings],
    }


# --------------------------------------------------------------------------- warnings


class WarningFilter(Schema):
    indicator: str | None = Field(None, description="Indicator code.")
    level: str | None = Field(None, description="warning or alarm.")
    rule: str | None = Field(None, description="band_high, band_low, rate, missing or anomaly.")
    open: bool | None = Field(None, description="true: still going on; false: ended.")
    since: str | None = Field(None, description="Going on at or after this time (RFC 3339 or ms).")
    until: str | None = Field(None, description="Started before this time (RFC 3339 or ms).")
    area: str | None = Field(None, description="Area code: warnings of series located in its subtree.")
    limit: int = 100
    offset: int = 0


@router.get(
    "/warnings", response=WarningPage, summary="Warnings (预警)",
    description="Sensor and indicator warnings, newest first, filtered by indicator, level, rule, open/ended, "
                "area and time: `since`/`until` keep the warnings going on at some time between them. Paged.",
)
def list_warnings(request, f: Query[WarningFilter]):
    qs = Warning.objects.select_related("indicator", "indicator__sensor", "acknowledged_by", "case")
    if f.indicator:
        qs = qs.filter(indicator__code=f.indicator)
    if _choice(f.level, Level.values, "level"):
        qs = qs.filter(level=f.level)
    if _choice(f.rule, Rule.values, "rule"):
        qs = qs.filter(rule=f.rule)
    if f.open is not None:
        qs = qs.filter(ended_ms__isnull=f.open)
    since, until = _ms_param(f.since, "since"), _ms_param(f.until, "until")
    if since is not None:
        qs = qs.filter(Q(ended_ms__isnull=True) | Q(ended_ms__gte=since))
    if until is not None:
        qs = qs.filter(started_ms__lt=until)
    path = _area_path(f.area)
    if path:
        qs = qs.filter(indicator__sensor__area_path__startswith=path)
    offset, limit = _page(f.limit, f.offset)
    return {"count": qs.count(),
            "items": [warning_out(w) for w in qs.order_by("-started_ms", "-pk")[offset: offset + limit]]}


@router.post(
    "/warnings/{warning_id}/acknowledge", response=WarningOut, summary="Acknowledge a warning",
    description="Somebody has seen it and is on it. Operators, dispatchers, supervisors, leaders and "
                "administrators whose area holds the sensor (or whose department owns it); others get 403. "
                "The `note` goes into the audit log. Acknowledging twice keeps the first acknowledgement.",
)
def acknowledge_warning(request, warning_id: int, body: AcknowledgeIn):
    w = (Warning.objects.select_related("indicator", "indicator__sensor", "acknowledged_by", "case")
         .filter(pk=warning_id).first())
    if w is None:
        raise Http404(_("No warning %(id)s.") % {"id": warning_id})
    if not services.may_acknowledge(request.user, w):
        raise CaseForbidden(_("You may not acknowledge this warning."))
    acknowledge(w, by=request.user, note=body.note)
    return warning_out(Warning.objects.select_related("indicator", "indicator__sensor", "acknowledged_by", "case")
                       .get(pk=w.pk))
