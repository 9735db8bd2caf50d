"""The rules that turn values into warnings (预警), each with hysteresis so
that one excursion makes one warning, not a storm.

* **band**: warning/alarm levels above and below. A band warning opens when a
  value crosses a level, rises to alarm if the value goes on to cross the
  alarm level, and ends only when the value is back inside the band by the
  indicator's ``hysteresis``.
* **rate**: the change per minute between consecutive readings exceeds
  ``rate_limit`` (alarm at twice the limit); it ends when the rate is below
  half the limit.
* **anomaly**: the value is far from what is normal for this hour of the week:
  robust z = |value − median| / (1.4826 · MAD) over the last weeks' hourly
  means (:func:`compute_baselines`). Opens above ``anomaly_score`` (alarm at
  twice that), ends below ``anomaly_clear``.
* **missing**: the sensor has been silent for ``missing_intervals`` expected
  intervals (checked by :func:`sweep_missing`); ends with the next reading.

An alarm-level warning becomes a case through the intake pipeline (channel
``sensor``) at the sensor's location, with the category of the indicator or
of the sensor kind.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from chengyun.audit.services import record
from chengyun.clock import now

from .models import (
    HOUR_MS,
    Baseline,
    Indicator,
    Level,
    Reading,
    Rollup,
    Rule,
    Status,
    Warning,
)

MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data
MIN_BASELINE_SAMPLES = 3
RANK = {None: 0, Level.WARNING: 1, Level.ALARM: 2}


def hour_of_week(ms: int | np.ndarray, tz: ZoneInfo | None = None):
    """0 = Monday 00:00-01:00 city time … 167 = Sunday 23:00."""
    tz = tz or ZoneInfo(settings.TIME_ZONE)
    if isinstance(ms, np.ndarray):
        # City time zones of interest have no DST; use the offset at the first value.
        offset = datetime.fromtimestamp(int(ms[0]) / 1000, UTC).astimezone(tz).utcoffset().total_seconds() * 1000
        local_hours = ((ms + offset) // HOUR_MS).astype(np.int64)
        # 1970-01-01 was a Thursday: Monday-based day index = (days + 3) % 7
        return (((local_hours // 24) + 3) % 7) * 24 + local_hours % 24
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    return local.weekday() * 24 + local.hour


def band_level(ind: Indicator, v: float) -> tuple[str | None, str | None]:
    """(level, rule) of a value against the bands."""
    if ind.alarm_high is not None and v > ind.alarm_high:
        return Level.ALARM, Rule.BAND_HIGH
    if ind.alarm_low is not None and v < ind.alarm_low:
        return Level.ALARM, Rule.BAND_LOW
    if ind.warn_high is not None and v > ind.warn_high:
        return Level.WARNING, Rule.BAND_HIGH
    if ind.warn_low is not None and v < ind.warn_low:
        return Level.WARNING, Rule.BAND_LOW
    return None, None


def band_cleared(ind: Indicator, rule: str, v: float) -> bool:
    h = ind.hysteresis or 0.0
    if rule == Rule.BAND_HIGH:
        top = ind.warn_high if ind.warn_high is not None else ind.alarm_high
        return v <= top - h
    bottom = ind.warn_low if ind.warn_low is not None else ind.alarm_low
    return v >= bottom + h


class Evaluator:
    """Runs the rules over one indicator's new values (in time order),
    opening, raising and closing warnings."""

    def __init__(self, ind: Indicator, open_warnings: list[Warning], previous: tuple[int, float] | None,
                 baseline: dict[int, tuple[float, float]] | None):
        self.ind = ind
        self.open = {w.rule: w for w in open_warnings}
        self.previous = previous
        self.baseline = baseline or {}
        self.opened = self.closed = 0
        self.changed: dict[int, Warning] = {}  # by id(): new warnings have no pk yet

    # -- helpers
    def _start(self, rule: str, level: str, t: int, v: float, explanation: dict) -> Warning:
        w = Warning(indicator=self.ind, rule=rule, level=level, started_ms=t, peak_value=v, peak_ms=t, last_value=v,
                    explanation=explanation, generated=self.ind.sensor.generated)
        self.open[rule] = w
        self.changed[id(w)] = w
        self.opened += 1
        return w

    def _update(self, w: Warning, level: str, t: int, v: float, worse: bool, extra: dict | None = None) -> None:
        if RANK[level] > RANK[w.level]:
            w.level = level
            w.explanation = {**w.explanation, "raised_to_alarm_at": t, **(extra or {})}
        if worse:
            w.peak_value, w.peak_ms = v, t
        w.last_value = v
        self.changed[id(w)] = w

    def _end(self, rule: str, t: int, v: float) -> None:
        w = self.open.pop(rule)
        w.ended_ms = t
        w.last_value = v
        self.changed[id(w)] = w
        self.closed += 1

    # -- rules
    def run(self, ts: np.ndarray, vs: np.ndarray) -> None:
        ind = self.ind
        if Rule.MISSING in self.open:
            self._end(Rule.MISSING, int(ts[0]), float(vs[0]))
        self._bands(ts, vs)
        if ind.rate_limit:
            self._rate(ts, vs)
        if ind.anomaly and self.baseline:
            self._anomaly(ts, vs)

    def _bands(self, ts, vs) -> None:
        ind = self.ind
        if all(x is None for x in (ind.warn_low, ind.warn_high, ind.alarm_low, ind.alarm_high)):
            return
        lo = [x for x in (ind.warn_low, ind.alarm_low) if x is not None]
        hi = [x for x in (ind.warn_high, ind.alarm_high) if x is not None]
        inside = np.ones(len(vs), bool)
        if lo:
            inside &= vs >= max(lo)
        if hi:
            inside &= vs <= min(hi)
        if inside.all() and Rule.BAND_HIGH not in self.open and Rule.BAND_LOW not in self.open:
            return  # the common case: nothing to do
        for t, v in zip(ts.tolist(), vs.tolist(), strict=True):
            level, rule = band_level(ind, v)
            for r in (Rule.BAND_HIGH, Rule.BAND_LOW):
                w = self.open.get(r)
                if w is None:
                    continue
                if rule == r:
                    worse = v > w.peak_value if r == Rule.BAND_HIGH else v < w.peak_value
                    self._update(w, level, t, v, worse)
                elif band_cleared(ind, r, v):
                    self._end(r, t, v)
            if rule is not None and rule not in self.open:
                limit = {(Level.ALARM, Rule.BAND_HIGH): ind.alarm_high, (Level.ALARM, Rule.BAND_LOW): ind.alarm_low,
                         (Level.WARNING, Rule.BAND_HIGH): ind.warn_high, (Level.WARNING, Rule.BAND_LOW): ind.warn_low}
                self._start(rule, level, t, v, {
                    "rule": rule, "value": v, "limit": limit[(level, rule)], "hysteresis": ind.hysteresis,
                    "bands": {"warn_low": ind.warn_low, "warn_high": ind.warn_high,
                              "alarm_low": ind.alarm_low, "alarm_high": ind.alarm_high},
                })

    def _rate(self, ts, vs) -> None:
        limit = self.ind.rate_limit
        prev_t, prev_v = self.previous if self.previous else (None, None)
        all_t = np.concatenate([[prev_t], ts]) if prev_t is not None else ts
        all_v = np.concatenate([[prev_v], vs]) if prev_t is not None else vs
        if len(all_t) < 2:
            return
        dt_min = np.diff(all_t) / 60_000.0
        dv = np.diff(all_v)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(dt_min > 0, np.abs(dv) / dt_min, 0.0)
        if (rate <= limit).all() and Rule.RATE not in self.open:
            return
        for i, r in enumerate(rate.tolist()):
            t, v = int(all_t[i + 1]), float(all_v[i + 1])
            w = self.open.get(Rule.RATE)
            level = Level.ALARM if r > 2 * limit else Level.WARNING if r > limit else None
            if w is not None:
                if level is not None:
                    self._update(w, level, t, v, r > w.explanation.get("peak_rate", 0), {"peak_rate": r})
                    if r > w.explanation.get("peak_rate", 0):
                        w.explanation = {**w.explanation, "peak_rate": round(r, 6)}
                elif r <= limit / 2:
                    self._end(Rule.RATE, t, v)
            elif level is not None:
                self._start(Rule.RATE, level, t, v, {
                    "rule": "rate", "rate_per_minute": round(r, 6), "limit_per_minute": limit, "peak_rate": round(r, 6),
                    "from": float(all_v[i]), "to": v, "minutes": round(float(dt_min[i]), 3),
                })

    def _anomaly(self, ts, vs) -> None:
        ind = self.ind
        how = hour_of_week(ts)
        med = np.array([self.baseline.get(int(h), (np.nan, np.nan))[0] for h in how])
        mad = np.array([self.baseline.get(int(h), (np.nan, np.nan))[1] for h in how])
        scale = MAD_SCALE * np.maximum(mad, 1e-9 + 0.01 * np.abs(med))  # a flat history still has some spread
        z = np.abs(vs - med) / scale
        z = np.where(np.isnan(z), 0.0, z)
        if (z < ind.anomaly_score).all() and Rule.ANOMALY not in self.open:
            return
        for i, zi in enumerate(z.tolist()):
            t, v = int(ts[i]), float(vs[i])
            w = self.open.get(Rule.ANOMALY)
            level = Level.ALARM if zi > 2 * ind.anomaly_score else Level.WARNING if zi > ind.anomaly_score else None
            if w is not None:
                if zi < ind.anomaly_clear:
                    self._end(Rule.ANOMALY, t, v)
                elif level is not None:
                    worse = zi > w.explanation.get("peak_z", 0)
                    self._update(w, level, t, v, worse)
                    if worse:
                        w.explanation = {**w.explanation, "peak_z": round(zi, 3)}
            elif level is not None:
                self._start(Rule.ANOMALY, level, t, v, {
                    "rule": "anomaly", "value": v, "z": round(zi, 3), "peak_z": round(zi, 3),
                    "hour_of_week": int(how[i]), "median": round(float(med[i]), 6), "mad": round(float(mad[i]), 6),
                    "threshold": ind.anomaly_score, "clear_below": ind.anomaly_clear,
                })


def _baselines(indicator_ids) -> dict[int, dict[int, tuple[float, float]]]:
    out: dict[int, dict[int, tuple[float, float]]] = defaultdict(dict)
    for ind_id, how, med, mad, n in Baseline.objects.filter(indicator_id__in=indicator_ids).values_list(
            "indicator_id", "hour_of_week", "median", "mad", "samples"):
        if n >= MIN_BASELINE_SAMPLES:
            out[ind_id][how] = (med, mad)
    return out


def evaluate_batch(rows: list[tuple[int, int, float]]) -> tuple[int, int]:
    """Run the rules of every indicator whose series got new values."""
    by_sensor: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for sid, t, v in rows:
        by_sensor[sid].append((t, v))
    indicators = list(Indicator.objects.filter(sensor_id__in=list(by_sensor), active=True).select_related("sensor"))
    if not indicators:
        return 0, 0
    open_by: dict[int, list[Warning]] = defaultdict(list)
    for w in Warning.objects.filter(indicator__in=indicators, ended_ms__isnull=True):
        open_by[w.indicator_id].append(w)
    baselines = _baselines([i.pk for i in indicators if i.anomaly])
    opened = closed = 0
    changed: list[Warning] = []
    statuses: dict[str, list[int]] = {}
    for ind in indicators:
        pts = sorted(by_sensor[ind.sensor_id])
        ts = np.fromiter((p[0] for p in pts), np.int64, len(pts))
        vs = np.fromiter((p[1] for p in pts), np.float64, len(pts))
        previous = None
        if ind.rate_limit:
            previous = (Reading.objects.filter(sensor_id=ind.sensor_id, ts__lt=int(ts[0])).order_by("-ts")
                        .values_list("ts", "value").first())
        ev = Evaluator(ind, open_by.get(ind.pk, []), previous, baselines.get(ind.pk))
        ev.run(ts, vs)
        opened += ev.opened
        closed += ev.closed
        changed.extend(ev.changed.values())
        status = status_of(ev.open.values())
        if status != ind.status:
            statuses.setdefault(status, []).append(ind.pk)
    _save(changed)
    for status, pks in statuses.items():
        Indicator.objects.filter(pk__in=pks).update(status=status)
    return opened, closed


def status_of(open_warnings) -> str:
    levels = {w.level for w in open_warnings}
    rules = {w.rule for w in open_warnings}
    if Level.ALARM in levels:
        return Status.ALARM
    if levels - {None} and rules != {Rule.MISSING}:
        return Status.WARNING
    if Rule.MISSING in rules:
        return Status.SILENT
    return Status.OK


def _save(changed: list[Warning]) -> None:
    for w in changed:
        new = w.pk is None
        w.save()
        if new:
            record("signs.warning", actor="signs", obj=w, data={
                "indicator": w.indicator.code, "rule": w.rule, "level": w.level, "started_ms": w.started_ms,
                "value": w.peak_value,
            })
        if w.level == Level.ALARM and w.case_id is None:
            raise_case(w)


def raise_case(w: Warning):
    """An alarm becomes a case through the intake pipeline, once."""
    from chengyun.cases.models import Channel
    from chengyun.intake.services import ReportInput, submit

    ind = w.indicator
    sensor = ind.sensor
    category = ind.alarm_category or (sensor.kind.alarm_category if sensor.kind_id else None)
    when = datetime.fromtimestamp(w.started_ms / 1000, UTC).astimezone(ZoneInfo(settings.TIME_ZONE))
    title = _("Alarm: %(indicator)s — %(rule)s") % {"indicator": ind.name, "rule": Rule(w.rule).label}
    description = _(
        "%(indicator)s: %(rule)s since %(when)s; value %(value)s %(unit)s (peak %(peak)s). Sensor %(sensor)s."
    ) % {"indicator": ind.name, "rule": Rule(w.rule).label, "when": f"{when:%Y-%m-%d %H:%M}",
         "value": _fmt(w.last_value), "unit": sensor.display_unit, "peak": _fmt(w.peak_value), "sensor": sensor.code}
    lon, lat = sensor.lon, sensor.lat
    if lon is None and ind.inputs.exists():
        first = ind.inputs.exclude(lon__isnull=True).first()
        lon, lat = (first.lon, first.lat) if first else (None, None)
    res = submit(ReportInput(
        channel=Channel.SENSOR, title=title[:200], description=description, category=category, lon=lon, lat=lat,
        area=sensor.area if lon is None else None, source="signs", idempotency_key=f"warning:{w.pk}",
        external_id=f"warning:{w.pk}", generated=w.generated,
    ))
    w.case = res.report.case
    Warning.objects.filter(pk=w.pk).update(case=w.case)
    return w.case


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4g}"


# --------------------------------------------------------------------------- acknowledging


@transaction.atomic
def acknowledge(w: Warning, *, by, note: str = "") -> Warning:
    if w.acknowledged_at is not None:
        return w
    w.acknowledged_by, w.acknowledged_at = by, now()
    Warning.objects.filter(pk=w.pk).update(acknowledged_by=by, acknowledged_at=w.acknowledged_at)
    record("signs.acknowledge", actor=by, obj=w, data={"indicator": w.indicator.code, "rule": w.rule, "note": note})
    return w


# --------------------------------------------------------------------------- silent sensors


def sweep_missing(now_ms: int | None = None) -> dict:
    """Open a 'missing' warning for every indicator whose sensor has been
    silent for its number of intervals."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    opened = 0
    candidates = Indicator.objects.filter(active=True, missing_intervals__gt=0, sensor__active=True).select_related("sensor")
    already = set(Warning.objects.filter(rule=Rule.MISSING, ended_ms__isnull=True).values_list("indicator_id", flat=True))
    changed = []
    with transaction.atomic():
        for ind in candidates:
            s = ind.sensor
            allowed = ind.missing_intervals * s.interval_s * 1000
            last = s.last_ms
            if ind.pk in already or last is None or now_ms - last <= allowed:
                continue
            w = Warning(indicator=ind, rule=Rule.MISSING, level=Level.WARNING, started_ms=last + allowed,
                        last_value=s.last_value, generated=s.generated, explanation={
                            "rule": "missing", "last_reading_ms": last, "interval_s": s.interval_s,
                            "intervals": ind.missing_intervals})
            changed.append(w)
            opened += 1
        _save(changed)
        for w in changed:
            Indicator.objects.filter(pk=w.indicator_id, status__in=[Status.OK, Status.UNKNOWN]).update(status=Status.SILENT)
    return {"checked": len(candidates), "opened": opened}


