"""GeoReport v2 output: JSON and XML from the same rows, and W3C datetimes.

The XML follows the specification's examples: a root element holding one
element per row (``<services><service>…``), lists inside a row as a wrapper
holding one element per item (``<values><value>…``), ``true``/``false`` for
booleans and an empty element for a missing value. JSON is the same data
(the spec's "Spark convention"): a list of objects, ``null`` for missing.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import HttpResponse

XML_CONTENT_TYPE = "text/xml; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
FORMATS = ("json", "xml")

# The element name of one item of a list-valued field.
ITEM_TAGS = {
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def _text(value) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _fill(element: ET.Element, value) -> None:
    if isinstance(value, dict):
        for key, v in value.items():
            _fill(ET.SubElement(element, key), v)
    elif isinstance(value, list):
        tag = ITEM_TAGS.get(element.tag, "item")
        for item in value:
            _fill(ET.SubElement(element, tag), item)
    else:
        element.text = _text(value)


def to_xml(root: str, data, item: str | None = None) -> str:
    """``data`` is a list of rows (each becomes an ``item`` element) or one dict."""
    element = ET.Element(root)
    if isinstance(data, list):
        for row in data:
            _fill(ET.SubElement(element, item or "item"), row)
    else:
        _fill(element, data)
    ET.indent(element, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(element, encoding="unicode", short_empty_elements=False) + "\n"


def render(fmt: str, data, *, root: str, item: str | None = None, status: int = 200) -> HttpResponse:
    if fmt == "xml":
        return HttpResponse(to_xml(root, data, item), content_type=XML_CONTENT_TYPE, status=status)
    body = json.dumps(data, ensure_ascii=False, indent=None, separators=(",", ":"))
    return HttpResponse(body, content_type=JSON_CONTENT_TYPE, status=status)


def errors(fmt: str, status: int, *descriptions: str) -> HttpResponse:
    """The spec's error list: ``[{"code": 400, "description": "…"}]`` / ``<errors><error>…``."""
    rows = [{"code": status, "description": str(d)} for d in descriptions]
    return render(fmt, rows, root="errors", item="error", status=status)


# --------------------------------------------------------------------------- datetimes


def city_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def w3c(value: datetime | None) -> str | None:
    """``2024-05-01T09:30:00+08:00``: W3C / RFC 3339, in the city's time zone."""
    if value is None:
        return None
    return value.astimezone(city_zone()).replace(microsecond=0).isoformat()


_W3C = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?)?$"
)


YEARS = (1900, 2199)  # the years a datetime sent to us may have


def parse_w3c(text: str, *, date_only_end: bool = False) -> datetime | None:
    """Parse a W3C datetime (``2010-01-01T00:00:00Z``, ``…+08:00``); a date
    alone means its start (or, with ``date_only_end``, its end) in the city's
    time zone, as does a time without an offset. ``None`` if it is not one,
    or if its year is outside :data:`YEARS`."""
    m = _W3C.match((text or "").strip())
    if not m:
        return None
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    if not YEARS[0] <= int(y) <= YEARS[1]:
        return None  # a window or a time zone shift around year 1 or 9999 would leave datetime's range
    try:
        day = date(int(y), int(mo), int(d))
        if hh is None:
            local = datetime.combine(day, time.min, tzinfo=city_zone())
            return local + timedelta(days=1) - timedelta(microseconds=1) if date_only_end else local
        clock = time(int(hh), int(mm), int(ss or 0), int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None
    if tz is None:
        zone = city_zone()
    elif tz in ("Z", "z"):
        zone = UTC
    else:
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            return None
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime.combine(day, clock, tzinfo=zone)
