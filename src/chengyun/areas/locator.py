"""Map points to the deepest area holding them, and so to every ancestor.

All area polygons sit in one shapely STRtree. A batch of points is answered in
three vectorised steps: the tree gives (point, polygon) candidate pairs by
bounding box, ``shapely.intersects_xy`` on prepared polygons keeps the pairs
where the polygon really covers the point (border included), and a lexsort
picks, per point, the deepest level and among equals the smallest code. That
last rule makes a point on a shared border belong to exactly one area.

The locator is built once per process and rebuilt when the areas change
(signals in this process, a version row for other processes).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import shapely

NOT_FOUND = -1


@dataclass(frozen=True)
class AreaInfo:
    id: int
    code: str
    name: str
    name_en: str
    level_key: str
    level_name: str
    level_name_en: str
    depth: int
    parent_id: int | None

    @property
    def display_name(self) -> str:
        """The name in the reader's language, as ``Area.display_name`` gives it."""
        from chengyun.i18n import prefers_chinese

        return (self.name or self.name_en) if prefers_chinese() else (self.name_en or self.name)


class Locator:
    def __init__(self, areas: list[AreaInfo], geometries: list) -> None:
        order = sorted(range(len(areas)), key=lambda i: areas[i].code)
        self.areas = [areas[i] for i in order]
        self.geoms = np.array([geometries[i] for i in order], dtype=object)
        shapely.prepare(self.geoms)
        self.tree = shapely.STRtree(self.geoms)
        self.depth = np.array([a.depth for a in self.areas], dtype=np.int32)
        self.by_id = {a.id: a for a in self.areas}
        self.index_of_id = {a.id: i for i, a in enumerate(self.areas)}
        self.levels = sorted({(a.depth, a.level_key) for a in self.areas})
        self._chains: dict[int, tuple[AreaInfo, ...]] = {}

    def __len__(self) -> int:
        return len(self.areas)

    def locate_many(self, lons, lats) -> np.ndarray:
        """Index into ``self.areas`` of the deepest area per point, or -1."""
        lons = np.asarray(lons, dtype=np.float64)
        lats = np.asarray(lats, dtype=np.float64)
        result = np.full(lons.shape[0], NOT_FOUND, dtype=np.int64)
        if not len(self.areas) or not lons.shape[0]:
            return result
        points = shapely.points(lons, lats)
        pt_idx, poly_idx = self.tree.query(points)
        if not pt_idx.shape[0]:
            return result
        hit = shapely.intersects_xy(self.geoms[poly_idx], lons[pt_idx], lats[pt_idx])
        pt_idx, poly_idx = pt_idx[hit], poly_idx[hit]
        if not pt_idx.shape[0]:
            return result
        # Per point: deepest level first, then the smallest code (= smallest index).
        order = np.lexsort((poly_idx, -self.depth[poly_idx], pt_idx))
        pt_sorted = pt_idx[order]
        first = np.ones(pt_sorted.shape[0], dtype=bool)
        first[1:] = pt_sorted[1:] != pt_sorted[:-1]
        result[pt_sorted[first]] = poly_idx[order][first]
        return result

    def locate(self, lon: float, lat: float) -> AreaInfo | None:
        """The deepest area holding one point."""
        candidates = self.tree.query(shapely.Point(lon, lat))
        if not candidates.shape[0]:
            return None
        hits = candidates[shapely.intersects_xy(self.geoms[candidates], lon, lat)]
        if not hits.shape[0]:
            return None
        if hits.shape[0] > 1:
            # deepest level first, then the smallest code (= smallest index)
            depths = self.depth[hits]
            hits = hits[depths == depths.max()]
        return self.areas[int(hits.min())]

    def chain(self, area: AreaInfo | None) -> tuple[AreaInfo, ...]:
        """Top-down chain from the top level to ``area``."""
        if area is None:
            return ()
        cached = self._chains.get(area.id)
        if cached is None:
            chain = []
            node: AreaInfo | None = area
            while node is not None:
                chain.append(node)
                node = self.by_id.get(node.parent_id) if node.parent_id else None
            cached = self._chains[area.id] = tuple(reversed(chain))
        return cached

    def locate_chain(self, lon: float, lat: float) -> tuple[AreaInfo, ...]:
        return self.chain(self.locate(lon, lat))


_lock = threading.Lock()
VERSION_CHECK_SECONDS = 5.0


class _PerAreaSet:
    """A value built from the areas, once per process, built again when the
    area set has changed (its version row, checked every
    :data:`VERSION_CHECK_SECONDS`) or after :func:`invalidate`."""

    def __init__(self, build) -> None:
        self.build = build
        self.value = None
        self.version: int | None = None
        self.checked = 0.0

    def get(self):
        if self.version is not None and time.monotonic() - self.checked < VERSION_CHECK_SECONDS:
            return self.value
        with _lock:
            version = _current_version()
            if self.version != version:
                self.value, self.version = self.build(), version
            self.checked = time.monotonic()
            return self.value

    def clear(self) -> None:
        with _lock:
            self.value = self.version = None


def build_locator() -> Locator:
    from .models import Area

    infos, geoms = [], []
    rows = Area.objects.select_related("level").only(
        "id", "code", "name", "name_en", "parent_id", "geometry_wkb",
        "level__key", "level__name", "level__name_en", "level__depth",
    )
    for a in rows.iterator(chunk_size=500):
        infos.append(
            AreaInfo(a.id, a.code, a.name, a.name_en, a.level.key, a.level.name, a.level.name_en,
                     a.level.depth, a.parent_id)
        )
        geoms.append(bytes(a.geometry_wkb))
    return Locator(infos, list(shapely.from_wkb(geoms)) if geoms else [])


def _current_version() -> int:
    from .models import AreaSetVersion

    row = AreaSetVersion.objects.filter(id=1).values_list("version", flat=True).first()
    return row or 0


def get_locator() -> Locator:
    """The process-wide locator, rebuilt when the area set has changed."""
    return _locator.get()


def _build_extent():
    """The top-level areas as one prepared polygon (None while there are none)."""
    from .models import Area

    tops = [shapely.from_wkb(bytes(w))
            for w in Area.objects.filter(parent__isnull=True).values_list("geometry_wkb", flat=True)]
    if not tops:
        return None
    extent = shapely.union_all(tops)
    shapely.prepare(extent)
    return extent


_locator = _PerAreaSet(build_locator)
_extent = _PerAreaSet(_build_extent)


def invalidate() -> None:
    _locator.clear()
    _extent.clear()


def in_city(lon: float, lat: float) -> bool:
    """Whether the point lies in the city: in a top-level area, border
    included; true while there are no areas. For the request path (Open311,
    the portal): it reads only the top-level areas, not the whole tree that
    :func:`get_locator` builds (seconds, in every server process), and
    checks one prepared polygon (~3 µs)."""
    extent = _extent.get()
    return extent is None or bool(shapely.intersects_xy(extent, lon, lat))
