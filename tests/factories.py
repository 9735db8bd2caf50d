"""Small keyword-only builders for test data. Each call makes new rows.

The synthetic city (``build_area_tree``)::

    lat 32 +-----------+-----------+
           |  100103   |  100104   |      each district is split at its
           | W  |  E   | W  |  E   |      middle longitude into a west
    lat 31 +-----------+-----------+      street (code + "001") and an
           |  100101   |  100102   |      east street (code + "002")
           | W  |  E   | W  |  E   |
    lat 30 +-----------+-----------+
         lon 120     lon 121     lon 122

City 100000 covers the whole square.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from chengyun.areas.models import Area, AreaLevel
from chengyun.areas.services import import_areas
from chengyun.cases import services
from chengyun.cases.models import Case, Satisfaction
from chengyun.cases.workflow import CaseStatus
from chengyun.org.models import Department, DepartmentKind, RoleAssignment, User
from chengyun.taxonomy.models import Category, RoutingRule

CITY = "100000"
DISTRICT_BOUNDS = {
    "100101": (120.0, 30.0, 121.0, 31.0),  # south-west
    "100102": (121.0, 30.0, 122.0, 31.0),  # south-east
    "100103": (120.0, 31.0, 121.0, 32.0),  # north-west
    "100104": (121.0, 31.0, 122.0, 32.0),  # north-east
}
OUTSIDE = (110.0, 20.0)


# --------------------------------------------------------------------------- GeoJSON


def box(x0: float, y0: float, x1: float, y1: float) -> dict:
    """A rectangular GeoJSON Polygon."""
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(*, geometry: dict | None, **properties) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def write_geojson(directory: Path, name: str, features: list[dict]) -> Path:
    path = Path(directory) / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), encoding="utf-8")
    return path


def street_bounds() -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for code, (x0, y0, x1, y1) in DISTRICT_BOUNDS.items():
        mid = (x0 + x1) / 2
        out[code + "001"] = (x0, y0, mid, y1)
        out[code + "002"] = (mid, y0, x1, y1)
    return out


def centre(code: str) -> tuple[float, float]:
    """A point well inside the district or street with this code."""
    bounds = {**DISTRICT_BOUNDS, **street_bounds(), CITY: (120.0, 30.0, 122.0, 32.0)}[code]
    return ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)


def city_file(directory: Path) -> Path:
    return write_geojson(directory, "city.geojson", [
        feature(code=CITY, name="测试市", name_en="Testcity", geometry=box(120.0, 30.0, 122.0, 32.0)),
    ])


def district_file(directory: Path) -> Path:
    return write_geojson(directory, "district.geojson", [
        feature(code=code, name=f"区{code[-1]}", name_en=f"District {code[-1]}", parent=CITY, geometry=box(*b))
        for code, b in DISTRICT_BOUNDS.items()
    ])


def street_file(directory: Path) -> Path:
    return write_geojson(directory, "street.geojson", [
        feature(code=code, name=f"街道{code[-4:]}", name_en=f"Street {code[-4:]}", geometry=box(*b))
        for code, b in street_bounds().items()
    ])


def build_area_tree(directory: Path, *, streets: bool = True) -> dict[str, Area]:
    """Import city, districts (parent by code) and streets (parent by location)."""
    import_areas(city_file(directory), level="city", code_field="code", name_field="name",
                 name_en_field="name_en", level_name="市", level_name_en="City")
    import_areas(district_file(directory), level="district", code_field="code", name_field="name",
                 name_en_field="name_en", parent_code_field="parent", level_name="区", level_name_en="District")
    if streets:
        import_areas(street_file(directory), level="street", code_field="code", name_field="name",
                     name_en_field="name_en", parent_by_location=True, level_name="街道", level_name_en="Street")
    return {a.code: a for a in Area.objects.select_related("level")}


# --------------------------------------------------------------------------- organisation and taxonomy


def make_department_kind(*, kind: str, name: str = "", name_en: str = "") -> DepartmentKind:
    return DepartmentKind.objects.create(kind=kind, name=name or kind, name_en=name_en or kind.title())


def make_department(*, code: str, kind: DepartmentKind, area: Area, name: str = "", active: bool = True) -> Department:
    return Department.objects.create(code=code, name=name or code, name_en=name or code, kind=kind, area=area, active=active)


def make_category(
    *,
    code: str,
    parent: Category | None = None,
    deadline_hours: float | str = 8,
    deadline_kind: str = "working",
    response_hours: float | str = 2,
    priority: str = "normal",
    name: str = "",
) -> Category:
    return Category.objects.create(
        code=code, name=name or f"分类{code}", name_en=name or f"Category {code}", parent=parent,
        deadline_hours=Decimal(str(deadline_hours)), deadline_kind=deadline_kind,
        response_hours=Decimal(str(response_hours)), priority=priority,
    )


def make_routing_rule(
    *,
    category: Category,
    lead_kind: DepartmentKind | None = None,
    lead_department: Department | None = None,
    level: AreaLevel | None = None,
    area: Area | None = None,
    assisting_kinds: tuple = (),
    assisting_departments: tuple = (),
    order: int = 100,
) -> RoutingRule:
    rule = RoutingRule.objects.create(
        category=category, lead_kind=lead_kind, lead_department=lead_department, level=level, area=area, order=order,
    )
    rule.assisting_kinds.set(assisting_kinds)
    rule.assisting_departments.set(assisting_departments)
    return rule


def make_user(
    *,
    username: str,
    role: str | None = None,
    area: Area | None = None,
    department: Department | None = None,
    password: str | None = None,
    superuser: bool = False,
) -> User:
    if superuser:
        user = User.objects.create_superuser(username=username, password=password, email="")
    else:
        user = User.objects.create_user(username=username, password=password)
    if role:
        RoleAssignment.objects.create(user=user, role=role, area=area, department=department)
    return user


@dataclass
class World:
    areas: dict[str, Area]
    kinds: dict[str, DepartmentKind]
    departments: dict[str, Department]
    categories: dict[str, Category]
    rules: list[RoutingRule] = field(default_factory=list)

    def dept(self, kind: str, district: str) -> Department:
        return self.departments[f"{kind.upper()}-{district}"]


def build_world(areas: dict[str, Area]) -> World:
    """Water and roads departments in every district; category 01 (parent) and
    0101 (leaf, 8 working hours), routed by the parent's rule to the water
    department of the case's district with the roads department assisting."""
    kinds = {k: make_department_kind(kind=k) for k in ("water", "roads")}
    departments = {}
    for district in DISTRICT_BOUNDS:
        for k, kind in kinds.items():
            d = make_department(code=f"{k.upper()}-{district}", kind=kind, area=areas[district])
            departments[d.code] = d
    parent = make_category(code="01", deadline_hours=40)
    leaf = make_category(code="0101", parent=parent, deadline_hours=8, deadline_kind="working")
    district_level = AreaLevel.objects.get(key="district")
    rule = make_routing_rule(category=parent, lead_kind=kinds["water"], level=district_level,
                             assisting_kinds=(kinds["roads"],))
    return World(areas=areas, kinds=kinds, departments=departments, categories={"01": parent, "0101": leaf}, rules=[rule])


