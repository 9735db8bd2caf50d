"""Photos sent with reports: checked, located, stripped of metadata.

The type is decided by decoding the image (not by its name or the browser's
word), the size and the pixel count are limited, the EXIF GPS position is
read if present, and the stored file is re-encoded from pixels only, so no
EXIF, XMP, JPEG comment, PNG text or maker notes (camera serials, the
reporter's home position, a name or number typed into a comment) survive;
only the colour profile and a PNG's transparent colour are kept. The orientation tag is applied to the
pixels before it is dropped.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from chengyun.cases.errors import CaseInvalid

ALLOWED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_PIXELS = 40_000_000


@dataclass
class CleanPhoto:
    content: bytes
    content_type: str
    extension: str
    width: int
    height: int
    lon: float | None
    lat: float | None
    sha256: str


def _dms(value, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    out = d + m / 60 + s / 3600
    return -out if ref in ("S", "W") else out


def exif_position(img: Image.Image) -> tuple[float | None, float | None]:
    try:
        gps = img.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001 - a broken EXIF block is simply ignored
        return None, None
    if not gps:
        return None, None
    lat = _dms(gps.get(2), gps.get(1))
    lon = _dms(gps.get(4), gps.get(3))
    if lat is None or lon is None or not (-90 <= lat <= 90) or not (-180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None, None
    return lon, lat


def clean_photo(data: bytes, *, field: str = "photo") -> CleanPhoto:
    limit = settings.PHOTO_MAX_BYTES
    if len(data) > limit:
        raise CaseInvalid(_("The photo is too large (at most %(mb)s MB).") % {"mb": limit // (1024 * 1024)}, field=field)
    if not data:
        raise CaseInvalid(_("The photo is empty."), field=field)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            probe.verify()
        if fmt == "MPO":
            # A JPEG that carries more images after the first (Ultra HDR and HDR photos
            # of many phones, stereo cameras): the first is the photo, kept as a JPEG.
            fmt = "JPEG"
        if fmt not in ALLOWED:
            raise CaseInvalid(_("Send a JPEG, PNG or WebP photo."), field=field)
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise CaseInvalid(_("The photo has too many pixels."), field=field)
        lon, lat = exif_position(img)
        icc = img.info.get("icc_profile")  # colours, not about the person: kept
        transparency = img.info.get("transparency")  # which colour is see-through (palette PNGs): kept
        img = ImageOps.exif_transpose(img)
        if fmt == "JPEG":
            img = img.convert("RGB")
        # Pillow writes some of the source's metadata back by default (a JPEG's
        # comment, for one): the stored file gets none of it, only the pixels.
        img.info = {}
        keep = {"icc_profile": icc} if icc else {}
        out = io.BytesIO()
        if fmt == "JPEG":
            img.save(out, "JPEG", quality=85, optimize=True, **keep)
        elif fmt == "PNG":
            if transparency is not None:
                keep["transparency"] = transparency
            img.save(out, "PNG", optimize=True, **keep)
        else:
            img.save(out, "WEBP", quality=85, **keep)
    except CaseInvalid:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CaseInvalid(_("This file is not a photo we can read (JPEG, PNG or WebP)."), field=field) from exc
    content = out.getvalue()
    return CleanPhoto(content, ALLOWED[fmt], fmt.lower().replace("jpeg", "jpg"), img.width, img.height, lon, lat,
                      hashlib.sha256(content).hexdigest())
