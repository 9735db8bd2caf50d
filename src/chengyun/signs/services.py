"""Writing the vital-signs registry: sensors and indicators.

Every change to a sensor or an indicator goes through one function here (the
JSON API, the admin and ``chengyun import-sensors`` all call them). Each one
validates its input (:class:`~chengyun.cases.errors.CaseInvalid` naming the
field), locates a sensor's point in the area tree (deepest area and its path,
used by the area filters), writes, and appends an audit record in the same
transaction.

A computed indicator (from other sensors, or from case statistics) gets a
*virtual* sensor of its own, with the indicator's code: the computation writes
its values there, so storage, rollups, series and rules are the same as for a
device.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Model
from django.utils.translation import gettext as _

from chengyun.areas.models import Area
from chengyun.areas.services import locate
from chengyun.audit.services import record
from chengyun.cases.errors import CaseConflict, CaseError, CaseInvalid
from chengyun.cases.services import check_point
from chengyun.org import scope
from chengyun.org.models import Department, Role
from chengyun.taxonomy.models import Category

from .ingest import forget_sensors
from .models import Aggregate, Indicator, Sensor, SensorKind, Source, Theme

# Codes go into MQTT topics (city/{code}/reading) and CSV cells: no spaces,
# slashes, wildcards or commas.
CODE_RE = re.compile(r"^[\w.:-]+$")
MAX_INTERVAL_S = 366 * 86_400
MAX_MISSING_INTERVALS = 10_000
MAX_FLATLINE_MINUTES = 30 * 24 * 60  # a flat stretch is looked for in the stored readings: at most a month
# The kind of the virtual sensors of indicators counted from cases (made when first needed).
CASES_KIND = "case_count"
CASES_INTERVAL_S = 3600

SENSOR_FIELDS = ("name", "kind", "unit", "lon", "lat", "area", "department", "interval_s", "active", "generated")
BAND_FIELDS = ("warn_low", "warn_high", "alarm_low", "alarm_high")
RULE_FIELDS = (*BAND_FIELDS, "hysteresis", "rate_limit", "missing_intervals", "flatline_minutes",
               "flatline_tolerance", "anomaly", "anomaly_score", "anomaly_clear")
INDICATOR_FIELDS = ("name", "name_en", "theme", "alarm_category", "active", "aggregate", "case_category",
                    "case_area", *RULE_FIELDS)
RULE_DEFAULTS = {"warn_low": None, "warn_high": None, "alarm_low": None, "alarm_high": None, "hysteresis": 0.0,
                 "rate_limit": None, "missing_intervals": 3, "flatline_minutes": None, "flatline_tolerance": 0.0,
                 "anomaly": False, "anomaly_score": 6.0, "anomaly_clear": 3.0}
# Those who act on a warning; a leader watches (read only, as everywhere).
ACK_ROLES = {Role.OPERATOR, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN}
TRUE = {"1", "true", "yes", "y", "t", "on", "是"}
FALSE = {"0", "false", "no", "n", "f", "off", "否", ""}


# --------------------------------------------------------------------------- who may


def is_registry_admin(user) -> bool:
    """Superusers and administrators of the city or of an area."""
    if user.is_superuser:
        return True
    return any(a.role == Role.ADMIN and not a.department_id for a in scope.assignments(user))


def may_edit_registry(user, sensor: Sensor) -> bool:
    """City-wide administrators for any sensor, an area's administrators for
    sensors located in its subtree."""
    if user.is_superuser:
        return True
    for a in scope.assignments(user):
        if a.role != Role.ADMIN or a.department_id:
            continue
        if not a.area_id or (sensor.area_path and sensor.area_path.startswith(a.area.path)):
            return True
    return False


def may_acknowledge(user, warning) -> bool:
    """Operators, dispatchers, supervisors and administrators (not leaders: they watch) whose
    area holds the warning's sensor, or whose department owns it."""
    if user.is_superuser:
        return True
    sensor = warning.indicator.sensor
    for a in scope.assignments(user):
        if a.role not in ACK_ROLES:
            continue
        if a.department_id:
            if a.department_id == sensor.department_id:
                return True
        elif not a.area_id or (sensor.area_path and sensor.area_path.startswith(a.area.path)):
            return True
    return False