# --------------------------------------------------------------------------- cases


def make_case(
    *,
    title: str = "Burst water main",
    category: Category | None = None,
    at: str = "100101001",
    lonlat: tuple[float, float] | None = None,
    priority: str | None = None,
    by=None,
) -> Case:
    """A new case located at the centre of area ``at`` (or at ``lonlat``)."""
    lon, lat = lonlat if lonlat is not None else centre(at)
    return services.create_case(title=title, category=category, lon=lon, lat=lat, priority=priority, by=by)


# The path of actions from "new" to each status (a superuser takes them all).
_PATHS = {
    CaseStatus.NEW: [],
    CaseStatus.ACCEPTED: ["accept"],
    CaseStatus.REJECTED: ["reject"],
    CaseStatus.MERGED: ["merge"],
    CaseStatus.DISPATCHED: ["accept", "dispatch"],
    CaseStatus.IN_PROGRESS: ["accept", "dispatch", "start"],
    CaseStatus.AWAITING_VERIFICATION: ["accept", "dispatch", "start", "report_done"],
    CaseStatus.CLOSED: ["accept", "dispatch", "start", "report_done", "verify_ok"],
    CaseStatus.RATED: ["accept", "dispatch", "start", "report_done", "verify_ok", "callback_ok"],
    CaseStatus.REOPENED: ["accept", "dispatch", "start", "report_done", "verify_ok", "callback_bad"],
}


