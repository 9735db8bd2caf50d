"""The vital signs board (城市体征) in the staff console: indicators by theme
with their state and last day, the warnings to look at (sensor warnings and
report clusters together), the sensors on a map; and one indicator's chart
over any range with its warnings, rules and history.

Any signed-in user with a role may look; operators, dispatchers,
supervisors, leaders and administrators may acknowledge a warning (through
:func:`chengyun.signs.rules.acknowledge`). Times are shown in city time.
"""

from __future__ import annotations

from datetime import datetime
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from chengyun.areas.models import Area
from chengyun.clock import now
from chengyun.intake.cluster import warning_title
from chengyun.org import scope

from . import queries
from .models import HOUR_MS, Indicator, Level, Rule, Source, Status, Theme, Warning, from_ms, to_ms
from .rules import acknowledge
from .services import ACK_ROLES, may_acknowledge

MAP_LIMIT = 5000
LAST_POINTS = 50
# Worst first: the tiles of a theme are sorted by this.
STATE_ORDER = {Status.ALARM: 0, Status.WARNING: 1, Status.SILENT: 2, Status.UNKNOWN: 3, Status.OK: 4}
# Colours of the states on the map (the tiles use the same ones in signs.css).
STATE_COLOURS = {Status.OK: "#2e7d32", Status.WARNING: "#ef8f00", Status.ALARM: "#c62828",
                 Status.SILENT: "#546e7a", Status.UNKNOWN: "#b0bec5"}
PRESETS = {"6h": 6 * HOUR_MS, "24h": 24 * HOUR_MS, "7d": 7 * 24 * HOUR_MS, "30d": 30 * 24 * HOUR_MS}
PRESET_LABELS = {"6h": gettext_lazy("6 hours"), "24h": gettext_lazy("24 hours"), "7d": gettext_lazy("7 days"),
                 "30d": gettext_lazy("30 days")}
RESOLUTION_LABELS = {queries.RAW: gettext_lazy("raw readings"), queries.MINUTE: gettext_lazy("per-minute values"),
                     queries.HOUR: gettext_lazy("per-hour values")}
SPARK_W, SPARK_H = 120, 32


def staff_view(view):
    """Signed in (else to the login page) and holding some role (else 403)."""
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not scope.roles_of(request.user):
            raise PermissionDenied(_("The vital signs board is for staff with a role."))
        return view(request, *args, **kwargs)
    return wrapper


def can_acknowledge(user) -> bool:
    return bool(ACK_ROLES & scope.roles_of(user))


# --------------------------------------------------------------------------- numbers and words


