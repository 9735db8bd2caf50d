"""Benchmark: locating points in the demo area pack.

Measures Chengyun's locator (batch and single point) against a plain shapely
STRtree query over the same polygons in the same process, and prints the
ratio. It reads the demo pack's GeoJSON directly, so it needs no database:

    .venv/bin/python bench/locate.py [--points 1000000] [--single 20000]

Nothing here is a test: figures go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import shapely

from chengyun.areas.locator import AreaInfo, Locator

PACK = Path(__file__).resolve().parents[1] / "src" / "chengyun" / "demo" / "pack" / "areas"
LEVELS = ["city", "district", "street", "community", "grid"]


def load():
    infos, geoms, n = [], [], 0
    parent_id = {}
    for depth, level in enumerate(LEVELS):
        doc = json.loads((PACK / f"{level}.geojson").read_text(encoding="utf-8"))
        for f in doc["features"]:
            n += 1
            p = f["properties"]
            parent_id[p["code"]] = n
            infos.append(AreaInfo(n, p["code"], p["name"], p.get("name_en", ""), level, level, level, depth,
                                  parent_id.get(p.get("parent_code"))))
            geoms.append(shapely.from_geojson(json.dumps(f["geometry"])))
    return infos, geoms


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--single", type=int, default=20_000)
    args = ap.parse_args()
    infos, geoms = load()
    t0 = time.perf_counter()
    loc = Locator(infos, geoms)
    build = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    city = geoms[0]
    minx, miny, maxx, maxy = city.bounds
    lons = rng.uniform(minx, maxx, args.points)
    lats = rng.uniform(miny, maxy, args.points)

    # Baseline: plain STRtree over the same polygons, one predicate query, no
    # choice of the deepest level (it only answers "which polygons contain").
    plain_tree = shapely.STRtree(np.array(geoms, dtype=object))

    def plain_batch():
        return plain_tree.query(shapely.points(lons, lats), predicate="within")

    def ours_batch():
        return loc.locate_many(lons, lats)

    t_plain, _ = best_of(plain_batch)
    t_ours, idx = best_of(ours_batch)
    inside = int((idx >= 0).sum())

    k = args.single
    pts = [shapely.Point(x, y) for x, y in zip(lons[:k], lats[:k], strict=True)]

    def plain_single():
        for p in pts:
            plain_tree.query(p, predicate="within")

    def ours_single():
        for x, y in zip(lons[:k].tolist(), lats[:k].tolist(), strict=True):
            loc.locate_chain(x, y)

    ts_plain, _ = best_of(plain_single)
    ts_ours, _ = best_of(ours_single)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, shapely {shapely.__version__}")
    print(f"polygons: {len(geoms)} in {len(LEVELS)} levels; locator build {build * 1000:.0f} ms")
    print(f"batch:  {args.points:,} random points in the city's bounding box ({inside:,} inside)")
    print(f"  plain STRtree query(within):  {args.points / t_plain:>12,.0f} points/s")
    print(f"  chengyun locate_many:          {args.points / t_ours:>12,.0f} points/s   ratio {t_plain / t_ours:.2f}x")
    print(f"single: {k:,} points one at a time")
    print(f"  plain STRtree query(within):  {k / ts_plain:>12,.0f} points/s  ({ts_plain / k * 1e6:.1f} µs each)")
    print(f"  chengyun locate_chain:         {k / ts_ours:>12,.0f} points/s  ({ts_ours / k * 1e6:.1f} µs each)   ratio {ts_plain / ts_ours:.2f}x")


if __name__ == "__main__":
    main()
