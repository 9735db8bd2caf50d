"""The demo city's sensors and 30 days of generated readings.

A few hundred sensors of the kinds in ``pack/sensors.json`` (water pressure,
manhole covers, river and road water levels, PM2.5, noise, traffic speed,
building tilt, combustible gas) are placed at random points inside the grid
cells of the loaded area tree, owned by the nearest department of the right
kind, each with an indicator whose rules suit the kind. Two kinds of computed
indicator come with them: no-water reports per hour in a district (counted
from the reports) and the mean PM2.5 of a district.

Readings are generated with numpy: daily and weekly cycles per kind, noise,
slow drift on some sensors, gaps, one or two sensors silent since yesterday
and a handful of planted incidents (listed in ``pack/SENSORS_SOURCE.md``), some
in the last day and one still going on. They are loaded through
:func:`chengyun.signs.ingest.ingest`, so rollups, warnings and alarm cases are
made by the real code: the first weeks without rules, then the learned
baselines, then the last days with the rules on, a few hours at a time under
simulated time.

Everything here is generated demo data; sensors and warnings are marked
``generated=True`` (see ``pack/SENSORS_SOURCE.md``).
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chengyun.areas.models import Area
from chengyun.clock import simulated
from chengyun.org.models import Department
from chengyun.signs.compute import compute_indicators
from chengyun.signs.ingest import forget_sensors, ingest
from chengyun.signs.models import (
    HOUR_MS,
    MINUTE_MS,
    Indicator,
    Rollup,
    Sensor,
    SensorKind,
    Source,
    Warning,
    from_ms,
    to_ms,
)
from chengyun.signs.rules import compute_baselines, sweep_missing
from chengyun.signs.services import RULE_FIELDS, create_indicator, create_sensor, update_sensor
from chengyun.taxonomy.models import Category

from .loader import PACK, random_point_in

DAY_MS = 24 * HOUR_MS
SOURCE = "demo-sensors"


@lru_cache(maxsize=1)
def pack() -> dict:
    return json.loads((PACK / "sensors.json").read_text(encoding="utf-8"))


def kind_specs() -> dict[str, dict]:
    return {k["code"]: k for k in pack()["kinds"]}


# --------------------------------------------------------------------------- the normal shape of each kind


def params_for(kind: str, code: str) -> dict:
    """A sensor's own normal level, from its code: the same code gives the same
    parameters, so a live simulator can continue the generated history."""
    r = np.random.default_rng(zlib.crc32(code.encode("utf-8")))
    match kind:
        case "water_pressure":
            return {"base": r.uniform(0.27, 0.38), "noise": 0.004}
        case "manhole_cover":
            return {"base": r.uniform(0.2, 1.2), "noise": 0.08}
        case "river_level":
            return {"base": r.uniform(2.4, 2.9), "tide": r.uniform(0.05, 0.45), "phase": r.uniform(0, 2 * math.pi),
                    "noise": 0.008}
        case "road_ponding":
            return {"noise": 0.3}
        case "pm25":
            return {"base": r.uniform(18, 34), "noise": 0.05}
        case "noise":
            day = r.uniform(56, 66)
            return {"day": day, "night": day - r.uniform(8, 12), "noise": 1.0}
        case "traffic_speed":
            return {"free": r.uniform(40, 62), "congestion": r.uniform(0.85, 1.1), "noise": 1.8}
        case "building_tilt":
            return {"base": r.uniform(0.6, 2.4), "noise": 0.025}
        case "gas":
            return {"noise": 0.35}
    return {"noise": 0.0}


def _bump(h: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = np.abs(h - centre)
    d = np.minimum(d, 24 - d)
    return np.exp(-0.5 * (d / width) ** 2)


def _daytime(h: np.ndarray) -> np.ndarray:
    """0 at night, 1 by day, with soft edges at about 6:30 and 22:20."""
    return 1 / (1 + np.exp(-(h - 6.5) / 0.4)) / (1 + np.exp((h - 22.3) / 0.35))


def normal(kind: str, p: dict, ts: np.ndarray, offset_ms: int) -> np.ndarray:
    """The noise-free value of a sensor of ``kind`` at times ``ts`` (ms, UTC);
    ``offset_ms`` is the city's offset from UTC."""
    local = ts + offset_ms
    h = (local % DAY_MS) / HOUR_MS
    dow = ((local // DAY_MS) + 3) % 7  # 1970-01-01 was a Thursday
    weekend = dow >= 5
    match kind:
        case "water_pressure":  # demand peaks in the morning and evening lower the pressure
            morning = np.where(weekend, 0.8 * _bump(h, 9.0, 1.4), _bump(h, 7.5, 1.2))
            demand = morning + 1.1 * _bump(h, 19.5, 1.6) + 0.4 * _bump(h, 12.0, 1.5)
            return p["base"] + 0.012 - 0.055 * demand
        case "manhole_cover":  # heavy traffic rattles the cover a little
            return p["base"] + 0.05 * _bump(h, 8, 2) + 0.05 * _bump(h, 18, 2)
        case "river_level":  # semi-diurnal tide and the spring-neap cycle
            hours = ts / HOUR_MS
            return (p["base"] + p["tide"] * np.sin(2 * np.pi * hours / 12.42 + p["phase"])
                    + 0.04 * np.sin(2 * np.pi * hours / (24 * 14.77) + p["phase"]))
        case "road_ponding":
            return np.zeros(len(ts))
        case "pm25":  # higher at night and in the rush hours, lower at weekends
            rush = np.where(weekend, 0.0, 0.12 * _bump(h, 8.5, 1.5) + 0.08 * _bump(h, 18.5, 1.8))
            return p["base"] * (1 + 0.18 * np.cos(2 * np.pi * (h - 6) / 24) + rush) * np.where(weekend, 0.93, 1.04)
        case "noise":
            day = _daytime(h)
            v = p["night"] + (p["day"] - p["night"]) * day
            return v + np.where(weekend, -2.0 * day, 1.5 * _bump(h, 8, 1) + 1.5 * _bump(h, 18, 1.2))
        case "traffic_speed":  # rush hours on working days, a milder midday at weekends
            evening = np.where(dow == 4, 0.58, 0.5)
            working = 0.55 * _bump(h, 8.0, 1.0) + evening * _bump(h, 18.0, 1.2) + 0.15 * _bump(h, 12.5, 1.5)
            leisure = 0.25 * _bump(h, 11, 2.5) + 0.25 * _bump(h, 17, 2)
            return p["free"] * (1 - p["congestion"] * np.where(weekend, leisure, working) * 0.8)
        case "building_tilt":  # the sun warms one side in the afternoon
            return p["base"] + 0.06 * np.sin(2 * np.pi * (h - 9) / 24)
        case "gas":
            return np.full(len(ts), 0.3)
    return np.zeros(len(ts))


def noisy(kind: str, p: dict, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(clean)
    if kind == "pm25":
        return np.maximum(clean * np.exp(rng.normal(0, p["noise"], n)) + rng.normal(0, 1.0, n), 1.0)
    v = clean + rng.normal(0, p["noise"], n)
    if kind in ("manhole_cover", "gas", "building_tilt"):  # an angle or a concentration near 0 reads as its size
        return np.abs(v)
    return np.maximum(v, 0.0)


def _smooth(x: np.ndarray) -> np.ndarray:
    """Smoothstep: 0 → 1 over x in [0, 1] with flat ends."""
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _ramp(t: np.ndarray, t0: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 before t0, rising smoothly to 1 over ``rise`` ms, 1 for ``hold`` ms,
    falling to 0 over ``fall`` ms."""
    return _smooth((t - t0) / max(rise, 1)) * (1 - _smooth((t - t0 - rise - hold) / max(fall, 1)))


def _swell(t: np.ndarray, t0: float, rise: float, tau: float) -> np.ndarray:
    """0 before t0, rising to 1 over ``rise`` ms, then decaying with time constant ``tau``."""
    return _smooth((t - t0) / rise) * np.exp(-np.maximum(t - t0 - rise, 0) / tau)


# --------------------------------------------------------------------------- the demo loader


@dataclass
class Placed:
    spec: dict
    code: str
    name: str
    name_en: str
    lon: float | None
    lat: float | None
    cell: Area
    district: Area
    street: Area
    department: Department | None
    interval_ms: int
    params: dict
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rules: dict = field(default_factory=dict)
    note: str = ""

    @property
    def kind(self) -> str:
        return self.spec["code"]


def _allocate(count: int, specs: list[dict]) -> dict[str, int]:
    """Sensors per kind, in proportion to the kinds' shares, at least one each."""
    order = sorted(specs, key=lambda s: -s["share"])
    if count < len(order):
        return {s["code"]: 1 for s in order[:count]}
    total = sum(s["share"] for s in order)
    n = {s["code"]: max(1, round(count * s["share"] / total)) for s in order}
    diff, i = count - sum(n.values()), 0
    while diff:
        code = order[i % len(order)]["code"]
        if diff > 0:
            n[code] += 1
            diff -= 1
        elif n[code] > 1:
            n[code] -= 1
            diff += 1
        i += 1
    return n


class DemoSensors:
    def __init__(self, *, count: int, days: int, seed: int, log=print):
        self.count, self.days, self.log = count, days, log
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.now_ms = to_ms(timezone.now()) // MINUTE_MS * MINUTE_MS
        self.start_ms = self.now_ms - days * DAY_MS
        eval_days = min(9, max(1, days // 3))
        self.eval_ms = max(self.start_ms, (self.now_ms - eval_days * DAY_MS) // HOUR_MS * HOUR_MS)
        tz = ZoneInfo(settings.TIME_ZONE)
        self.offset_ms = int(from_ms(self.now_ms).astimezone(tz).utcoffset().total_seconds() * 1000)
        self.doc = pack()
        self.abbr = self.doc.get("district_abbreviations", {})
        self.placed: list[Placed] = []
        self.computed: list[Indicator] = []
        self.planted: list[str] = []
        self._seq: dict[tuple[str, str], int] = {}
        self._load_areas()

    # -- areas and departments
    def _load_areas(self) -> None:
        self.areas = {a.pk: a for a in Area.objects.select_related("level")}
        if not self.areas:
            self.deepest = []
            return
        depth = max(a.level.depth for a in self.areas.values())
        self.deepest = sorted((a for a in self.areas.values() if a.level.depth == depth), key=lambda a: a.code)
        self.districts = sorted((a for a in self.areas.values() if a.level.key == "district"), key=lambda a: a.code) or \
            sorted((a for a in self.areas.values() if a.level.depth == min(1, depth)), key=lambda a: a.code)
        self.departments: dict[tuple[str, int], Department] = {}
        for d in Department.objects.filter(active=True).select_related("kind").order_by("code"):
            self.departments.setdefault((d.kind.kind, d.area_id), d)

    def chain(self, area: Area) -> list[Area]:
        return [self.areas[int(x)] for x in area.path.strip("/").split("/") if x and int(x) in self.areas]

    def _at_level(self, area: Area, key: str, depth: int) -> Area:
        chain = self.chain(area)
        for a in chain:
            if a.level.key == key:
                return a
        return chain[min(depth, len(chain) - 1)]

    def department_for(self, kind: str, area: Area) -> Department | None:
        for a in reversed(self.chain(area)):
            d = self.departments.get((kind, a.pk))
            if d is not None:
                return d
        return None

    def cells_under(self, area: Area | None) -> list[Area]:
        if area is None:
            return self.deepest
        return [a for a in self.deepest if a.path.startswith(area.path)] or self.deepest

    # -- placing sensors
    def place(self, spec: dict, within: Area | None = None) -> Placed:
        cell = self.rng.choice(self.cells_under(within))
        lon, lat = random_point_in(cell.geometry, self.rng)
        district = self._at_level(cell, "district", 1)
        street = self._at_level(cell, "street", 2)
        abbr = self.abbr.get(district.code, district.code)
        key = (spec["prefix"], abbr)
        self._seq[key] = self._seq.get(key, 0) + 1
        code = f"{spec['prefix']}-{abbr}-{self._seq[key]:04d}"
        p = Placed(
            spec=spec, code=code, name=f"{street.name}{spec['name_zh']} {code}",
            name_en=f"{spec['name_en']}, {street.name_en or street.name} ({code})",
            lon=round(lon, 6), lat=round(lat, 6), cell=cell, district=district, street=street,
            department=self.department_for(spec["department_kind"], cell),
            interval_ms=spec["interval_min"] * MINUTE_MS, params=params_for(spec["code"], code),
        )
        p.rules = dict(spec["rules"])
        if "bands_above_high_tide" in spec:
            top = p.params["base"] + p.params["tide"] + 0.04
            for band, above in spec["bands_above_high_tide"].items():
                p.rules[band] = round(top + above, 2)
        self.placed.append(p)
        return p

    def _anchor(self, preferred: str, candidates: list[Area], avoid: set[int]) -> Area:
        by_code = {a.code: a for a in candidates}
        if preferred in by_code:
            return by_code[preferred]
        fresh = [a for a in candidates if a.pk not in avoid] or candidates
        return self.rng.choice(fresh)

    def place_all(self) -> None:
        specs = kind_specs()
        n = _allocate(self.count, list(specs.values()))
        prefer = self.doc.get("preferred_anchors", {})
        streets = sorted({self._at_level(c, "street", 2).pk: self._at_level(c, "street", 2)
                          for c in self.deepest}.values(), key=lambda a: a.code)
        self.burst_street = self._anchor(prefer.get("burst_street", ""), streets, set())
        burst_district = self._at_level(self.burst_street, "district", 1)
        self.rain_district = self._anchor(prefer.get("rain_district", ""), self.districts, {burst_district.pk})
        self.pm25_district = self._anchor(prefer.get("pm25_district", ""), self.districts,
                                          {burst_district.pk, self.rain_district.pk})
        anchored = {"water_pressure": (self.burst_street, 3), "river_level": (self.rain_district, 2),
                    "road_ponding": (self.rain_district, 2), "pm25": (self.pm25_district, 3)}
        for code, spec in specs.items():
            within, k = anchored.get(code, (None, 0))
            for i in range(n.get(code, 0)):
                self.place(spec, within if i < k else None)

    def of_kind(self, kind: str) -> list[Placed]:
        return [p for p in self.placed if p.kind == kind]

    # -- the registry
    @transaction.atomic
    def create_registry(self) -> None:
        """Kinds, sensors and their indicators, through the registry services
        (validated, located, audited like any other sensor)."""
        specs = kind_specs()
        self.categories = {c.code: c for c in Category.objects.filter(code__in=self._category_codes())}
        self.kinds = {}
        for code, spec in specs.items():
            self.kinds[code], _ = SensorKind.objects.update_or_create(code=code, defaults={
                "name": spec["name_zh"], "name_en": spec["name_en"], "unit": spec["unit"], "theme": spec["theme"],
                "alarm_category": self.categories.get(spec["alarm_category"]),
            })
        for p in self.placed:
            sensor = create_sensor(code=p.code, name=p.name[:120], kind=self.kinds[p.kind], lon=p.lon, lat=p.lat,
                                   department=p.department, interval_s=p.interval_ms // 1000, generated=True)
            create_indicator(code=p.code, sensor=sensor, name=p.name[:120], name_en=p.name_en[:160],
                             theme=p.spec["theme"], **{k: v for k, v in p.rules.items() if k in RULE_FIELDS})
        self.computed = [ind for ind in (self._pm25_mean(), *self._no_water()) if ind is not None]

    def _category_codes(self) -> set[str]:
        codes = {s["alarm_category"] for s in kind_specs().values()}
        codes.add(self.doc["computed"]["no_water"]["case_category"])
        return codes

    def _computed(self, *, district: Area, spec: dict, **fields) -> Indicator:
        """A computed indicator of ``district``; its virtual sensor is marked
        generated and owned by the district's department of the right kind."""
        abbr = self.abbr.get(district.code, district.code)
        ind = create_indicator(
            code=f"{spec['prefix']}-{abbr}", name=spec["name_zh"].format(district=district.name)[:120],
            name_en=spec["name_en"].format(district_en=district.name_en or district.name)[:160], theme=spec["theme"],
            **fields, **{k: v for k, v in spec["rules"].items() if k in RULE_FIELDS},
        )
        update_sensor(ind.sensor, generated=True, department=self.department_for(spec["department_kind"], district))
        return ind

    def _pm25_mean(self) -> Indicator | None:
        spec = self.doc["computed"]["pm25_mean"]
        inputs = [p.code for p in self.of_kind(spec["kind"]) if p.district.pk == self.pm25_district.pk]
        if not inputs:
            return None
        return self._computed(district=self.pm25_district, spec=spec, source=Source.AGGREGATE, inputs=inputs,
                              aggregate="mean", interval_s=spec["interval_min"] * 60)

    def _no_water(self) -> list[Indicator]:
        spec = self.doc["computed"]["no_water"]
        category = self.categories.get(spec["case_category"])
        if category is None:
            return []
        first = self._at_level(self.burst_street, "district", 1)
        others = [d for d in self.districts if d.pk != first.pk]
        districts = [first, *self.rng.sample(others, min(len(others), spec["districts"] - 1))]
        return [self._computed(district=d, spec=spec, source=Source.CASES, case_category=category, case_area=d)
                for d in districts]

    # -- readings
    def generate(self) -> None:
        rng = self.np
        for p in self.placed:
            off = self.rng.randrange(p.spec["interval_min"]) * MINUTE_MS
            p.ts = np.arange(self.start_ms + off, self.now_ms + 1, p.interval_ms, dtype=np.int64)
            p.values = normal(p.kind, p.params, p.ts, self.offset_ms)
        self._weather()
        self._drift()
        for p in self.placed:  # noise before incidents: an incident's shape is what the sensor saw
            p.values = noisy(p.kind, p.params, p.values, rng)
        self._incidents()
        self._dropouts()
        for p in self.placed:
            p.values = np.round(p.values, p.spec.get("decimals", 3))

    def _weather(self) -> None:
        """City-wide air-quality weather: a smooth random factor with a
        correlation time of about a day and a half."""
        hours = np.arange(self.start_ms // HOUR_MS - 1, self.now_ms // HOUR_MS + 2)
        z = np.empty(len(hours))
        phi = math.exp(-1 / 36)
        z[0] = self.np.normal()
        eps = self.np.normal(size=len(hours))
        for i in range(1, len(hours)):
            z[i] = phi * z[i - 1] + math.sqrt(1 - phi * phi) * eps[i]
        factor = np.exp(0.3 * np.clip(z, -2.2, 1.3))
        for p in self.of_kind("pm25"):
            p.values = p.values * np.interp(p.ts / HOUR_MS, hours, factor)

    def _drift(self) -> None:
        """Slow calibration drift on about one sensor in ten of the drifting kinds."""
        drift = {"water_pressure": (-0.02, -0.01), "pm25": (3.0, 6.0), "noise": (1.5, 3.0), "river_level": (0.03, 0.06)}
        span = max(self.now_ms - self.start_ms, 1)
        for p in self.placed:
            if p.kind in drift and self.rng.random() < 0.1:
                total = self.rng.uniform(*drift[p.kind])
                p.values = p.values + total * (p.ts - self.start_ms) / span
                p.note = "drift"

    def _incidents(self) -> None:
        T, rng = self.now_ms, self.np
        H = HOUR_MS
        # 1. A main burst in one street, 3 h ago, still going on.
        burst = [p for p in self.of_kind("water_pressure") if p.street.pk == self.burst_street.pk][:3]
        tb = T - 3 * H
        for p, severity in zip(burst, (1.0, 0.7, 0.55), strict=False):
            f = np.where(p.ts >= tb, 0.25 + 0.47 * np.clip((p.ts - tb) / H, 0, 1), 0.0)
            p.values = p.values * (1 - severity * f)
            p.note = "incident:burst"
        if burst:
            self.burst_sensor = burst[0]
            self.planted.append(f"burst at {self._when(tb)} in {self.burst_street.name} "
                                f"({', '.join(p.code for p in burst)}), still going on")
        # 2. A manhole cover displaced 14 h ago, put back after 170 minutes.
        covers = self.of_kind("manhole_cover")
        if covers:
            p = covers[0]
            t0 = T - 14 * H
            on = (p.ts >= t0) & (p.ts < t0 + 170 * MINUTE_MS)
            p.values = np.where(on, 18.5 + rng.normal(0, 0.8, len(p.ts)), p.values)
            p.note = "incident:manhole"
            self.planted.append(f"manhole cover {p.code} displaced at {self._when(t0)} for 170 min")
        # 3. Rain: two ordinary showers earlier, heavy rain 40 h ago in one district.
        self._rain(self.start_ms + int(0.23 * self.days * DAY_MS), river=0.25, ponding=7.0, heavy=False)
        self._rain(self.start_ms + int(0.55 * self.days * DAY_MS), river=0.15, ponding=4.0, heavy=False)
        self._rain(T - 40 * H, river=0.2, ponding=6.0, heavy=True)
        # 4. A PM2.5 episode around a construction site, 26 h to 5 h ago.
        self._pm25_episode(T - 26 * H)
        # 5. A building tilting more and more for 10 days.
        tilts = self.of_kind("building_tilt")
        if tilts:
            p = tilts[0]
            c0 = max(self.start_ms, T - 10 * DAY_MS)
            share = np.clip((p.ts - c0) / max(T - c0, 1), 0, 1)
            p.values = p.values + (5.9 - p.params["base"]) * share ** 1.6
            p.note = "incident:tilt"
            self.planted.append(f"building tilt {p.code} creeping up since {self._when(c0)}, still rising")
        # 6. A gas leak about four days ago.
        gas = self.of_kind("gas")
        if gas:
            p = gas[0]
            t0 = max(self.eval_ms + 2 * H, T - 4 * DAY_MS - 6 * H)
            shape = _ramp(p.ts, t0, 25 * MINUTE_MS, 60 * MINUTE_MS, 30 * MINUTE_MS)
            p.values = p.values + 34 * shape
            p.note = "incident:gas"
            self.planted.append(f"gas leak at {p.code} from {self._when(t0)}, about 2 h")
        # 7. Construction noise in the night, two nights ago.
        noise = self.of_kind("noise")
        if noise:
            p = noise[0]
            midnight = (T - 2 * DAY_MS + self.offset_ms) // DAY_MS * DAY_MS - self.offset_ms
            t0 = midnight + 23 * H + 30 * MINUTE_MS
            p.values = p.values + 22 * _ramp(p.ts, t0, 10 * MINUTE_MS, 4 * H, 10 * MINUTE_MS)
            p.note = "incident:noise"
            self.planted.append(f"night construction noise at {p.code} from {self._when(t0)} for 4 h")
        # 8. A pressure gauge stuck at its reading of 9 h ago (the flat-line rule's warning), still stuck.
        gauges = [p for p in self.of_kind("water_pressure") if not p.note.startswith("incident")]
        if gauges:
            p = gauges[-1]
            t0 = max(self.eval_ms + 2 * H, T - 9 * H)
            stuck = p.ts >= t0
            if stuck.any():
                p.values = np.where(stuck, p.values[np.argmax(stuck)], p.values)
                p.note = "incident:stuck"
                self.planted.append(f"pressure gauge {p.code} stuck since {self._when(t0)}, still stuck")

    def _rain(self, t0: int, *, river: float, ponding: float, heavy: bool) -> None:
        alarmed = False
        for p in self.of_kind("river_level"):
            shape = _swell(p.ts, t0, 6 * HOUR_MS, 10 * HOUR_MS)
            rise = river * self.rng.uniform(0.7, 1.2)
            if heavy and p.district.pk == self.rain_district.pk:
                if not alarmed:  # the first river sensor of the district goes above its alarm level
                    rise, alarmed = self._rise_to(p, shape, p.rules["alarm_high"] + 0.1), True
                    p.note = "incident:rain"
                    self.planted.append(f"river {p.code} above its alarm level after rain at {self._when(t0)}")
                else:
                    rise = 0.55 * self.rng.uniform(0.9, 1.1)
            p.values = p.values + rise * shape
        alarmed = False
        for p in self.of_kind("road_ponding"):
            shape = _swell(p.ts, t0, int(1.5 * HOUR_MS), int(2.5 * HOUR_MS))
            depth = ponding * self.rng.random()
            if heavy and p.district.pk == self.rain_district.pk:
                depth = self.rng.uniform(11, 18)
                if not alarmed:
                    depth, alarmed, p.note = 32.0, True, "incident:rain"
                    self.planted.append(f"road {p.code} flooded 32 cm after rain at {self._when(t0)}")
            p.values = p.values + depth * shape

    @staticmethod
    def _rise_to(p: Placed, shape: np.ndarray, level: float) -> float:
        """The smallest rise (in 5 cm steps) that takes the series above ``level``."""
        rise = 0.5
        while rise < 3 and (p.values + rise * shape).max() <= level:
            rise += 0.05
        return rise

    def _pm25_episode(self, t0: int) -> None:
        sensors = self.of_kind("pm25")
        if not sensors:
            return
        site = next((p for p in sensors if p.district.pk == self.pm25_district.pk), sensors[0])
        for p in sensors:  # dust spreading from the site: 70 µg/m³ more at the site, half that 5 km away
            dx = (p.lon - site.lon) * 111.0 * math.cos(math.radians(site.lat))
            dy = (p.lat - site.lat) * 111.0
            weight = math.exp(-math.hypot(dx, dy) / 7.0)
            shape = _ramp(p.ts, t0, 8 * HOUR_MS, 6 * HOUR_MS, 7 * HOUR_MS)
            p.values = p.values + 70 * weight * shape * np.exp(self.np.normal(0, 0.05, len(p.ts)))
        site.values = site.values + 110 * _ramp(site.ts, t0 + 6 * HOUR_MS, HOUR_MS, 7 * HOUR_MS, HOUR_MS)
        site.note = "incident:pm25"
        self.planted.append(f"PM2.5 episode from {self._when(t0)} around {site.code} ({site.street.name})")

    def _dropouts(self) -> None:
        """Gaps of hours on a few sensors; one or two silent since yesterday."""
        free = [p for p in self.placed if not p.note.startswith("incident")]
        self.rng.shuffle(free)
        n_silent = 2 if self.count >= 50 else 1
        for p in free[:n_silent]:
            since = self.now_ms - int(self.rng.uniform(18, 30) * HOUR_MS)
            keep = p.ts < since
            p.ts, p.values, p.note = p.ts[keep], p.values[keep], "silent"
            self.planted.append(f"{p.code} silent since {self._when(since)}")
        # Gaps where the rules see them (the evaluated days) when those are long enough.
        lo = self.eval_ms + 6 * HOUR_MS if self.now_ms - self.eval_ms >= 3 * DAY_MS else self.start_ms + DAY_MS
        hi = self.now_ms - 36 * HOUR_MS
        gaps = free[n_silent:n_silent + max(1, self.count // 60)] if hi > lo else []
        for p in gaps:
            g0 = int(self.rng.uniform(lo, hi))
            g1 = g0 + int(self.rng.uniform(4, 10) * HOUR_MS)
            keep = (p.ts < g0) | (p.ts >= g1)
            p.ts, p.values, p.note = p.ts[keep], p.values[keep], "gap"
        if gaps:
            self.planted.append(f"gaps of hours on {', '.join(p.code for p in gaps)}")

    def _when(self, ms: int) -> str:
        return f"{from_ms(ms).astimezone(ZoneInfo(settings.TIME_ZONE)):%m-%d %H:%M}"

    def plant_reports(self) -> None:
        category = self.categories.get(self.doc["computed"]["no_water"]["case_category"])
        if category is not None:
            self._plant_no_water_reports(category)

    def _plant_no_water_reports(self, category: Category) -> None:
        """Residents near the burst call the hotline about having no water,
        in the hour after the pressure fell."""
        from chengyun.cases.models import Channel
        from chengyun.intake.services import ReportInput, submit
        from chengyun.org.models import User

        from .texts import compose

        s0 = getattr(self, "burst_sensor", None)
        if s0 is None:
            return
        operator = User.objects.filter(username="sim-operator").first()
        t0 = self.now_ms // HOUR_MS * HOUR_MS - 2 * HOUR_MS + 3 * MINUTE_MS  # all six in one whole hour
        for k in range(6):
            t = t0 + k * 9 * MINUTE_MS
            title, description, address = compose(category, self.rng, street_name=self.burst_street.name)
            phone = "100" + "".join(self.rng.choice("0123456789") for _ in range(8))  # never a real number
            with simulated(from_ms(t)), transaction.atomic():
                submit(ReportInput(
                    channel=Channel.HOTLINE, title=title, description=description, category=category,
                    lon=s0.lon + self.rng.uniform(-0.002, 0.002), lat=s0.lat + self.rng.uniform(-0.002, 0.002),
                    address=address, contact={"name": self.rng.choice("王李张刘陈") + "先生", "phone": phone},
                    source="demo-generator", idempotency_key=f"demo-sensors-nowater-{s0.code}-{k}", generated=True,
                ), by=operator)
        self.planted.append(f"6 no-water reports near {s0.code} from {self._when(t0)}")

    # -- loading
    def ingest_all(self) -> dict:
        """History without rules (a day at a time), the learned baselines, then
        the last days with the rules on (an hour at a time, at that hour's
        simulated time). Computed indicators are computed after each batch,
        by the same function as in production."""
        series = [(p.code, p.ts.tolist(), p.values.tolist(), p.ts) for p in self.placed]
        computed = Indicator.objects.filter(pk__in=[i.pk for i in self.computed]).select_related(
            "sensor", "case_area", "case_category")
        buckets = self.days * DAY_MS // (5 * MINUTE_MS) + 10
        stats = {"stored": 0, "opened": 0, "closed": 0}

        def batch(lo: int, hi: int) -> list[tuple]:
            rows: list[tuple] = []
            for code, ts_list, vs_list, ts in series:
                i, j = np.searchsorted(ts, [lo, hi])
                if j > i:
                    rows.extend(zip(repeat(code, j - i), ts_list[i:j], vs_list[i:j], strict=False))
            return rows

        def run(lo: int, hi: int, evaluate: bool) -> None:
            end = min(hi - 1, self.now_ms)  # a computed bucket ending at ``hi`` waits for the readings at ``hi``
            with simulated(from_ms(end)):
                t0 = time.perf_counter()
                res = ingest(batch(lo, hi), source=SOURCE, evaluate=evaluate)
                t1 = time.perf_counter()
                done = compute_indicators(from_ms(end), indicators=computed, max_buckets=buckets)
                t2 = time.perf_counter()
                if evaluate:
                    sweep_missing(end)
                t3 = time.perf_counter()
            for key, seconds in (("ingest_s", t1 - t0), ("compute_s", t2 - t1), ("sweep_s", t3 - t2)):
                stats[key] = stats.get(key, 0.0) + seconds
            stats["stored"] += res.stored + done["values"]
            stats["opened"] += res.warnings_opened + done["warnings_opened"]
            stats["closed"] += res.warnings_closed + done["warnings_closed"]

        forget_sensors()
        t = time.perf_counter()
        edges = [*range(self.start_ms, self.eval_ms, DAY_MS), self.eval_ms]
        for lo, hi in zip(edges, edges[1:], strict=False):
            run(lo, hi, evaluate=False)
        stats["history_s"] = time.perf_counter() - t
        t = time.perf_counter()
        compute_baselines(Indicator.objects.filter(anomaly=True, active=True, sensor__generated=True),
                          weeks=4, at=from_ms(self.eval_ms))
        stats["baselines_s"] = time.perf_counter() - t
        t = time.perf_counter()
        # Three hours at a time, the last day an hour at a time: an alarm's case
        # is made at the end of its batch, so the recent ones get their hour.
        fine = max(self.eval_ms, (self.now_ms - DAY_MS) // HOUR_MS * HOUR_MS)
        edges = [*range(self.eval_ms, fine, 3 * HOUR_MS), *range(fine, self.now_ms, HOUR_MS), self.now_ms + 1]
        for lo, hi in zip(edges, edges[1:], strict=False):
            run(lo, hi, evaluate=True)
        stats["rules_s"] = time.perf_counter() - t
        return stats


def load_sensors(log=print, *, count: int = 300, days: int = 30, seed: int = 20261127) -> dict:
    """Create the demo sensors and load their generated readings. Idempotent:
    when generated sensors exist, nothing is added."""
    existing = Sensor.objects.filter(generated=True).count()
    if existing:
        log(f"  sensors: {existing} generated sensors already present, none added")
        return {"sensors": 0}
    if count <= 0 or days <= 0:
        return {"sensors": 0}
    started = time.perf_counter()
    demo = DemoSensors(count=count, days=days, seed=seed, log=log)
    if not demo.deepest:
        log("  sensors: no areas loaded, none added")
        return {"sensors": 0}
    demo.place_all()
    t = time.perf_counter()
    demo.create_registry()
    registry_s = time.perf_counter() - t
    t = time.perf_counter()
    demo.generate()
    generate_s = time.perf_counter() - t
    demo.plant_reports()
    stats = demo.ingest_all()
    total_s = time.perf_counter() - started
    warnings = Warning.objects.filter(generated=True)
    summary = {
        "sensors": len(demo.placed), "computed": len(demo.computed), "readings": stats["stored"],
        "rollups": Rollup.objects.filter(sensor__generated=True).count(),
        "warnings_open": warnings.filter(ended_ms__isnull=True).count(),
        "warnings_closed": warnings.filter(ended_ms__isnull=False).count(),
        "alarm_cases": warnings.exclude(case=None).values("case").distinct().count(),
        "seconds": round(total_s, 1),
    }
    by_kind: dict[str, int] = {}
    for p in demo.placed:
        by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
    rate = stats["stored"] / max(stats["history_s"] + stats["rules_s"], 1e-9)
    log(f"  sensors: {len(demo.placed)} generated ({', '.join(f'{k} {n}' for k, n in by_kind.items())}), "
        f"{len(demo.computed)} computed indicators; registry written in {registry_s:.1f} s")
    log(f"  readings: {stats['stored']} generated over {days} days, generated in {generate_s:.1f} s; "
        f"ingest {stats['history_s']:.1f} s without rules, baselines {stats['baselines_s']:.1f} s, "
        f"{stats['rules_s']:.1f} s with rules ({rate:,.0f} readings/s)")
    log(f"    of those {stats['history_s'] + stats['rules_s']:.1f} s together: ingest {stats['ingest_s']:.1f} s, "
        f"computed indicators {stats['compute_s']:.1f} s, "
        f"missing-data sweeps {stats['sweep_s']:.1f} s")
    log(f"  warnings: {summary['warnings_open']} open, {summary['warnings_closed']} closed; "
        f"alarm cases: {summary['alarm_cases']}; total {total_s:.1f} s")
    for line in demo.planted:
        log(f"    planted: {line}")
    log("  all sensors, readings, incidents and warnings above are generated demo data (pack/SENSORS_SOURCE.md)")
    summary["planted"] = demo.planted
    return summary


__all__ = ["load_sensors", "params_for", "normal", "noisy", "kind_specs"]