def num(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 10_000:
        return f"{v:.0f}"
    return f"{v:.4g}"


def local_text(ms: int) -> str:
    return timezone.localtime(from_ms(ms)).strftime("%Y-%m-%d %H:%M")


def _with_unit(v, unit: str) -> str:
    return f"{num(v)} {unit}".strip()


def normal_band(ind: Indicator) -> tuple[float | None, float | None]:
    """The band a value is normal in: inside the warning levels, or the alarm levels where there are none."""
    low = ind.warn_low if ind.warn_low is not None else ind.alarm_low
    high = ind.warn_high if ind.warn_high is not None else ind.alarm_high
    return low, high


def band_words(ind: Indicator, unit: str) -> str:
    low, high = normal_band(ind)
    if low is not None and high is not None:
        text = _("normal %(low)s–%(high)s") % {"low": num(low), "high": _with_unit(high, unit)}
    elif high is not None:
        text = _("normal up to %(high)s") % {"high": _with_unit(high, unit)}
    elif low is not None:
        text = _("normal from %(low)s") % {"low": _with_unit(low, unit)}
    else:
        return _("no band")
    alarms = []
    if ind.alarm_low is not None and ind.warn_low is not None:
        alarms.append(_("alarm below %(value)s") % {"value": num(ind.alarm_low)})
    if ind.alarm_high is not None and ind.warn_high is not None:
        alarms.append(_("alarm above %(value)s") % {"value": num(ind.alarm_high)})
    return "; ".join([text, *alarms])


def rules_in_words(ind: Indicator, unit: str) -> list[str]:
    out = []
    for level, low, high in ((_("Warning"), ind.warn_low, ind.warn_high), (_("Alarm"), ind.alarm_low, ind.alarm_high)):
        if high is not None:
            out.append(_("%(level)s when the value rises above %(limit)s.") % {"level": level, "limit": _with_unit(high, unit)})
        if low is not None:
            out.append(_("%(level)s when the value falls below %(limit)s.") % {"level": level, "limit": _with_unit(low, unit)})
    if any(x is not None for x in (ind.warn_low, ind.warn_high, ind.alarm_low, ind.alarm_high)):
        if ind.hysteresis:
            out.append(_("A band warning ends only when the value is back inside the band by %(h)s.")
                       % {"h": _with_unit(ind.hysteresis, unit)})
        else:
            out.append(_("A band warning ends as soon as the value is back inside the band."))
    if ind.rate_limit:
        out.append(_("Warning when the value changes faster than %(limit)s per minute; alarm at twice that; "
                     "it ends below half the limit.") % {"limit": _with_unit(ind.rate_limit, unit)})
    if ind.missing_intervals:
        out.append(_("Silent (no data) after %(n)s expected intervals of %(s)s s without a reading.")
                   % {"n": ind.missing_intervals, "s": ind.sensor.interval_s})
    if ind.flatline_minutes and not ind.flatline_tolerance:
        out.append(_("Stuck value: warning when the readings do not change for %(minutes)s minutes; it ends when "
                     "the value moves.") % {"minutes": ind.flatline_minutes})
    elif ind.flatline_minutes:
        out.append(_("Stuck value: warning when the readings stay within %(tolerance)s of each other for "
                     "%(minutes)s minutes; it ends when the value moves.")
                   % {"tolerance": _with_unit(ind.flatline_tolerance, unit), "minutes": ind.flatline_minutes})
    if ind.anomaly:
        out.append(_("Unusual for the time of week: warning when the robust z-score against the learned "
                     "hour-of-week baseline exceeds %(score)s (alarm above %(alarm)s); it ends below %(clear)s.")
                   % {"score": num(ind.anomaly_score), "alarm": num(2 * ind.anomaly_score),
                      "clear": num(ind.anomaly_clear)})
    if not out:
        out.append(_("No rules: this indicator is only watched."))
    return out


def explain_warning(w: Warning, unit: str) -> str:
    """What tripped, in words, from the warning's explanation."""
    e = w.explanation or {}
    if w.rule in (Rule.BAND_HIGH, Rule.BAND_LOW):
        key = (_("The value %(value)s rose above the limit %(limit)s.") if w.rule == Rule.BAND_HIGH
               else _("The value %(value)s fell below the limit %(limit)s."))
        text = key % {"value": _with_unit(e.get("value", w.peak_value), unit), "limit": _with_unit(e.get("limit"), unit)}
    elif w.rule == Rule.RATE:
        text = _("Changed from %(from)s to %(to)s in %(minutes)s min: %(rate)s per minute (limit %(limit)s).") % {
            "from": num(e.get("from")), "to": _with_unit(e.get("to"), unit), "minutes": num(e.get("minutes")),
            "rate": num(e.get("peak_rate", e.get("rate_per_minute"))), "limit": num(e.get("limit_per_minute")),
        }
    elif w.rule == Rule.FLATLINE and e.get("readings"):
        if e.get("low") == e.get("high"):
            text = _("%(readings)s readings in a row were all %(value)s, for %(minutes)s minutes or more: a stuck "
                     "gauge or a dead line?")
        else:
            text = _("%(readings)s readings in a row stayed between %(low)s and %(high)s, for %(minutes)s minutes "
                     "or more: a stuck gauge or a dead line?")
        text = text % {"readings": e["readings"], "value": _with_unit(e.get("value"), unit),
                       "low": num(e.get("low")), "high": _with_unit(e.get("high"), unit), "minutes": e.get("minutes")}
    elif w.rule == Rule.MISSING:
        last = e.get("last_reading_ms")
        text = _("No reading since %(when)s (one expected every %(interval)s s; silent after %(n)s intervals).") % {
            "when": local_text(last) if last else "—", "interval": e.get("interval_s", "—"),
            "n": e.get("intervals", "—"),
        }
    elif w.rule == Rule.ANOMALY:
        day = e.get("day")
        key = (_("The value %(value)s where %(median)s is usual at this hour of a rest day (a public holiday) "
                 "(robust z %(z)s, peak %(peak)s; threshold %(threshold)s).") if day == "rest day" else
               _("The value %(value)s where %(median)s is usual at this hour of a working day (a weekend day "
                 "worked instead) (robust z %(z)s, peak %(peak)s; threshold %(threshold)s).") if day == "working day"
               else _("The value %(value)s where %(median)s is usual for this hour of the week "
                      "(robust z %(z)s, peak %(peak)s; threshold %(threshold)s)."))
        text = key % {
            "value": _with_unit(e.get("value"), unit), "median": _with_unit(e.get("median"), unit),
            "z": num(e.get("z")), "peak": num(e.get("peak_z")), "threshold": num(e.get("threshold")),
        }
    else:
        text = Rule(w.rule).label if w.rule in Rule.values else w.rule
    raised = e.get("raised_to_alarm_at")
    if raised:
        text = " ".join([text, _("Raised to alarm at %(when)s.") % {"when": local_text(raised)}])
    return str(text)


def sparkline(points: list[tuple[int, float]], ind: Indicator, start_ms: int, end_ms: int) -> dict | None:
    """SVG coordinates of the last day's hourly means, with the normal band."""
    if not points:
        return None
    values = [v for _t, v in points]
    low, high = normal_band(ind)
    bounds = values + [b for b in (low, high) if b is not None]
    lo, hi = min(bounds), max(bounds)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    pad = 3

    def y(v: float) -> float:
        return round(SPARK_H - pad - (v - lo) / (hi - lo) * (SPARK_H - 2 * pad), 1)

    span = max(end_ms - start_ms, 1)
    coords = [(round(min(max((t + HOUR_MS / 2 - start_ms) / span, 0), 1) * SPARK_W, 1), y(v)) for t, v in points]
    if len(coords) == 1:
        coords = [(0.0, coords[0][1]), (float(SPARK_W), coords[0][1])]
    band = None
    if low is not None or high is not None:
        top = y(high) if high is not None else 0
        bottom = y(low) if low is not None else SPARK_H
        band = {"y": top, "height": round(max(bottom - top, 0.5), 1)}
    return {
        "points": " ".join(f"{x},{yy}" for x, yy in coords), "band": band, "w": SPARK_W, "h": SPARK_H,
        "last": coords[-1],
        "label": _("Last 24 hours, hourly means from %(min)s to %(max)s") % {"min": num(min(values)), "max": num(max(values))},
    }


# --------------------------------------------------------------------------- the board


def _tile(ind: Indicator, line: list[tuple[int, float]], now_ms: int) -> dict:
    s = ind.sensor
    unit = s.display_unit
    state = queries.state_of(status=ind.status, has_indicator=True, missing_intervals=ind.missing_intervals,
                             last_ms=s.last_ms, interval_s=s.interval_s, now_ms=now_ms)
    return {
        "indicator": ind, "name": ind.display_name, "code": ind.code, "unit": unit,
        "value": num(s.last_value) if s.last_value is not None else None,
        "at": from_ms(s.last_ms) if s.last_ms is not None else None,
        "band": band_words(ind, unit), "state": state, "state_label": Status(state).label,
        "spark": sparkline(line, ind, now_ms - queries.DAY_MS, now_ms),
        "url": reverse("signs:indicator", args=[ind.code]),
    }


def _themes(now_ms: int) -> list[dict]:
    indicators = list(Indicator.objects.filter(active=True).select_related("sensor__kind"))
    lines = queries.sparklines([i.sensor_id for i in indicators], now_ms)
    by_theme: dict[str, list[dict]] = {}
    for ind in indicators:
        by_theme.setdefault(ind.theme, []).append(_tile(ind, lines.get(ind.sensor_id, []), now_ms))
    out = []
    for key, label in Theme.choices:
        tiles = sorted(by_theme.get(key, []), key=lambda t: (STATE_ORDER[t["state"]], t["code"]))
        if not tiles:
            continue
        summary = {}
        for t in tiles:
            summary[t["state"]] = summary.get(t["state"], 0) + 1
        out.append({"key": key, "label": label, "tiles": tiles,
                    "summary": [(s, Status(s).label, summary[s]) for s in STATE_ORDER if s in summary]})
    return out


def _warning_items(now_dt: datetime, now_ms: int) -> list[dict]:
    items = []
    for w in queries.board_warnings(now_ms):
        ind = w.indicator
        items.append({
            "kind": "sensor", "pk": w.pk, "sort": w.started_ms, "level": w.level, "level_label": w.get_level_display(),
            "title": ind.display_name, "url": reverse("signs:indicator", args=[ind.code]),
            "rule": w.get_rule_display(), "text": explain_warning(w, ind.sensor.display_unit),
            "started": w.started_at, "ended": w.ended_at, "case": w.case,
            "peak": _with_unit(w.peak_value, ind.sensor.display_unit) if w.peak_value is not None else "",
            # The extreme of a fall is its lowest value, not a peak.
            "peak_label": _("lowest") if w.rule == Rule.BAND_LOW else _("peak"),
            "acknowledged_by": w.acknowledged_by, "acknowledged_at": w.acknowledged_at,
        })
    for c in queries.board_cluster_warnings(now_dt):
        items.append({
            "kind": "cluster", "pk": c.pk, "sort": to_ms(c.raised_at), "level": Level.WARNING,
            "level_label": Level.WARNING.label, "title": warning_title(c), "url": "",
            "rule": _("Cluster of reports"),
            "text": (_("%(count)s reports in %(area)s, calls without a position among them, first at %(first)s, "
                       "last at %(last)s.")
                     if c.by_area else
                     _("%(count)s reports within %(radius)s m, first at %(first)s, last at %(last)s.")) % {
                "count": c.report_count, "radius": c.radius_m, "area": c.area.display_name if c.area_id else "",
                "first": timezone.localtime(c.started_at).strftime("%Y-%m-%d %H:%M"),
                "last": timezone.localtime(c.last_report_at).strftime("%Y-%m-%d %H:%M")},
            "started": c.raised_at, "ended": None, "case": c.case, "area": c.area, "peak": "",
            "acknowledged_by": None, "acknowledged_at": None,
        })
    items.sort(key=lambda i: -i["sort"])
    return items


def _map_data(now_ms: int, now_dt: datetime) -> dict:
    sensors = []
    qs = (queries.devices().filter(lon__isnull=False, lat__isnull=False)
          .select_related("kind", "indicator").order_by("code")[:MAP_LIMIT])
    for s in qs:
        state = queries.sensor_state(s, now_ms)
        ind = getattr(s, "indicator", None)
        sensors.append({
            "code": s.code, "name": s.name or s.kind.display_name, "lon": s.lon, "lat": s.lat,
            "state": state, "label": str(Status(state).label), "colour": STATE_COLOURS[state],
            "value": _with_unit(s.last_value, s.display_unit) if s.last_value is not None else "—",
            "at": local_text(s.last_ms) if s.last_ms is not None else "—",
            "indicator": ind.display_name if ind else "", "url": reverse("signs:indicator", args=[ind.code]) if ind else "",
        })
    clusters = [{
        # By area: the street's outline is drawn (no radius: its reports have no position).
        "lon": c.lon, "lat": c.lat, "radius_m": None if c.by_area else c.radius_m, "title": warning_title(c),
        "area": c.area.code if c.by_area and c.area_id else "",
        "case": c.case.number if c.case else "", "url": reverse("console:case", args=[c.case.number]) if c.case else "",
    } for c in queries.board_cluster_warnings(now_dt)]
    root = Area.objects.filter(parent__isnull=True).order_by("code").values_list("code", flat=True).first()
    return {"sensors": sensors, "clusters": clusters, "root": root or "",
            "labels": {"open": str(_("Open indicator")), "case": str(_("Case")), "last": str(_("Last reading"))}}


@staff_view
def board(request):
    now_dt = now()
    now_ms = to_ms(now_dt)
    open_warnings = Warning.objects.filter(ended_ms__isnull=True)
    items = _warning_items(now_dt, now_ms)
    counts = {
        "sensors": queries.devices().count(),
        "silent": queries.devices().filter(queries.silent_q(now_ms)).count(),
        "warnings": open_warnings.count() + sum(1 for i in items if i["kind"] == "cluster"),
        "alarms": open_warnings.filter(level=Level.ALARM).count(),
    }
    return render(request, "signs/board.html", {
        "now": now_dt, "counts": counts, "themes": _themes(now_ms), "warnings": items,
        "sources": queries.sources((now_ms // HOUR_MS - 23) * HOUR_MS),
        "map_data": _map_data(now_ms, now_dt), "can_ack": can_acknowledge(request.user),
        "legend": [(s, Status(s).label, STATE_COLOURS[s]) for s in STATE_ORDER],
    })


# --------------------------------------------------------------------------- one indicator


def resolution_label(data: queries.Series) -> str:
    if data.resolution == queries.MINUTE and data.from_readings:
        return _("its readings (it reports at most once a minute, so it has no per-minute values)")
    return str(RESOLUTION_LABELS[data.resolution])


def _parse_local(text: str) -> int | None:
    """ms from a ``datetime-local`` value (city time); None when empty; ValueError when not a time."""
    text = (text or "").strip()
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.get_current_timezone())
    return to_ms(dt)


def _input_value(ms: int) -> str:
    return timezone.localtime(from_ms(ms)).strftime("%Y-%m-%dT%H:%M")


def chosen_range(params, now_ms: int) -> tuple[int, int, str, list[str]]:
    """(start, end, preset or "custom", errors) from the query string."""
    errors = []
    if params.get("start") or params.get("end"):
        try:
            start = _parse_local(params.get("start", ""))
            end = _parse_local(params.get("end", "")) or now_ms
        except ValueError:
            errors.append(_("Start and end must be times like 2025-01-31T08:00."))
        else:
            longest = settings.SIGNS_HOUR_DAYS * 24 * HOUR_MS
            if start is None:
                errors.append(_("Give a start time."))
            elif start >= end:
                errors.append(_("The start must be before the end."))
            elif end - start > longest:
                errors.append(_("The range can be at most %(days)s days.") % {"days": settings.SIGNS_HOUR_DAYS})
            else:
                return start, end, "custom", errors
    preset = params.get("range", "24h")
    if preset not in PRESETS:
        preset = "24h"
    return now_ms - PRESETS[preset], now_ms, preset, errors


@staff_view
def indicator(request, code):
    ind = get_object_or_404(Indicator.objects.select_related("sensor__kind", "sensor__area", "sensor__department",
                                                             "case_category", "case_area"), code=code)
    sensor = ind.sensor
    unit = sensor.display_unit
    now_ms = to_ms(now())
    start, end, preset, errors = chosen_range(request.GET, now_ms)
    for e in errors:
        messages.error(request, e)
    data = queries.series(sensor, start, end)
    in_range = list(ind.warnings.filter(started_ms__lt=end).filter(Q(ended_ms__isnull=True) | Q(ended_ms__gte=start))
                    .order_by("started_ms"))
    offset = int(timezone.localtime(from_ms(end)).utcoffset().total_seconds() * 1000)
    bands = [
        {"value": v, "level": level, "label": label}
        for v, level, label in (
            (ind.alarm_high, Level.ALARM, _("alarm above")), (ind.warn_high, Level.WARNING, _("warning above")),
            (ind.warn_low, Level.WARNING, _("warning below")), (ind.alarm_low, Level.ALARM, _("alarm below")))
        if v is not None
    ]
    chart = {
        "name": ind.display_name, "unit": unit, "resolution": data.resolution, "chosen": data.chosen,
        "readings": data.from_readings,
        "start": start, "end": end, "offset_ms": offset,
        "points": [[t, mean, lo, hi] for t, mean, lo, hi, _n in data.points],
        "bands": [{**b, "label": str(b["label"])} for b in bands],
        "warnings": [{
            "start": max(w.started_ms, start), "end": min(w.ended_ms if w.ended_ms is not None else end, end),
            "level": w.level, "rule": w.rule, "open": w.ended_ms is None,
            "label": f"{w.get_level_display()}: {w.get_rule_display()}",
        } for w in in_range],
        "labels": {"mean": str(_("Value")), "min": str(_("Minimum")), "range": str(_("Minimum to maximum")),
                   "time": str(_("Time (city)"))},
        "locale": "ZH" if (get_language() or "").startswith("zh") else "EN",
    }
    history = Paginator(ind.warnings.select_related("acknowledged_by", "case").order_by("-started_ms"), 25)
    page = history.get_page(request.GET.get("page"))
    rows = [{"w": w, "text": explain_warning(w, unit), "peak": _with_unit(w.peak_value, unit) if w.peak_value is not None else "—"}
            for w in page]
    last_points = [{"at": from_ms(t), "mean": num(mean), "min": num(lo), "max": num(hi), "count": n}
                   for t, mean, lo, hi, n in reversed(data.points[-LAST_POINTS:])]
    state = queries.state_of(status=ind.status, has_indicator=True, missing_intervals=ind.missing_intervals,
                             last_ms=sensor.last_ms, interval_s=sensor.interval_s, now_ms=now_ms)
    return render(request, "signs/indicator.html", {
        "ind": ind, "sensor": sensor, "unit": unit, "chart": chart, "state": state, "state_label": Status(state).label,
        "value": num(sensor.last_value) if sensor.last_value is not None else None,
        "at": from_ms(sensor.last_ms) if sensor.last_ms is not None else None,
        "band": band_words(ind, unit), "rules": rules_in_words(ind, unit),
        "chain": sensor.area.ancestors() if sensor.area_id else [],
        "inputs": list(ind.inputs.all()) if ind.source == Source.AGGREGATE else [],
        "presets": [(k, PRESET_LABELS[k]) for k in PRESETS], "preset": preset,
        "start_value": _input_value(start), "end_value": _input_value(end),
        "range_start": from_ms(start), "range_end": from_ms(end),
        "resolution_label": resolution_label(data), "fallback": data.resolution != data.chosen,
        "chosen_label": RESOLUTION_LABELS[data.chosen],
        "n_points": len(data.points), "last_points": last_points, "in_range": len(in_range),
        "page": page, "rows": rows, "can_ack": can_acknowledge(request.user),
    })


# --------------------------------------------------------------------------- acknowledging


@staff_view
@require_POST
def acknowledge_warning(request, pk):
    if not can_acknowledge(request.user):
        raise PermissionDenied(_("Your role may not acknowledge warnings."))
    w = get_object_or_404(Warning.objects.select_related("indicator__sensor"), pk=pk)
    if not may_acknowledge(request.user, w):
        raise PermissionDenied(_("This warning is outside your area or department."))
    if w.acknowledged_at is not None:
        messages.info(request, _("This warning was already acknowledged."))
    else:
        acknowledge(w, by=request.user, note=request.POST.get("note", "").strip()[:500])
        messages.success(request, _("Warning acknowledged: %(indicator)s — %(rule)s")
                         % {"indicator": w.indicator.display_name, "rule": w.get_rule_display()})
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("signs:board")
    return redirect(target)
