"""Helpers for the portal tests: browsers' language headers, a photo with a
GPS position, and the report form as a browser without JavaScript sends it."""

from __future__ import annotations

import io
import re

from PIL import ExifTags, Image

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9"}


def jpeg_with_gps(*, lon: float, lat: float, make: str = "SecretCam") -> bytes:
    """A small JPEG whose EXIF holds a GPS position and a camera maker."""
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)

    def dms(value: float) -> tuple[float, float, float]:
        minutes = (value - int(value)) * 60
        return (float(int(value)), float(int(minutes)), round((minutes - int(minutes)) * 60, 4))

    gps.update({
        ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S", ExifTags.GPS.GPSLatitude: dms(abs(lat)),
        ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W", ExifTags.GPS.GPSLongitude: dms(abs(lon)),
    })
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


def form_token(client, **headers) -> str:
    """The per-form random token of a freshly loaded report form."""
    html = client.get("/report/", **headers).content.decode()
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, "the report form carries a hidden token"
    return match.group(1)


def report_form(client, **fields) -> dict:
    """The fields a browser sends for the report form, with the form's own token."""
    data = {"token": form_token(client), "category": "", "description": "", "address": "", "lon": "", "lat": "",
            "name": "", "phone": "", "email": ""}
    data.update(fields)
    return data