# --------------------------------------------------------------------------- learned baseline


def compute_baselines(indicators=None, *, weeks: int = 4, at: datetime | None = None) -> int:
    """Median and MAD of the hourly means per hour of the week, over the last
    ``weeks`` weeks, for every indicator with anomaly detection."""
    at = at or now()
    end = int(at.timestamp() * 1000) // HOUR_MS * HOUR_MS
    start = end - weeks * 7 * 24 * HOUR_MS
    qs = indicators if indicators is not None else Indicator.objects.filter(anomaly=True, active=True)
    tz = ZoneInfo(settings.TIME_ZONE)
    done = 0
    for ind in qs:
        rows = list(Rollup.objects.filter(sensor_id=ind.sensor_id, resolution="h", bucket__gte=start, bucket__lt=end)
                    .values_list("bucket", "sum", "count"))
        if not rows:
            continue
        buckets = np.array([r[0] for r in rows], np.int64)
        means = np.array([r[1] / r[2] for r in rows])
        how = hour_of_week(buckets, tz)
        objs = []
        for h in range(168):
            sel = means[how == h]
            if len(sel) == 0:
                continue
            med = float(np.median(sel))
            mad = float(np.median(np.abs(sel - med)))
            objs.append(Baseline(indicator=ind, hour_of_week=h, median=med, mad=mad, samples=len(sel), computed_at=at))
        with transaction.atomic():
            Baseline.objects.filter(indicator=ind).delete()
            Baseline.objects.bulk_create(objs)
        done += 1
    return done


# --------------------------------------------------------------------------- retention


def prune(at: datetime | None = None) -> dict:
    """Drop raw readings and rollups older than their keeping periods."""
    at = at or now()
    ms = int(at.timestamp() * 1000)
    day = 86_400_000
    raw = Reading.objects.filter(ts__lt=ms - settings.SIGNS_RAW_DAYS * day).delete()[0]
    minute = Rollup.objects.filter(resolution="m", bucket__lt=ms - settings.SIGNS_MINUTE_DAYS * day).delete()[0]
    hour = Rollup.objects.filter(resolution="h", bucket__lt=ms - settings.SIGNS_HOUR_DAYS * day).delete()[0]
    return {"readings": raw, "minute_rollups": minute, "hour_rollups": hour}

