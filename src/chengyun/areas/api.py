from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _
from ninja import Query, Router, Schema

from chengyun.cases.errors import CaseInvalid

from .locator import get_locator
from .models import Area

router = Router(tags=["areas"])


class AreaOut(Schema):
    code: str
    name: str
    name_en: str
    level: str


class LocateOut(Schema):
    lon: float
    lat: float
    chain: list[AreaOut]


class LocateIn(Schema):
    lon: float
    lat: float


@router.get("/locate", response={200: LocateOut}, auth=None, summary="Locate a point in the area tree")
def locate_point(request, q: Query[LocateIn]):
    """The chain of areas (top level first) that holds the point (WGS84), or 404 outside the city."""
    if not (-180 <= q.lon <= 180):
        raise CaseInvalid(_("Longitude must be between -180 and 180."), field="lon")
    if not (-90 <= q.lat <= 90):
        raise CaseInvalid(_("Latitude must be between -90 and 90."), field="lat")
    loc = get_locator()
    chain = loc.locate_chain(q.lon, q.lat)
    if not chain:
        raise Http404(_("The point is outside every area."))
    return {
        "lon": q.lon, "lat": q.lat,
        "chain": [{"code": a.code, "name": a.name, "name_en": a.name_en, "level": a.level_key} for a in chain],
    }


class AreaListOut(Schema):
    code: str
    name: str
    name_en: str
    level: str
    parent: str | None
    generated: bool


@router.get("/", response=list[AreaListOut], auth=None, summary="List areas",
            description="Areas by code, filtered by `level` (city, district, street, community, grid …) and "
                        "`parent` (the code of the area above); `limit` (default 1,000, at most 5,000) and "
                        "`offset` page through them. An unknown level or parent is a 400 naming it.")
def list_areas(request, level: str | None = None, parent: str | None = None, limit: int = 1000, offset: int = 0):
    from .models import AreaLevel

    qs = Area.objects.select_related("level", "parent").order_by("code")
    if level:
        if not AreaLevel.objects.filter(key=level).exists():
            raise CaseInvalid(_("Unknown level “%(level)s”; the levels: %(levels)s.") % {
                "level": level, "levels": ", ".join(AreaLevel.objects.order_by("depth").values_list("key", flat=True))},
                field="level")
        qs = qs.filter(level__key=level)
    if parent:
        if not Area.objects.filter(code=parent).exists():
            raise CaseInvalid(_("Unknown area “%(code)s”.") % {"code": parent}, field="parent")
        qs = qs.filter(parent__code=parent)
    limit, offset = max(1, min(limit, 5000)), max(0, offset)
    return [
        {"code": a.code, "name": a.name, "name_en": a.name_en, "level": a.level.key,
         "parent": a.parent.code if a.parent_id else None, "generated": a.generated}
        for a in qs[offset:offset + limit]
    ]


@router.get("/{code}/geojson", auth=None, summary="One area, or its children, as GeoJSON")
def area_geojson(request, code: str, children: bool = False):
    import json

    import shapely

    area = Area.objects.filter(code=code).first()
    if area is None:
        raise Http404(_("No area with this code."))
    areas = list(area.children.all()) if children else [area]
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"code": a.code, "name": a.display_name},
             "geometry": json.loads(shapely.to_geojson(a.geometry))}
            for a in areas
        ],
    }
