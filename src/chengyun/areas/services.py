"""Loading areas from GeoJSON and answering where a point is."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext as _

from chengyun.audit.services import record

from . import locator as locator_mod

_suspend_bumps = {"depth": 0}


class AreaImportError(Exception):
    """A file that cannot be imported; the message names the feature and field."""


def bump_area_version() -> None:
    if _suspend_bumps["depth"]:
        return
    from .models import AreaSetVersion

    updated = AreaSetVersion.objects.filter(id=1).update(version=F("version") + 1)
    if not updated:
        AreaSetVersion.objects.get_or_create(id=1, defaults={"version": 1})
    transaction.on_commit(locator_mod.invalidate)
    locator_mod.invalidate()


@contextlib.contextmanager
def one_version_bump():
    _suspend_bumps["depth"] += 1
    try:
        yield
    finally:
        _suspend_bumps["depth"] -= 1
    bump_area_version()


@dataclass
class ImportResult:
    level: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    codes: list[str] = field(default_factory=list)


def _feature_label(index: int, props: dict, code_field: str) -> str:
    code = props.get(code_field) if isinstance(props, dict) else None
    return _("feature %(index)s (code %(code)s)") % {"index": index, "code": code} if code else _(
        "feature %(index)s"
    ) % {"index": index}


def _read_features(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise AreaImportError(_("%(path)s: file not found") % {"path": path}) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AreaImportError(_("%(path)s: not a JSON file (%(error)s)") % {"path": path, "error": exc}) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise AreaImportError(_("%(path)s: not a GeoJSON FeatureCollection") % {"path": path})
    return doc["features"]


def _geometry(feature: dict, label: str):
    geo = feature.get("geometry")
    if not isinstance(geo, dict):
        raise AreaImportError(_("%(feature)s: no geometry") % {"feature": label})
    if geo.get("type") not in ("Polygon", "MultiPolygon"):
        raise AreaImportError(
            _("%(feature)s: geometry type %(type)s is not Polygon or MultiPolygon")
            % {"feature": label, "type": geo.get("type")}
        )
    try:
        geom = shapely.from_geojson(json.dumps(geo))
    except Exception as exc:  # GEOS raises a plain GEOSException
        raise AreaImportError(_("%(feature)s: unreadable geometry (%(error)s)") % {"feature": label, "error": exc}) from None
    if geom.is_empty:
        raise AreaImportError(_("%(feature)s: empty geometry") % {"feature": label})
    if not geom.is_valid:
        raise AreaImportError(
            _("%(feature)s: invalid geometry (%(reason)s)") % {"feature": label, "reason": shapely.is_valid_reason(geom)}
        )
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise AreaImportError(
            _("%(feature)s: coordinates are not longitude/latitude in EPSG:4326") % {"feature": label}
        )
    return geom


def _text(props: dict, fld: str | None, label: str, required: bool) -> str:
    if not fld:
        return ""
    value = props.get(fld)
    if value is None or str(value).strip() == "":
        if required:
            raise AreaImportError(_("%(feature)s: missing field “%(field)s”") % {"feature": label, "field": fld})
        return ""
    return str(value).strip()


def import_areas(
    path: str | Path,
    *,
    level: str,
    code_field: str,
    name_field: str,
    name_en_field: str | None = None,
    parent_code_field: str | None = None,
    parent_by_location: bool = False,
    level_name: str | None = None,
    level_name_en: str | None = None,
    generated_field: str | None = None,
    actor=None,
) -> ImportResult:
    """Import one level of areas from a GeoJSON file; idempotent by code.

    Everything is checked first and written in one transaction: a bad
    feature leaves the database as it was.
    """
    from .models import Area, AreaLevel

    if parent_code_field and parent_by_location:
        raise AreaImportError(_("choose either --parent-code-field or --parent-by-location, not both"))
    features = _read_features(Path(path))
    if not features:
        raise AreaImportError(_("%(path)s: the file holds no features") % {"path": path})

    lvl = AreaLevel.objects.filter(key=level).first()
    deepest = AreaLevel.objects.order_by("-depth").first()
    parent_level = None
    if lvl is not None:
        parent_level = AreaLevel.objects.filter(depth__lt=lvl.depth).order_by("-depth").first()
    elif deepest is not None:
        parent_level = deepest
    if parent_level is not None and not (parent_code_field or parent_by_location):
        raise AreaImportError(
            _("level “%(level)s” sits below “%(parent)s”: give --parent-code-field or --parent-by-location")
            % {"level": level, "parent": parent_level.key}
        )
    if parent_level is None and (parent_code_field or parent_by_location):
        raise AreaImportError(_("level “%(level)s” is the top level: it has no parents") % {"level": level})

    parsed = []
    seen: set[str] = set()
    for i, feature in enumerate(features, start=1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise AreaImportError(_("feature %(index)s: not a GeoJSON Feature") % {"index": i})
        props = feature.get("properties") or {}
        label = _feature_label(i, props, code_field)
        code = _text(props, code_field, label, required=True)
        if code in seen:
            raise AreaImportError(_("%(feature)s: code %(code)s appears twice in the file") % {"feature": label, "code": code})
        seen.add(code)
        parsed.append(
            {
                "label": label,
                "code": code,
                "name": _text(props, name_field, label, required=True),
                "name_en": _text(props, name_en_field, label, required=False),
                "parent_code": _text(props, parent_code_field, label, required=True) if parent_code_field else None,
                "generated": bool(props.get(generated_field)) if generated_field else False,
                "geom": _geometry(feature, label),
            }
        )

    # Resolve parents before writing anything.
    if parent_level is not None:
        parents = {p.code: p for p in Area.objects.filter(level=parent_level)}
        if not parents:
            raise AreaImportError(_("no areas of the level above (“%(level)s”) are loaded yet") % {"level": parent_level.key})
        if parent_by_location:
            parent_codes = list(parents)
            geoms = [parents[c].geometry for c in parent_codes]
            sub = locator_mod.Locator(
                [locator_mod.AreaInfo(i, c, "", "", "", "", "", 0, None) for i, c in enumerate(parent_codes)], geoms
            )
            points = [p["geom"].representative_point() for p in parsed]
            idx = sub.locate_many([pt.x for pt in points], [pt.y for pt in points])
            for item, j in zip(parsed, idx, strict=True):
                if j < 0:
                    raise AreaImportError(
                        _("%(feature)s: lies outside every area of level “%(level)s”")
                        % {"feature": item["label"], "level": parent_level.key}
                    )
                item["parent"] = parents[sub.areas[j].code]
        else:
            for item in parsed:
                parent = parents.get(item["parent_code"])
                if parent is None:
                    raise AreaImportError(
                        _("%(feature)s: parent code %(code)s is not an area of level “%(level)s”")
                        % {"feature": item["label"], "code": item["parent_code"], "level": parent_level.key}
                    )
                item["parent"] = parent
    else:
        for item in parsed:
            item["parent"] = None

    result = ImportResult(level=level)
    with transaction.atomic(), one_version_bump():
        if lvl is None:
            depth = (deepest.depth + 1) if deepest is not None else 0
            lvl = AreaLevel.objects.create(
                key=level, name=level_name or level, name_en=level_name_en or level.replace("_", " ").title(), depth=depth
            )
        existing = {a.code: a for a in Area.objects.filter(code__in=[p["code"] for p in parsed])}
        for item in parsed:
            area = existing.get(item["code"])
            if area is not None and area.level_id != lvl.id:
                raise AreaImportError(
                    _("%(feature)s: code %(code)s already belongs to level “%(level)s”")
                    % {"feature": item["label"], "code": item["code"], "level": area.level.key}
                )
            wkb = shapely.to_wkb(item["geom"])
            if area is None:
                area = Area(code=item["code"], level=lvl, path="")
                result.created += 1
            elif (
                area.name == item["name"] and area.name_en == item["name_en"]
                and area.parent_id == (item["parent"].pk if item["parent"] else None)
                and bytes(area.geometry_wkb) == wkb and area.generated == item["generated"]
            ):
                result.unchanged += 1
                continue
            else:
                result.updated += 1
            area.name, area.name_en, area.parent = item["name"], item["name_en"], item["parent"]
            area.generated = item["generated"]
            area.set_geometry(item["geom"])
            area.save()
            new_path = area.compute_path()
            if new_path != area.path:
                old_path = area.path
                Area.objects.filter(pk=area.pk).update(path=new_path)
                if old_path:
                    # Move the subtree along with its root.
                    for child in Area.objects.filter(path__startswith=old_path).exclude(pk=area.pk):
                        Area.objects.filter(pk=child.pk).update(path=new_path + child.path[len(old_path):])
            result.codes.append(item["code"])
        record(
            "areas.import",
            actor=actor,
            object_type="areas.arealevel",
            object_id=lvl.key,
            data={"file": str(path), "created": result.created, "updated": result.updated, "unchanged": result.unchanged},
        )
    return result


def locate(lon: float, lat: float):
    """The chain of areas (top first) holding a point, or an empty tuple."""
    return locator_mod.get_locator().locate_chain(lon, lat)
