"""Cluster warnings (智能发现): many reports of one category, close together,
in a short time, mean something bigger (a burst main, a blocked drain, a
power cut). Per category: ``cluster_reports`` reports within
``cluster_radius_m`` metres and ``cluster_window_minutes`` minutes."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils.translation import gettext as _

from chengyun.audit.services import record
from chengyun.clock import now

from .geo import box, distance_m
from .models import ClusterWarning, Report


def check_cluster(report: Report, *, open_case, ongoing: list[ClusterWarning] | None = None) -> ClusterWarning | None:
    """Add ``report`` to an ongoing warning, or raise a new one when the
    threshold is reached. ``open_case(warning)`` creates the warning's case.
    Reads first; what it writes is one transaction (so that a caller outside
    a transaction holds SQLite's write lock only when there is something to write).

    ``ongoing``: a caller checking many reports in time order may pass the
    warnings that could still be ongoing for all of them (read once); they are
    kept up to date here, and a warning raised is added to them."""
    category = report.category
    if category is None or not category.cluster_reports or report.lon is None or report.lat is None:
        return None
    at = report.received_at
    window = timedelta(minutes=category.cluster_window_minutes)
    radius = category.cluster_radius_m
    candidates = (ClusterWarning.objects.filter(category=category, last_report_at__gte=at - window) if ongoing is None
                  else [w for w in ongoing if w.category_id == category.pk and w.last_report_at >= at - window])
    near_warnings = [w for w in candidates if distance_m(report.lon, report.lat, w.lon, w.lat) <= radius]
    if near_warnings:
        warning = near_warnings[0]
        with transaction.atomic():
            warning.reports.add(report)
            warning.report_count, warning.last_report_at = warning.reports.count(), max(at, warning.last_report_at)
            ClusterWarning.objects.filter(pk=warning.pk).update(report_count=warning.report_count, last_report_at=at)
        return warning
    min_lon, min_lat, max_lon, max_lat = box(report.lon, report.lat, radius)
    near = [
        r for r in Report.objects.filter(
            category=category, received_at__gte=at - window, received_at__lte=at,
            lon__gte=min_lon, lon__lte=max_lon, lat__gte=min_lat, lat__lte=max_lat,
        ).only("id", "lon", "lat", "received_at")
        if distance_m(report.lon, report.lat, r.lon, r.lat) <= radius
    ]
    if len(near) < category.cluster_reports:
        return None
    lon = sum(r.lon for r in near) / len(near)
    lat = sum(r.lat for r in near) / len(near)
    with transaction.atomic():
        warning = _raise(report, category, near, lon, lat, at, radius, open_case)
    if ongoing is not None:
        ongoing.append(warning)
    return warning


def _raise(report, category, near, lon, lat, at, radius, open_case) -> ClusterWarning:
    warning = ClusterWarning.objects.create(
        category=category, lon=lon, lat=lat, radius_m=radius, window_minutes=category.cluster_window_minutes,
        threshold=category.cluster_reports, area=report.area, started_at=min(r.received_at for r in near),
        raised_at=now(), last_report_at=at, report_count=len(near),
    )
    warning.reports.set(near)
    warning.case = open_case(warning)
    ClusterWarning.objects.filter(pk=warning.pk).update(case=warning.case)
    record("cluster.raise", obj=warning, actor="intake", data={
        "category": category.code, "reports": len(near), "radius_m": radius,
        "window_minutes": category.cluster_window_minutes, "case": warning.case.number if warning.case else None,
    })
    return warning


def warning_title(warning: ClusterWarning) -> str:
    return _("Smart discovery: %(count)s reports of “%(category)s” within %(radius)s m in %(minutes)s minutes") % {
        "count": warning.report_count, "category": warning.category.display_name, "radius": warning.radius_m,
        "minutes": warning.window_minutes,
    }