# --------------------------------------------------------------------------- cleaning values


def clean_code(value, fld: str = "code", max_length: int = 60) -> str:
    code = str(value if value is not None else "").strip()
    if not code:
        raise CaseInvalid(_("A code is required."), field=fld)
    if len(code) > max_length:
        raise CaseInvalid(_("The code is too long (at most %(n)s characters).") % {"n": max_length}, field=fld)
    if not CODE_RE.match(code):
        raise CaseInvalid(_("A code may hold letters, digits and . : - _ only (no spaces, slashes or commas)."),
                          field=fld)
    return code


def _text(value, fld: str, max_length: int, *, required: bool = False) -> str:
    text = str(value if value is not None else "").strip()
    if required and not text:
        raise CaseInvalid(_("This field is required."), field=fld)
    if len(text) > max_length:
        raise CaseInvalid(_("Too long (at most %(n)s characters).") % {"n": max_length}, field=fld)
    return text


def _number(value, fld: str, *, minimum: float | None = None, positive: bool = False) -> float | None:
    """A finite number, or None for an empty value; numbers as text are fine."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise CaseInvalid(_("Not a number."), field=fld)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CaseInvalid(_("Not a number."), field=fld) from None
    if not math.isfinite(number):
        raise CaseInvalid(_("Not a number."), field=fld)
    if minimum is not None and number < minimum:
        raise CaseInvalid(_("Must be at least %(min)s.") % {"min": minimum}, field=fld)
    if positive and number <= 0:
        raise CaseInvalid(_("Must be greater than 0."), field=fld)
    return number


def _integer(value, fld: str, *, minimum: int, maximum: int) -> int | None:
    number = _number(value, fld)
    if number is None:
        return None
    if number != int(number):
        raise CaseInvalid(_("Must be a whole number."), field=fld)
    if not (minimum <= number <= maximum):
        raise CaseInvalid(_("Must be between %(min)s and %(max)s.") % {"min": minimum, "max": maximum}, field=fld)
    return int(number)


def _boolean(value, fld: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise CaseInvalid(_("Not a yes/no value (use true or false)."), field=fld)


def _by_code(model, value, fld: str, message: str):
    """An object given as itself or by its code; None for an empty value."""
    if value is None or value == "":
        return None
    if isinstance(value, model):
        return value
    obj = model.objects.filter(code=str(value).strip()).first()
    if obj is None:
        raise CaseInvalid(message % {"code": value}, field=fld)
    return obj


def _kind(value, fld: str = "kind") -> SensorKind:
    kind = _by_code(SensorKind, value, fld, _("Unknown sensor kind “%(code)s”."))
    if kind is None:
        raise CaseInvalid(_("The sensor kind is required."), field=fld)
    return kind


def _department(value) -> Department | None:
    return _by_code(Department, value, "department", _("Unknown department “%(code)s”."))


def _area(value, fld: str = "area") -> Area | None:
    return _by_code(Area, value, fld, _("Unknown area “%(code)s”."))


def _category(value, fld: str) -> Category | None:
    return _by_code(Category, value, fld, _("Unknown category “%(code)s”."))


def _theme(value) -> str:
    theme = str(value or "").strip()
    if theme not in Theme.values:
        raise CaseInvalid(_("Unknown theme “%(theme)s” (one of %(themes)s).")
                          % {"theme": theme, "themes": ", ".join(Theme.values)}, field="theme")
    return theme


def locate_point(lon: float, lat: float) -> Area | None:
    """The deepest area holding the point, or None outside every area."""
    chain = locate(lon, lat)
    return Area.objects.get(pk=chain[-1].id) if chain else None


def common_area(areas) -> Area | None:
    """The deepest area holding all of ``areas`` (None if they share none)."""
    areas = list(areas)
    if not areas or any(a is None for a in areas):
        return None
    paths = [a.path.strip("/").split("/") for a in areas]
    shared = []
    for parts in zip(*paths, strict=False):
        if len(set(parts)) != 1:
            break
        shared.append(parts[0])
    return Area.objects.filter(pk=int(shared[-1])).first() if shared else None


def _plain(value):
    return value.pk if isinstance(value, Model) else value


def _shown(value):
    if isinstance(value, Model):
        return getattr(value, "code", value.pk)
    return value


# --------------------------------------------------------------------------- sensors


def clean_sensor(data: dict, *, instance: Sensor | None = None) -> dict:
    """The model values of a sensor from ``data`` (over ``instance``'s current
    values for an update). Kind, department and area may be objects or codes;
    a point is located to its deepest area (an explicit area is used only for a
    sensor without a point)."""
    unknown = set(data) - set(SENSOR_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise CaseInvalid(_("Unknown field “%(field)s”.") % {"field": name}, field=name)
    current = {f: getattr(instance, f) for f in SENSOR_FIELDS} if instance is not None else {
        "name": "", "kind": None, "unit": "", "lon": None, "lat": None, "area": None, "department": None,
        "interval_s": 300, "active": True, "generated": False}
    raw = {**current, **data}
    out = {
        "name": _text(raw["name"], "name", 120),
        "kind": _kind(raw["kind"]),
        "unit": _text(raw["unit"], "unit", 20),
        "department": _department(raw["department"]),
        "active": _boolean(raw["active"], "active"),
        "generated": _boolean(raw["generated"], "generated"),
    }
    interval = _integer(raw["interval_s"], "interval_s", minimum=1, maximum=MAX_INTERVAL_S)
    out["interval_s"] = interval if interval is not None else 300
    lon, lat = _number(raw["lon"], "lon"), _number(raw["lat"], "lat")
    check_point(lon, lat)
    if lon is not None:
        area = locate_point(lon, lat)
    else:
        area = _area(raw["area"])
    out.update(lon=lon, lat=lat, area=area, area_path=area.path if area else "")
    return out


def _sensor_data(sensor: Sensor) -> dict:
    return {"code": sensor.code, "kind": sensor.kind.code, "lon": sensor.lon, "lat": sensor.lat,
            "area": sensor.area.code if sensor.area_id else None,
            "department": sensor.department.code if sensor.department_id else None,
            "interval_s": sensor.interval_s, "virtual": sensor.virtual, "active": sensor.active}


def _sensors_changed() -> None:
    # The ingest path caches code -> id of active sensors per process.
    forget_sensors()
    transaction.on_commit(forget_sensors)


@transaction.atomic
def create_sensor(*, code, by=None, virtual: bool = False, **fields) -> Sensor:
    """Register a sensor. ``fields``: name, kind (required), unit, lon, lat,
    area (only without a point), department, interval_s, active, generated."""
    code = clean_code(code)
    if Sensor.objects.filter(code=code).exists():
        raise CaseConflict(_("A sensor with the code “%(code)s” exists already.") % {"code": code}, field="code")
    values = clean_sensor(fields)
    sensor = Sensor.objects.create(code=code, virtual=virtual, **values)
    record("signs.sensor.create", actor=by, obj=sensor, data=_sensor_data(sensor))
    _sensors_changed()
    return sensor


@transaction.atomic
def update_sensor(sensor: Sensor, *, by=None, **changes) -> tuple[Sensor, list[str]]:
    """Change a sensor; returns it with the names of the fields that changed
    (nothing is written or audited when none did). The code cannot change."""
    if "code" in changes:
        if str(changes.pop("code") or "").strip() != sensor.code:
            raise CaseInvalid(_("The code of a sensor cannot change."), field="code")
    values = clean_sensor(changes, instance=sensor)
    changed = [f for f, v in values.items() if _plain(getattr(sensor, f)) != _plain(v)]
    if not changed:
        return sensor, []
    before = {f: _shown(getattr(sensor, f)) for f in changed}
    for f in changed:
        setattr(sensor, f, values[f])
    sensor.save(update_fields=changed)
    record("signs.sensor.update", actor=by, obj=sensor, data={
        "code": sensor.code, "changed": {f: [before[f], _shown(values[f])] for f in changed if f != "area_path"}})
    _sensors_changed()
    return sensor, changed


def save_sensor(*, code, by=None, **fields) -> tuple[Sensor, str]:
    """Create or update by code (the CSV importer): returns the sensor and
    "created", "updated" or "unchanged"."""
    code = clean_code(code)
    existing = Sensor.objects.filter(code=code).first()
    if existing is None:
        return create_sensor(code=code, by=by, **fields), "created"
    sensor, changed = update_sensor(existing, by=by, **fields)
    return sensor, "updated" if changed else "unchanged"


# --------------------------------------------------------------------------- indicators


def clean_rules(raw: dict) -> dict:
    """Bands and rule settings, checked against each other."""
    out = {f: _number(raw.get(f), f) for f in BAND_FIELDS}
    if out["alarm_low"] is not None and out["warn_low"] is not None and out["alarm_low"] > out["warn_low"]:
        raise CaseInvalid(_("The alarm level below must not be above the warning level below."), field="alarm_low")
    if out["alarm_high"] is not None and out["warn_high"] is not None and out["alarm_high"] < out["warn_high"]:
        raise CaseInvalid(_("The alarm level above must not be below the warning level above."), field="alarm_high")
    lows = [v for v in (out["warn_low"], out["alarm_low"]) if v is not None]
    highs = [v for v in (out["warn_high"], out["alarm_high"]) if v is not None]
    if lows and highs and max(lows) >= min(highs):
        fld = "warn_high" if out["warn_high"] is not None else "alarm_high"
        raise CaseInvalid(_("The levels below must be lower than the levels above."), field=fld)
    hysteresis = _number(raw.get("hysteresis"), "hysteresis", minimum=0)
    out["hysteresis"] = hysteresis or 0.0
    rate = _number(raw.get("rate_limit"), "rate_limit", minimum=0)
    out["rate_limit"] = rate or None  # 0 = not used
    missing = _integer(raw.get("missing_intervals"), "missing_intervals", minimum=0, maximum=MAX_MISSING_INTERVALS)
    out["missing_intervals"] = RULE_DEFAULTS["missing_intervals"] if missing is None else missing
    flat = _integer(raw.get("flatline_minutes"), "flatline_minutes", minimum=0, maximum=MAX_FLATLINE_MINUTES)
    out["flatline_minutes"] = flat or None  # 0 = not used
    tolerance = _number(raw.get("flatline_tolerance"), "flatline_tolerance", minimum=0)
    out["flatline_tolerance"] = tolerance or 0.0
    out["anomaly"] = _boolean(raw.get("anomaly"), "anomaly")
    score = _number(raw.get("anomaly_score"), "anomaly_score", positive=True)
    out["anomaly_score"] = RULE_DEFAULTS["anomaly_score"] if score is None else score
    clear = _number(raw.get("anomaly_clear"), "anomaly_clear", minimum=0)
    out["anomaly_clear"] = RULE_DEFAULTS["anomaly_clear"] if clear is None else clear
    if out["anomaly_clear"] >= out["anomaly_score"]:
        raise CaseInvalid(_("An anomaly must end below the score that starts it."), field="anomaly_clear")
    return out


def clean_indicator(data: dict, *, source: str, instance: Indicator | None = None) -> dict:
    """The model values of an indicator (all but code, source, sensor and inputs)."""
    unknown = set(data) - set(INDICATOR_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise CaseInvalid(_("Unknown field “%(field)s”.") % {"field": name}, field=name)
    if instance is not None:
        current = {f: getattr(instance, f) for f in INDICATOR_FIELDS}
    else:
        current = {"name": "", "name_en": "", "theme": "", "alarm_category": None, "active": True, "aggregate": "",
                   "case_category": None, "case_area": None, **RULE_DEFAULTS}
    raw = {**current, **data}
    name = _text(raw["name"], "name", 120, required=True)
    out = {
        "name": name,
        "name_en": _text(raw["name_en"], "name_en", 160) or name,
        "theme": _theme(raw["theme"]),
        "alarm_category": _category(raw["alarm_category"], "alarm_category"),
        "active": _boolean(raw["active"], "active"),
        **clean_rules(raw),
    }
    if source == Source.AGGREGATE:
        aggregate = str(raw["aggregate"] or Aggregate.MEAN)
        if aggregate not in Aggregate.values:
            raise CaseInvalid(_("Unknown aggregate “%(aggregate)s” (one of %(choices)s).")
                              % {"aggregate": aggregate, "choices": ", ".join(Aggregate.values)}, field="aggregate")
        out["aggregate"] = aggregate
    elif raw["aggregate"]:
        raise CaseInvalid(_("Only an indicator computed from other sensors has an aggregate."), field="aggregate")
    else:
        out["aggregate"] = ""
    if source == Source.CASES:
        out["case_category"] = _category(raw["case_category"], "case_category")
        out["case_area"] = _area(raw["case_area"], "case_area")
    elif raw["case_category"] or raw["case_area"]:
        fld = "case_category" if raw["case_category"] else "case_area"
        raise CaseInvalid(_("Only an indicator computed from cases counts cases."), field=fld)
    else:
        out["case_category"] = out["case_area"] = None
    return out


def _inputs(values, indicator_code: str = "") -> list[Sensor]:
    codes = [str(c).strip() for c in (values or []) if str(c).strip()]
    if not codes:
        raise CaseInvalid(_("An indicator computed from other sensors needs at least one input sensor."),
                          field="inputs")
    found = {s.code: s for s in Sensor.objects.filter(code__in=codes).select_related("kind", "area")}
    for code in codes:
        if code not in found:
            raise CaseInvalid(_("Unknown sensor “%(code)s”.") % {"code": code}, field="inputs")
        if code == indicator_code:
            raise CaseInvalid(_("An indicator cannot be computed from its own series."), field="inputs")
    return [found[c] for c in dict.fromkeys(codes)]


def _indicator_data(ind: Indicator) -> dict:
    return {"code": ind.code, "source": ind.source, "sensor": ind.sensor.code, "theme": ind.theme,
            **{f: getattr(ind, f) for f in RULE_FIELDS}}


@transaction.atomic
def create_indicator(*, code, source: str = Source.SENSOR, sensor=None, inputs=(), kind=None,
                     interval_s=None, by=None, **fields) -> Indicator:
    """Register an indicator.

    ``source="sensor"``: the readings of ``sensor`` (a code or a Sensor; it may
    have one indicator only). ``"aggregate"``: computed from ``inputs`` (sensor
    codes) with ``aggregate`` (mean/max/min/sum). ``"cases"``: counted from
    cases (``case_category``, ``case_area``). A computed indicator gets a
    virtual sensor with its own code, of ``kind`` (default: the first input's
    kind, or the kind ``case_count`` made on first use), every ``interval_s``
    seconds (default: the slowest input, or an hour), located in ``case_area``
    or the deepest area holding all inputs.

    ``fields``: name (required), name_en, theme (default: the kind's),
    alarm_category, active, and the rules (bands, hysteresis, rate_limit,
    missing_intervals, flatline_minutes, flatline_tolerance, anomaly,
    anomaly_score, anomaly_clear).
    """
    code = clean_code(code)
    if source not in Source.values:
        raise CaseInvalid(_("Unknown source “%(source)s” (one of %(choices)s).")
                          % {"source": source, "choices": ", ".join(Source.values)}, field="source")
    if Indicator.objects.filter(code=code).exists():
        raise CaseConflict(_("An indicator with the code “%(code)s” exists already.") % {"code": code}, field="code")
    input_sensors: list[Sensor] = []
    if source == Source.SENSOR:
        if inputs:
            raise CaseInvalid(_("Only an indicator computed from other sensors has inputs."), field="inputs")
        series = _by_code(Sensor, sensor, "sensor", _("Unknown sensor “%(code)s”."))
        if series is None:
            raise CaseInvalid(_("Name the sensor whose readings this indicator watches."), field="sensor")
        taken = Indicator.objects.filter(sensor=series).values_list("code", flat=True).first()
        if taken is not None:
            raise CaseConflict(_("Sensor %(sensor)s has an indicator already (%(indicator)s).")
                               % {"sensor": series.code, "indicator": taken}, field="sensor")
        theme_default = series.kind.theme
    else:
        if sensor:
            raise CaseInvalid(_("A computed indicator gets a series of its own; do not name a sensor."),
                              field="sensor")
        if source == Source.AGGREGATE:
            input_sensors = _inputs(inputs, code)
        virtual_kind = (_kind(kind) if kind else input_sensors[0].kind if input_sensors else _cases_kind())
        theme_default = virtual_kind.theme
        series = None
    values = clean_indicator({"theme": theme_default, **fields}, source=source)
    if series is None:
        if Sensor.objects.filter(code=code).exists():
            raise CaseConflict(_("The series of a computed indicator takes the indicator's code, and a sensor "
                                 "“%(code)s” exists already.") % {"code": code}, field="code")
        if interval_s in (None, ""):
            interval_s = max((s.interval_s for s in input_sensors), default=CASES_INTERVAL_S)
        area = values["case_area"] if source == Source.CASES else common_area([s.area for s in input_sensors])
        series = create_sensor(code=code, by=by, virtual=True, kind=virtual_kind, name=values["name"][:120],
                               interval_s=interval_s, area=area,
                               generated=bool(input_sensors) and all(s.generated for s in input_sensors))
    ind = Indicator.objects.create(code=code, source=source, sensor=series, **values)
    if input_sensors:
        ind.inputs.set(input_sensors)
    record("signs.indicator.create", actor=by, obj=ind, data={**_indicator_data(ind),
                                                              "inputs": [s.code for s in input_sensors]})
    return ind


def _cases_kind() -> SensorKind:
    kind, _created = SensorKind.objects.get_or_create(
        code=CASES_KIND, defaults={"name": "案件数", "name_en": "Cases", "unit": "件", "theme": Theme.SERVICES})
    return kind


@transaction.atomic
def update_indicator(ind: Indicator, *, by=None, **changes) -> tuple[Indicator, list[str]]:
    """Change an indicator's names, theme, rules, alarm category, inputs or
    case filter; returns it with the names of the fields that changed. Code,
    source and series cannot change (make a new indicator)."""
    for fixed, current in (("code", ind.code), ("source", ind.source), ("sensor", ind.sensor.code)):
        if fixed in changes:
            given = changes.pop(fixed)
            given = given.code if isinstance(given, Sensor) else str(given or "").strip()
            if given != current:
                raise CaseInvalid(_("The %(field)s of an indicator cannot change; make a new indicator.")
                                  % {"field": fixed}, field=fixed)
    new_inputs = None
    if "inputs" in changes:
        given = changes.pop("inputs")
        if ind.source != Source.AGGREGATE:
            if given:
                raise CaseInvalid(_("Only an indicator computed from other sensors has inputs."), field="inputs")
        else:
            new_inputs = _inputs(given, ind.code)
    values = clean_indicator(changes, source=ind.source, instance=ind)
    changed = [f for f, v in values.items() if _plain(getattr(ind, f)) != _plain(v)]
    before = {f: _shown(getattr(ind, f)) for f in changed}
    if changed:
        for f in changed:
            setattr(ind, f, values[f])
        ind.save(update_fields=changed)
    data = {"code": ind.code, "changed": {f: [before[f], _shown(values[f])] for f in changed}}
    if new_inputs is not None:
        old = sorted(ind.inputs.values_list("code", flat=True))
        if old != sorted(s.code for s in new_inputs):
            ind.inputs.set(new_inputs)
            changed.append("inputs")
            data["changed"]["inputs"] = [old, [s.code for s in new_inputs]]
    if changed:
        record("signs.indicator.update", actor=by, obj=ind, data=data)
    return ind, changed


# --------------------------------------------------------------------------- CSV import

SENSOR_COLUMNS = ("code", "name", "kind", "lon", "lat", "interval_s", "department", "unit")
RULE_COLUMNS = ("warn_low", "warn_high", "alarm_low", "alarm_high", "hysteresis", "rate_limit",
                "missing_intervals", "flatline_minutes", "flatline_tolerance", "anomaly")
REQUIRED_COLUMNS = ("code", "kind")
MAX_ERRORS = 50


class RegistryImportError(Exception):
    """A file that was not imported; ``errors`` name the row and column of each problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ImportResult:
    sensors: dict = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    indicators: dict = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    outside: list[str] = field(default_factory=list)  # sensors whose point is outside every area

    def summary(self) -> str:
        s, i = self.sensors, self.indicators
        text = _("sensors: %(sc)s created, %(su)s updated, %(sn)s unchanged; "
                 "indicators: %(ic)s created, %(iu)s updated, %(in)s unchanged") % {
            "sc": s["created"], "su": s["updated"], "sn": s["unchanged"],
            "ic": i["created"], "iu": i["updated"], "in": i["unchanged"]}
        if self.outside:
            text += "; " + _("outside every area: %(codes)s") % {"codes": ", ".join(self.outside[:20])}
        return text


def _row_error(row: int, column: str | None, message: str) -> str:
    if column:
        return _("Row %(row)s, column %(column)s: %(message)s") % {"row": row, "column": column, "message": message}
    return _("Row %(row)s: %(message)s") % {"row": row, "message": message}


def import_sensors(path, *, by=None) -> ImportResult:
    """Create or update sensors (and their indicators) from a CSV file, by code.

    Columns: code, kind (required), name, lon, lat, interval_s, department
    (code), unit; optional rule columns warn_low, warn_high, alarm_low,
    alarm_high, hysteresis, rate_limit, missing_intervals, flatline_minutes,
    flatline_tolerance, anomaly. A row with
    any rule cell filled gets an indicator with the sensor's code (created or
    its rules updated). Rows are numbered as in a spreadsheet (the header is
    row 1). One transaction: any error and nothing is imported; every error
    names its row and column. Importing the same file again changes nothing.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryImportError([_("Cannot read %(file)s: %(error)s") % {"file": path, "error": exc}]) from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    errors: list[str] = []
    for name in header:
        if name not in SENSOR_COLUMNS and name not in RULE_COLUMNS:
            errors.append(_row_error(1, name, _("Unknown column.")))
    for name in REQUIRED_COLUMNS:
        if name not in header:
            errors.append(_row_error(1, name, _("The column is missing.")))
    if len(set(header)) != len(header):
        errors.append(_row_error(1, None, _("A column is named twice.")))
    if errors:
        raise RegistryImportError(errors)
    result = ImportResult()
    seen: dict[str, int] = {}
    with transaction.atomic():
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                errors.append(_row_error(number, None, _("%(n)s cells; the header has %(m)s.")
                                         % {"n": len(cells), "m": len(header)}))
            else:
                row = dict(zip(header, (c.strip() for c in cells), strict=True))
                code = row["code"]
                if code in seen:
                    errors.append(_row_error(number, "code", _("“%(code)s” is in row %(row)s already.")
                                             % {"code": code, "row": seen[code]}))
                else:
                    seen[code] = number
                    try:
                        with transaction.atomic():
                            _import_row(row, result, by)
                    except CaseError as exc:
                        errors.append(_row_error(number, exc.field, exc.message))
            if len(errors) >= MAX_ERRORS:
                errors.append(_("Stopped after %(n)s errors.") % {"n": MAX_ERRORS})
                break
        if errors:
            transaction.set_rollback(True)
            raise RegistryImportError(errors)
        record("signs.import", actor=by, object_type="signs.sensor", object_id=path.name,
               data={"file": str(path), "sensors": result.sensors, "indicators": result.indicators})
    return result


def _import_row(row: dict, result: ImportResult, by) -> None:
    fields = {k: row[k] for k in SENSOR_COLUMNS if k in row and k != "code"}
    sensor, outcome = save_sensor(code=row["code"], by=by, **fields)
    result.sensors[outcome] += 1
    if sensor.lon is not None and sensor.area_id is None:
        result.outside.append(sensor.code)
    rules = {k: row[k] for k in RULE_COLUMNS if k in row}
    if not any(rules.values()):
        return
    rules = {k: (v if v != "" else RULE_DEFAULTS[k]) for k, v in rules.items()}
    ind = Indicator.objects.filter(sensor=sensor).first()
    if ind is None:
        create_indicator(code=sensor.code, source=Source.SENSOR, sensor=sensor, by=by,
                         name=sensor.name or sensor.code, name_en=sensor.name or sensor.code, **rules)
        result.indicators["created"] += 1
    else:
        _ind, changed = update_indicator(ind, by=by, **rules)
        result.indicators["updated" if changed else "unchanged"] += 1