def drive_to(case: Case, status: str, *, by: User, **dispatch) -> Case:
    """Take ``case`` from new to ``status`` through the services, as ``by``.

    ``dispatch`` is passed to dispatch_case (lead=…, assisting=…)."""
    for step in _PATHS[CaseStatus(status)]:
        case = Case.objects.get(pk=case.pk)
        match step:
            case "accept":
                services.accept_case(case, by=by)
            case "reject":
                services.reject_case(case, by=by, reason="not a city matter")
            case "merge":
                into = services.create_case(title=f"Same as {case.number}", category=case.category,
                                            lon=case.lon, lat=case.lat, by=by)
                services.merge_case(case, into=into, by=by)
            case "dispatch":
                services.dispatch_case(case, by=by, **dispatch)
            case "start":
                services.start_case(case, by=by)
            case "report_done":
                services.report_done(case, by=by)
            case "verify_ok":
                services.verify_case(case, by=by, ok=True)
            case "callback_ok":
                services.record_callback(case, by=by, satisfaction=Satisfaction.SATISFIED)
            case "callback_bad":
                services.record_callback(case, by=by, satisfaction=Satisfaction.UNSATISFIED)
    case = Case.objects.get(pk=case.pk)
    assert case.status == status, (case.status, status)
    return case


def add_routing_edge_cases(w, lights: Category) -> tuple[DepartmentKind, Category]:
    """Routing rules that exercise every branch of the decision (for tests that
    compare a fast router with ``taxonomy.services.route``): a named lead and
    an assisting department, a rule whose kind has no department, a rule
    without a level, an inactive department, a calendar-day category whose
    only rule is by level. Returns the street-office kind and that category."""
    water = w.categories["0101"]
    parks = make_department_kind(kind="parks")
    street_kind = make_department_kind(kind="street_office")
    make_department(code="OFFICE-100101001", kind=street_kind, area=w.areas["100101001"])
    make_department(code="OFFICE-100102002", kind=street_kind, area=w.areas["100102002"], active=False)
    make_routing_rule(category=lights, lead_department=w.dept("roads", "100102"), area=w.areas["100102"],
                      assisting_departments=(w.dept("water", "100103"),))
    make_routing_rule(category=lights, lead_kind=parks, level=AreaLevel.objects.get(key="district"), order=1)
    make_routing_rule(category=water, lead_kind=street_kind, assisting_kinds=(w.kinds["roads"],), order=5)
    lone = make_category(code="02", deadline_hours=24, deadline_kind="calendar")
    make_routing_rule(category=lone, lead_kind=w.kinds["water"], level=AreaLevel.objects.get(key="street"))
    return street_kind, lone


def database_url() -> str:
    """The test database as a ``DATABASE_URL``, for a ``chengyun`` command run
    as a subprocess against it (the MQTT subscriber, the server)."""
    from urllib.parse import quote

    from django.db import connection

    d = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{d['NAME']}"
    auth = quote(d.get("USER") or "") + (":" + quote(d["PASSWORD"]) if d.get("PASSWORD") else "")
    return f"postgres://{auth}@{d.get('HOST') or '127.0.0.1'}:{d.get('PORT') or 5432}/{d['NAME']}"
