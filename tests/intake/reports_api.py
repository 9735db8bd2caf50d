"""Submitting and reading reports through the JSON API, as a given user."""

from __future__ import annotations

import math

from chengyun.intake.geo import EARTH_RADIUS_M

REPORTS = "/api/v1/reports/"


def report_url(number: str, *rest: str) -> str:
    return "/".join([REPORTS.rstrip("/"), number, *rest])


def post_report(client, user, *, expect: int = 201, key: str | None = None, **body) -> dict:
    """POST one report as ``user``; assert the status code; return the JSON."""
    client.force_login(user)
    body.setdefault("channel", "sensor")
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post(REPORTS, data=body, content_type="application/json", headers=headers)
    assert response.status_code == expect, response.content
    return response.json()


def post(client, user, url: str, *, expect: int = 200, **body) -> dict:
    client.force_login(user)
    response = client.post(url, data=body, content_type="application/json")
    assert response.status_code == expect, response.content
    return response.json()


def get(client, user, url: str, *, expect: int = 200, **params) -> dict:
    client.force_login(user)
    response = client.get(url, params)
    assert response.status_code == expect, response.content
    return response.json()


def shift(lon: float, lat: float, *, east_m: float = 0.0, north_m: float = 0.0) -> tuple[float, float]:
    """The point ``east_m`` metres east and ``north_m`` metres north of (lon, lat)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lon + dlon, lat + dlat
