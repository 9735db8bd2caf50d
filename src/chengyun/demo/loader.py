"""The demo city pack: Shanghai's areas, departments, categories, people and
generated cases. Loading is idempotent: run it twice and nothing doubles.

Everything generated is labelled so (``generated=True`` on areas and cases,
"demo" tags in the console); see ``pack/areas/SOURCE.md`` and
``pack/TAXONOMY_SOURCE.md`` for what is real.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import shapely
from django.contrib.auth.hashers import make_password
from django.db import transaction

from chengyun.areas.models import Area, AreaLevel
from chengyun.areas.services import import_areas
from chengyun.org.models import Department, DepartmentKind, Role, RoleAssignment, User
from chengyun.taxonomy.models import Category, RoutingRule

PACK = Path(__file__).resolve().parent / "pack"

LEVELS = [
    # key, zh, en, file, parent field
    ("city", "市", "City", "city.geojson"),
    ("district", "区", "District", "district.geojson"),
    ("street", "街道/镇", "Street / town", "street.geojson"),
    ("community", "居委/村委", "Community / village", "community.geojson"),
    ("grid", "网格", "Grid cell", "grid.geojson"),
]

DEMO_PASSWORD = "chengyun-demo"

# username, display name, role, area code (None = whole city), department code
DEMO_USERS = [
    ("admin", "系统管理员 Admin", Role.ADMIN, None, None),
    ("operator", "12345 受理员 Operator", Role.OPERATOR, None, None),
    ("dispatcher", "市城运中心派遣员 City dispatcher", Role.DISPATCHER, None, None),
    ("leader", "市领导 City leader", Role.LEADER, None, None),
    ("hp_dispatcher", "黄浦区派遣员 Huangpu dispatcher", Role.DISPATCHER, "310101", None),
    ("hp_supervisor", "黄浦区督办 Huangpu supervisor", Role.SUPERVISOR, "310101", None),
    ("hp_inspector", "南京东路街道网格员 Inspector", Role.INSPECTOR, "310101002", None),
    ("hp_cm_handler", "黄浦区城管执法局处置员 Handler", Role.HANDLER, None, "310101-CM"),
    ("hp_housing_handler", "黄浦区房管局处置员 Handler", Role.HANDLER, None, "310101-HOUSING"),
    ("pd_dispatcher", "浦东新区派遣员 Pudong dispatcher", Role.DISPATCHER, "310115", None),
    ("sh_water_handler", "市水务局处置员 Water handler", Role.HANDLER, None, "SH-WATER"),
]

# Accounts the case generator acts as; their names say they are simulated.
SIM_USERS = [
    ("sim-operator", "模拟受理员 (generated)", Role.OPERATOR),
    ("sim-dispatcher", "模拟派遣员 (generated)", Role.DISPATCHER),
    ("sim-handler", "模拟处置员 (generated)", Role.ADMIN),
    ("sim-inspector", "模拟网格员 (generated)", Role.INSPECTOR),
    ("sim-supervisor", "模拟督办 (generated)", Role.SUPERVISOR),
]


def _json(name: str):
    return json.loads((PACK / name).read_text(encoding="utf-8"))


def load_areas(log=print) -> None:
    for depth, (key, zh, en, filename) in enumerate(LEVELS):
        result = import_areas(
            PACK / "areas" / filename, level=key, code_field="code", name_field="name", name_en_field="name_en",
            parent_code_field="parent_code" if depth else None, level_name=zh, level_name_en=en,
            generated_field="generated",
        )
        log(f"  areas/{key}: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")
    # Level names may have been created by an earlier version: keep them right.
    for key, zh, en, _ in LEVELS:
        AreaLevel.objects.filter(key=key).update(name=zh, name_en=en)


@transaction.atomic
def load_org(log=print) -> None:
    org = _json("org.json")
    kinds = {}
    for k in org["department_kinds"]:
        kinds[k["kind"]], _ = DepartmentKind.objects.update_or_create(
            kind=k["kind"], defaults={"name": k["name_zh"], "name_en": k["name_en"]}
        )
    city = Area.objects.get(level__key="city")
    count = 0
    for d in org["city_departments"]:
        Department.objects.update_or_create(
            code=d["code"], defaults={"name": d["name_zh"], "name_en": d["name_en"], "kind": kinds[d["kind"]], "area": city}
        )
        count += 1
    for district in Area.objects.filter(level__key="district"):
        for t in org["district_departments"]:
            Department.objects.update_or_create(
                code=f"{district.code}-{t['code_suffix']}",
                defaults={
                    "name": t["name_zh"].format(district=district.name),
                    "name_en": t["name_en"].format(district_en=district.name_en),
                    "kind": kinds[t["kind"]], "area": district,
                },
            )
            count += 1
    for street in Area.objects.filter(level__key="street"):
        for t in org["street_departments"]:
            name = t["name_zh"].format(street=street.name)
            if t["kind"] == "street_office" and street.name.endswith(("镇", "乡")):
                name = f"{street.name}人民政府"  # towns have a government, not a street office
            Department.objects.update_or_create(
                code=f"{street.code}-{t['code_suffix']}",
                defaults={"name": name, "name_en": t["name_en"].format(street_en=street.name_en),
                          "kind": kinds[t["kind"]], "area": street},
            )
            count += 1
    log(f"  departments: {count}")


INTAKE_FIELDS = {"duplicate_radius_m", "duplicate_window_hours", "cluster_reports", "cluster_radius_m",
                 "cluster_window_minutes", "self_dispose"}


@transaction.atomic
def load_taxonomy(log=print) -> None:
    doc = _json("taxonomy.json")
    levels = {lvl.key: lvl for lvl in AreaLevel.objects.all()}
    kinds = {k.kind: k for k in DepartmentKind.objects.all()}
    leaves = 0
    for group in doc["categories"]:
        parent, _ = Category.objects.update_or_create(
            code=group["code"],
            defaults={"name": group["name_zh"], "name_en": group["name_en"], "kind": group["kind"], "parent": None},
        )
        for leaf in group["children"]:
            cat, _ = Category.objects.update_or_create(
                code=leaf["code"],
                defaults={
                    "name": leaf["name_zh"], "name_en": leaf["name_en"], "kind": group["kind"], "parent": parent,
                    "keywords_zh": leaf["keywords_zh"], "keywords_en": leaf["keywords_en"],
                    "deadline_hours": leaf["deadline_hours"], "deadline_kind": leaf["deadline_kind"],
                    "response_hours": leaf["response_hours"], "priority": leaf["priority"],
                    **{k: v for k, v in leaf.get("intake", {}).items() if k in INTAKE_FIELDS},
                },
            )
            rule, _ = RoutingRule.objects.update_or_create(
                category=cat, area=None, note="demo pack",
                defaults={"level": levels[leaf["routing_level"]], "lead_kind": kinds[leaf["department_kind"]], "order": 100},
            )
            rule.assisting_kinds.set([kinds[k] for k in leaf.get("assisting_kinds", [])])
            leaves += 1
    log(f"  categories: {len(doc['categories'])} groups, {leaves} leaves with routing rules")


@transaction.atomic
def load_users(log=print) -> list[tuple[str, str, str]]:
    shown = []
    hashed = ""
    for username, display, role, area_code, dept_code in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username, defaults={"display_name": display})
        if created:
            # The logins share one published password; hashing it once (a
            # quarter of a second each time, by design) serves them all.
            hashed = hashed or make_password(DEMO_PASSWORD)
            user.password = hashed
        user.display_name = display
        user.is_staff = role == Role.ADMIN
        user.is_superuser = role == Role.ADMIN
        user.save()
        RoleAssignment.objects.get_or_create(
            user=user, role=role,
            area=Area.objects.get(code=area_code) if area_code else None,
            department=Department.objects.get(code=dept_code) if dept_code else None,
        )
        shown.append((username, display, role))
    for username, display, role in SIM_USERS:
        user, created = User.objects.get_or_create(username=username, defaults={"display_name": display})
        if created:
            user.set_unusable_password()
            user.save()
        RoleAssignment.objects.get_or_create(user=user, role=role, area=None, department=None)
    log(f"  users: {len(DEMO_USERS)} demo logins + {len(SIM_USERS)} simulated staff (cannot log in)")
    return shown


def random_point_in(geom, rng: random.Random):
    minx, miny, maxx, maxy = geom.bounds
    for _ in range(200):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if shapely.intersects_xy(geom, x, y):
            return x, y
    p = geom.representative_point()
    return p.x, p.y


def load_all(*, cases: int = 3000, seed: int = 20261127, sensors: int = 300, sensor_days: int = 30, log=print,
             background: bool = False) -> None:
    """Load everything, in the order the parts depend on each other.

    ``background``: retrain the classifier from the generated cases in a
    separate process while the sensors load (the two take about as long, and
    a small machine has a second core); the new model's activation waits until
    both are done, so the sensors' planted reports are classified by the first
    model either way."""
    from .generator import generate_cases
    from .sensors import load_sensors
    from .texts import start_retraining, train_demo_model

    log("Loading the demo city pack (Shanghai)…")
    load_areas(log)
    load_org(log)
    load_taxonomy(log)
    load_users(log)
    train_demo_model(log)
    generate_cases(cases, seed=seed, log=log)
    retraining = start_retraining(background=background)
    try:
        load_sensors(log, count=sensors, days=sensor_days, seed=seed)
    finally:
        if retraining is not None:
            retraining.finish(log)


__all__ = ["load_all", "DEMO_USERS", "DEMO_PASSWORD", "timedelta", "random_point_in"]
