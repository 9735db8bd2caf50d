"""The rules that turn values into warnings (预警), each with hysteresis so
that one excursion makes one warning, not a storm.

* **band**: warning/alarm levels above and below. A value *beyond* a level
  (strictly above a high level, strictly below a low level) trips it; a value
  exactly at a level does not. A band warning opens at the first value beyond
  a level, rises to alarm if a later value goes beyond the alarm level, keeps
  its highest level until it ends, and ends only at the first value back inside
  the band by the indicator's ``hysteresis`` (``v <= warn_high - hysteresis``
  above, ``v >= warn_low + hysteresis`` below; with no warning level the alarm
  level is the edge). A jump from above the band to below it ends the high
  warning and opens a low one at the same reading.
* **rate**: the change per minute between consecutive readings,
  ``|Δvalue| / Δminutes``, is above ``rate_limit`` (alarm above twice the
  limit). It ends at the first reading whose rate is at most half the limit,
  so a one-reading spike (up, then down) is one warning from the spike to the
  first calm reading after it.
* **anomaly**: the value is far from what is normal for this hour of the week.
  ``z = |value − median| / (1.4826 · MAD)``, where median and MAD are those of
  every per-minute value that fell into the same hour of the week over the
  last weeks (:func:`compute_baselines`), so the spread includes the sensor's
  own noise and is comparable with single readings. An hour of the week seen
  in fewer than three weeks takes the same hour of all working days (or of
  all rest days) instead, so a young sensor keeps the weekly swing. Working
  and rest days follow the city's working calendar (public holidays and
  adjusted working days, 调休: :mod:`chengyun.cases.calendar`): a holiday is
  judged as a rest day at that hour and a worked Sunday as a working day, and
  neither counts towards its weekday's own normal. An hour's MAD is trusted
  in proportion to how many values it rests on: it is pulled towards the
  indicator's pooled MAD over all hours (worth 16 values), so an hourly sensor
  with four values per hour of the week does not get a spread of almost 0 by
  chance. Opens above ``anomaly_score`` (alarm above twice that), ends at the
  first value with ``z < anomaly_clear``. When the MAD of an hour is 0 (more
  than half the values equal) the mean absolute deviation stands in for it,
  and then the pooled spread; a history with no spread at all leaves the rule
  silent for values that differ (there is nothing to compare with) unless the
  median is not 0, in which case 0.1 % of the median is the smallest spread.
  Counts of case reports are never given a spread below the Poisson one,
  √median.
* **missing**: the sensor has been silent for more than ``missing_intervals``
  expected intervals (checked by :func:`sweep_missing`); the warning starts
  when the silence became too long and ends at the first reading newer than
  the last one seen before the silence (a late batch of older readings does
  not end it).
* **flatline** (stuck value): the readings have stayed within
  ``flatline_tolerance`` of each other (largest minus smallest) for at least
  ``flatline_minutes``, over at least three readings — a stuck gauge repeats
  its last number. The warning (never an alarm: the device, not the city, is
  at fault) starts at the first reading of that flat stretch and ends at the
  first reading that takes the stretch's values further apart than the
  tolerance. Across batches the stretch is found again in the stored
  readings: for a sensor whose first new value is within the tolerance of its
  last stored one, the readings of the last ``2 · flatline_minutes`` are read
  back (a stretch that began earlier is dated from the earliest of them).

Only values newer than the sensor's last stored reading *before the batch*
are judged (:func:`evaluate_arrays` runs before the batch moves it). Readings
that arrive late, after newer ones, are stored and rolled up but open and
close nothing: the state of the rules has moved past them, and an older
out-of-band value would otherwise open a warning that stays open until the
sensor's next reading.

An alarm-level warning becomes a case through the intake pipeline (channel
``sensor``) at the sensor's location, with the category of the indicator or
of the sensor kind. If that fails the readings and the warning are still
stored (the failure is logged and retried when the warning next changes).

Speed: a batch is grouped by sensor with numpy. The indicators it touches
are read as plain tuples (:class:`IndicatorRules`), not model instances;
numpy passes over the whole batch set apart those with every new value inside
the band, no open warning, no change faster than the rate limit, no value
beyond the anomaly score and no run of small steps long enough to be a flat
line — nothing can happen to them but their status becoming ok — and only the
others go through the :class:`Evaluator`, where a calm rule costs a few array
operations and no Python loop over the values. The stored reading before the
batch (for the rate rule) is the sensor's ``last_ms``/``last_value``, read
with the indicator: no query of the reading table unless a flat stretch may
go on from before the batch.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, Exists, F, Max, OuterRef, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import translation
from django.utils.translation import gettext as _

from chengyun.audit.services import record
from chengyun.clock import now

from .ingest import MINUTE_ROLLUP_BELOW_S, id_set_sql
from .models import (
    HOUR_MS,
    MINUTE_MS,
    Baseline,
    Indicator,
    Level,
    Reading,
    Rollup,
    Rule,
    Source,
    Status,
    Warning,
)

log = logging.getLogger(__name__)

MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data
MEAN_AD_TO_MAD = 1.2533 / MAD_SCALE  # mean absolute deviation -> MAD for normal data
MIN_RELATIVE_SPREAD = 1e-3  # a perfectly flat history: 0.1 % of the median
MIN_BASELINE_SAMPLES = 3
SHRINK_SAMPLES = 16  # weight of the pooled spread in an hour's spread, in values
WEEKLY_MIN_WEEKS = 3  # an hour of the week is its own baseline with values from this many weeks
WEEKEND_FROM_HOUR = 5 * 24  # Saturday 00:00: the hours of the week from here on are weekend hours
WORKING_DAY_SLOTS = 168  # baseline slots 168 + h: hour h of any working day; 192 + h: of any rest day
REST_DAY_SLOTS = 192
SLOTS = 216
CALENDAR_SECONDS = 300.0  # the working calendar (its admin-edited days) is read again after this long
FLATLINE_MIN_READINGS = 3  # a flat stretch is at least this many readings, however slow the sensor
RANK = {None: 0, Level.WARNING: 1, Level.ALARM: 2}
CHUNK = 2000  # ids per IN (...) query


def hour_of_week(ms: int | np.ndarray, tz: ZoneInfo | None = None):
    """0 = Monday 00:00-01:00 city time … 167 = Sunday 23:00."""
    tz = tz or ZoneInfo(settings.TIME_ZONE)
    if isinstance(ms, np.ndarray):
        if not len(ms):
            return np.zeros(0, np.int64)
        # City time zones of interest have no DST; use the offset at the first value.
        return _week_hours(ms, _utc_offset_ms(int(ms[0]), tz))
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    return local.weekday() * 24 + local.hour


def _utc_offset_ms(ms: int, tz: ZoneInfo) -> int:
    return int(datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).utcoffset().total_seconds() * 1000)


def _week_hours(ms: np.ndarray, offset_ms: int | np.ndarray) -> np.ndarray:
    local_hours = (ms.astype(np.int64) + offset_ms) // HOUR_MS
    # 1970-01-01 was a Thursday: Monday-based day index = (days + 3) % 7
    return (((local_hours // 24) + 3) % 7) * 24 + local_hours % 24


_calendar: dict = {"at": -1e9, "calendar": None, "days": {}}


def _worked(days: np.ndarray) -> np.ndarray:
    """For local day numbers (days since 1970-01-01, city time): whether each
    is a working day in the city's working calendar (weekends, public
    holidays, adjusted working days; ``SIGNS_CALENDAR = "week"``: Monday to
    Friday). Looked up once per distinct day; the calendar is re-read every
    few minutes, so a day changed in the admin takes effect without a restart."""
    weekday = (days + 3) % 7 < 5  # 1970-01-01 was a Thursday
    if getattr(settings, "SIGNS_CALENDAR", "working") == "week" or not len(days):
        return weekday
    from chengyun.cases.calendar import WorkingCalendar

    t = time.monotonic()
    if t - _calendar["at"] > CALENDAR_SECONDS:
        _calendar.update(at=t, calendar=WorkingCalendar.from_db(), days={})
    known, cal = _calendar["days"], _calendar["calendar"]
    unique = np.unique(days)
    for d in unique.tolist():
        if d not in known:
            known[d] = cal.is_working_day(date(1970, 1, 1) + timedelta(days=d))
    return np.array([known[d] for d in unique.tolist()], bool)[np.searchsorted(unique, days)]


def forget_calendar() -> None:
    """Read the working calendar afresh at the next use (tests; admin changes
    otherwise take effect within ``CALENDAR_SECONDS``)."""
    _calendar["at"] = -1e9


def baseline_slots(ms: np.ndarray, tz: ZoneInfo | None = None) -> np.ndarray:
    """The baseline slot of each time: its hour of the week on an ordinary day;
    on a holiday that falls on a weekday, that hour of a rest day
    (``REST_DAY_SLOTS + hour``); on a weekend day that is worked (调休), that
    hour of a working day (``WORKING_DAY_SLOTS + hour``)."""
    tz = tz or ZoneInfo(settings.TIME_ZONE)
    how = hour_of_week(ms, tz)
    if not len(ms):
        return how
    return _day_slots(how, (ms.astype(np.int64) + _utc_offset_ms(int(ms[0]), tz)) // (24 * HOUR_MS))


def _day_slots(how: np.ndarray, days: np.ndarray) -> np.ndarray:
    worked = _worked(days)
    special = worked != (how < WEEKEND_FROM_HOUR)
    if not special.any():
        return how
    return np.where(special, np.where(worked, WORKING_DAY_SLOTS, REST_DAY_SLOTS) + how % 24, how)


def _looked_up(baseline: tuple[np.ndarray, np.ndarray], slot: np.ndarray, how: np.ndarray, row=None):
    """Median and MAD at each value's slot (of one indicator's arrays, or of
    row ``row`` of stacked ones); a holiday or worked weekend day whose kind of
    day the history lacks takes its hour of the week."""
    med, mad = baseline
    at, back = ((slot,), (how,)) if row is None else ((row, slot), (row, how))
    m, d = med[at], mad[at]
    fallback = np.isnan(m)
    if fallback.any():
        m, d = np.where(fallback, med[back], m), np.where(fallback, mad[back], d)
    return m, d


def _rate_per_minute(dt_ms: np.ndarray, dv: np.ndarray) -> np.ndarray:
    """|Δvalue| per minute between consecutive readings; 0 where no time passed."""
    dt_min = dt_ms / 60_000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dt_min > 0, np.abs(dv) / dt_min, 0.0)


def _anomaly_z(vs: np.ndarray, med: np.ndarray, mad: np.ndarray, counts: bool | np.ndarray) -> np.ndarray:
    """Robust z of each value against the median and MAD of its hour of the
    week; 0 where there is no baseline for the hour or no spread at all (no
    judgement). ``counts``: the values are counts of case reports, whose spread
    is never taken tighter than the Poisson one."""
    scale = MAD_SCALE * np.where(mad > 0, mad, MIN_RELATIVE_SPREAD * np.abs(med))
    scale = np.where(counts, np.maximum(scale, np.sqrt(np.maximum(np.nan_to_num(med), 1.0))), scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(vs - med) / scale
    return np.where(np.isfinite(z), z, 0.0)


@dataclass(frozen=True, slots=True)
class IndicatorRules:
    """What the rules read of an indicator, loaded with ``values_list``: a
    batch touching thousands of indicators builds no model instances (their
    construction once cost more than the rules themselves)."""

    pk: int
    sensor_id: int
    warn_low: float | None
    warn_high: float | None
    alarm_low: float | None
    alarm_high: float | None
    hysteresis: float
    rate_limit: float | None
    flatline_minutes: int | None
    flatline_tolerance: float
    anomaly: bool
    anomaly_score: float
    anomaly_clear: float
    source: str
    status: str
    # the sensor's: warnings on generated demo data are generated too; its
    # newest reading before the batch (the batch is judged after it only)
    generated: bool
    last_ms: int | None
    last_value: float | None


SENSOR_COLUMNS = ("generated", "last_ms", "last_value")
RULE_COLUMNS = ([f.name for f in fields(IndicatorRules) if f.name not in SENSOR_COLUMNS]
                + [f"sensor__{name}" for name in SENSOR_COLUMNS])


def band_level(ind: IndicatorRules, v: float) -> tuple[str | None, str | None]:
    """(level, rule) of a value against the bands; a value exactly at a level is inside."""
    if ind.alarm_high is not None and v > ind.alarm_high:
        return Level.ALARM, Rule.BAND_HIGH
    if ind.alarm_low is not None and v < ind.alarm_low:
        return Level.ALARM, Rule.BAND_LOW
    if ind.warn_high is not None and v > ind.warn_high:
        return Level.WARNING, Rule.BAND_HIGH
    if ind.warn_low is not None and v < ind.warn_low:
        return Level.WARNING, Rule.BAND_LOW
    return None, None


def band_cleared(ind: IndicatorRules, rule: str, v: float) -> bool:
    h = ind.hysteresis or 0.0
    if rule == Rule.BAND_HIGH:
        top = ind.warn_high if ind.warn_high is not None else ind.alarm_high
        return v <= top - h
    bottom = ind.warn_low if ind.warn_low is not None else ind.alarm_low
    return v >= bottom + h


def _baseline_arrays(baseline) -> tuple[np.ndarray, np.ndarray] | None:
    """{slot: (median, mad)} -> two arrays of ``SLOTS`` (NaN where unknown)."""
    if not baseline:
        return None
    if isinstance(baseline, tuple):
        return baseline
    med = np.full(SLOTS, np.nan)
    mad = np.full(SLOTS, np.nan)
    for h, (m, d) in baseline.items():
        med[h], mad[h] = m, d
    return med, mad


class Evaluator:
    """Runs the rules over one indicator's new values (in time order),
    opening, raising and closing warnings."""

    def __init__(self, ind: IndicatorRules, open_warnings: list[Warning], previous: tuple[int, float] | None,
                 baseline: dict[int, tuple[float, float]] | tuple[np.ndarray, np.ndarray] | None,
                 flat_history: tuple[np.ndarray, np.ndarray] | None = None):
        """``previous``: the sensor's last stored reading before these values;
        ``flat_history``: the stored readings the flat-line rule looks back on
        (None: the screen found no flat stretch that could trip)."""
        self.ind = ind
        self.open = {w.rule: w for w in open_warnings}
        self.previous = previous
        self.baseline = _baseline_arrays(baseline)
        self.flat_history = flat_history
        self.opened = self.closed = 0
        self.changed: dict[int, Warning] = {}  # by id(): new warnings have no pk yet

    # -- helpers
    def _start(self, rule: str, level: str, t: int, v: float, explanation: dict) -> Warning:
        w = Warning(indicator_id=self.ind.pk, rule=rule, level=level, started_ms=t, peak_value=v, peak_ms=t,
                    last_value=v, explanation=explanation, generated=self.ind.generated)
        self.open[rule] = w
        self.changed[id(w)] = w
        self.opened += 1
        return w

    def _update(self, w: Warning, level: str | None, t: int, v: float, worse: bool, extra: dict | None = None) -> None:
        if RANK[level] > RANK[w.level]:
            w.level = level
            w.explanation = {**w.explanation, "raised_to_alarm_at": t, **(extra or {})}
        if worse:
            w.peak_value, w.peak_ms = v, t
        w.last_value = v
        self.changed[id(w)] = w

    def _end(self, rule: str, t: int, v: float) -> None:
        w = self.open.pop(rule)
        w.ended_ms = max(t, w.started_ms)
        w.last_value = v
        self.changed[id(w)] = w
        self.closed += 1

    # -- rules
    def run(self, ts: np.ndarray, vs: np.ndarray) -> None:
        ind = self.ind
        if Rule.MISSING in self.open:
            self._missing_ended(ts, vs)
        self._bands(ts, vs)
        if ind.rate_limit:
            self._rate(ts, vs)
        if ind.anomaly and self.baseline is not None:
            self._anomaly(ts, vs)
        if ind.flatline_minutes and (Rule.FLATLINE in self.open or self.flat_history is not None):
            self._flatline(ts, vs)

    def _missing_ended(self, ts, vs) -> None:
        w = self.open[Rule.MISSING]
        last = w.explanation.get("last_reading_ms")
        newer = np.flatnonzero(ts > last) if last is not None else np.arange(len(ts))
        if len(newer):
            i = int(newer[0])
            self._end(Rule.MISSING, int(ts[i]), float(vs[i]))

    def _bands(self, ts, vs) -> None:
        ind = self.ind
        if ind.warn_low is None and ind.warn_high is None and ind.alarm_low is None and ind.alarm_high is None:
            return
        open_band = Rule.BAND_HIGH in self.open or Rule.BAND_LOW in self.open
        if not open_band:
            lo = [x for x in (ind.warn_low, ind.alarm_low) if x is not None]
            hi = [x for x in (ind.warn_high, ind.alarm_high) if x is not None]
            if (not lo or vs.min() >= max(lo)) and (not hi or vs.max() <= min(hi)):
                return  # the common case: every value inside the band
        for t, v in zip(ts.tolist(), vs.tolist(), strict=True):
            level, rule = band_level(ind, v)
            for r in (Rule.BAND_HIGH, Rule.BAND_LOW):
                w = self.open.get(r)
                if w is None or t < w.started_ms:
                    continue
                if rule == r:
                    worse = v > w.peak_value if r == Rule.BAND_HIGH else v < w.peak_value
                    self._update(w, level, t, v, worse)
                elif band_cleared(ind, r, v):
                    self._end(r, t, v)
                else:  # back inside, but not by the hysteresis yet
                    self._update(w, None, t, v, False)
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
        if self.previous is not None and self.previous[0] < ts[0]:
            all_t = np.concatenate([[self.previous[0]], ts])
            all_v = np.concatenate([[self.previous[1]], vs])
        else:
            all_t, all_v = ts, vs
        if len(all_t) < 2:
            return
        dt_ms = np.diff(all_t)
        rate = _rate_per_minute(dt_ms, np.diff(all_v))
        w = self.open.get(Rule.RATE)
        if w is None and rate.max() <= limit:
            return
        for i, r in enumerate(rate.tolist()):
            t, v = int(all_t[i + 1]), float(all_v[i + 1])
            w = self.open.get(Rule.RATE)
            level = Level.ALARM if r > 2 * limit else Level.WARNING if r > limit else None
            if w is not None:
                if t < w.started_ms:
                    continue
                if level is not None:
                    worse = r > w.explanation.get("peak_rate", 0)
                    self._update(w, level, t, v, worse)
                    if worse:
                        w.explanation = {**w.explanation, "peak_rate": round(r, 6)}
                elif r <= limit / 2:
                    self._end(Rule.RATE, t, v)
                else:
                    self._update(w, None, t, v, False)
            elif level is not None:
                self._start(Rule.RATE, level, t, v, {
                    "rule": "rate", "rate_per_minute": round(r, 6), "limit_per_minute": limit, "peak_rate": round(r, 6),
                    "from": float(all_v[i]), "to": v, "minutes": round(float(dt_ms[i] / 60_000.0), 3),
                })

    def _anomaly(self, ts, vs) -> None:
        ind = self.ind
        how = hour_of_week(ts)
        slot = baseline_slots(ts)
        med, mad = _looked_up(self.baseline, slot, how)
        z = _anomaly_z(vs, med, mad, ind.source == Source.CASES)
        if Rule.ANOMALY not in self.open and z.max() <= ind.anomaly_score:
            return
        for i, zi in enumerate(z.tolist()):
            t, v = int(ts[i]), float(vs[i])
            w = self.open.get(Rule.ANOMALY)
            level = Level.ALARM if zi > 2 * ind.anomaly_score else Level.WARNING if zi > ind.anomaly_score else None
            if w is not None:
                if t < w.started_ms:
                    continue
                if zi < ind.anomaly_clear:
                    self._end(Rule.ANOMALY, t, v)
                else:
                    worse = zi > w.explanation.get("peak_z", 0)
                    self._update(w, level, t, v, worse)
                    if worse:
                        w.explanation = {**w.explanation, "peak_z": round(zi, 3)}
            elif level is not None:
                self._start(Rule.ANOMALY, level, t, v, {
                    "rule": "anomaly", "value": v, "z": round(zi, 3), "peak_z": round(zi, 3),
                    "hour_of_week": int(how[i]), "median": round(float(med[i]), 6), "mad": round(float(mad[i]), 6),
                    "threshold": ind.anomaly_score, "clear_below": ind.anomaly_clear,
                    **({"day": "rest day" if slot[i] >= REST_DAY_SLOTS else "working day"}
                       if slot[i] >= WORKING_DAY_SLOTS else {}),
                })


    def _flatline(self, ts, vs) -> None:
        """Walk the readings keeping the flat stretch ending at each (its
        start only moves forward; two monotonic queues give its smallest and
        largest value), from the stored readings looked back on to the new ones."""
        ind = self.ind
        tol, span = ind.flatline_tolerance, ind.flatline_minutes * MINUTE_MS
        old_t, old_v = self.flat_history if self.flat_history is not None else (ts[:0], vs[:0])
        all_t, all_v = np.concatenate([old_t, ts]).tolist(), np.concatenate([old_v, vs]).tolist()
        first_new = len(old_t)
        lows: deque[int] = deque()  # indices of the stretch, values rising: lows[0] is its smallest
        highs: deque[int] = deque()  # values falling: highs[0] is its largest
        start = 0
        for i, (t, v) in enumerate(zip(all_t, all_v, strict=True)):
            w = self.open.get(Rule.FLATLINE)
            if w is not None:
                if i < first_new or t < w.started_ms:
                    continue
                low, high = min(w.explanation["low"], v), max(w.explanation["high"], v)
                if high - low > tol:  # the value moved: the sensor is alive, a new stretch starts here
                    self._end(Rule.FLATLINE, t, v)
                    lows.clear()
                    highs.clear()
                    start = i
                elif (low, high) != (w.explanation["low"], w.explanation["high"]):
                    w.explanation = {**w.explanation, "low": low, "high": high}
                    self._update(w, None, t, v, False)
                    continue
                else:
                    continue
            while lows and all_v[lows[-1]] >= v:
                lows.pop()
            lows.append(i)
            while highs and all_v[highs[-1]] <= v:
                highs.pop()
            highs.append(i)
            while all_v[highs[0]] - all_v[lows[0]] > tol:  # drop the stretch's oldest readings until it is flat
                start += 1
                if lows[0] < start:
                    lows.popleft()
                if highs[0] < start:
                    highs.popleft()
            if i >= first_new and t - all_t[start] >= span and i - start + 1 >= FLATLINE_MIN_READINGS:
                low, high = all_v[lows[0]], all_v[highs[0]]
                self._start(Rule.FLATLINE, Level.WARNING, all_t[start], v, {
                    "rule": "flatline", "value": v, "low": low, "high": high, "tolerance": tol,
                    "minutes": ind.flatline_minutes, "readings": i - start + 1, "tripped_at": t,
                })


def _id_set(ids: list[int]) -> RawSQL:
    """Ids for ``__in`` as one query parameter (see :func:`.ingest.id_set_sql`)."""
    return RawSQL(*id_set_sql(ids))


def _chunks(items: list, size: int = CHUNK):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# indicator id -> (fingerprint of its stored baseline, medians, MADs). A batch
# asks the database only for the fingerprints (one small aggregate row per
# indicator) and reads the 168 rows of an indicator again only when they changed.
_baseline_cache: dict[int, tuple[tuple, np.ndarray, np.ndarray]] = {}


def _baselines(indicator_ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    if not indicator_ids:
        return {}
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    stale: dict[int, tuple] = {}
    prints = (Baseline.objects.filter(indicator_id__in=_id_set(indicator_ids), samples__gte=MIN_BASELINE_SAMPLES)
              .values("indicator_id").order_by()
              .annotate(n=Count("id"), last=Max("id"), at=Max("computed_at"), m=Sum("median"), d=Sum("mad"))
              .values_list("indicator_id", "n", "last", "at", "m", "d"))
    for ind_id, *fingerprint in prints:
        hit = _baseline_cache.get(ind_id)
        if hit is not None and hit[0] == tuple(fingerprint):
            out[ind_id] = hit[1], hit[2]
        else:
            stale[ind_id] = tuple(fingerprint)
    if stale:
        rows: dict[int, list] = {}
        for ind_id, how, m, d in Baseline.objects.filter(
                indicator_id__in=_id_set(list(stale)), samples__gte=MIN_BASELINE_SAMPLES).values_list(
                "indicator_id", "hour_of_week", "median", "mad"):
            rows.setdefault(ind_id, []).append((how, m, d))
        for ind_id, slots in rows.items():
            arr = np.array(slots, np.float64)
            med, mad = np.full(SLOTS, np.nan), np.full(SLOTS, np.nan)
            med[arr[:, 0].astype(int)], mad[arr[:, 0].astype(int)] = arr[:, 1], arr[:, 2]
            _baseline_cache[ind_id] = (stale[ind_id], med, mad)
            out[ind_id] = med, mad
    return out


def _stored_between(windows: dict[int, tuple[int, int]]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """sensor id -> (times, values) of its stored readings in [from, to), in
    time order; one query per chunk of sensors, each a range of the reading
    table's (sensor, time) key."""
    rows: dict[int, list] = {s: [] for s in windows}
    table = Reading._meta.db_table
    with connection.cursor() as cur:
        for part in _chunks(list(windows.items()), 500):
            values = ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(part))
            cur.execute(
                f"WITH b(sid, t0, t1) AS (VALUES {values}) "
                f"SELECT r.sensor_id, r.ts, r.value FROM b JOIN {table} r ON r.sensor_id = b.sid "
                f"AND r.ts >= b.t0 AND r.ts < b.t1 ORDER BY r.sensor_id, r.ts",
                [x for sid, (t0, t1) in part for x in (sid, t0, t1)],
            )
            for sid, t, v in cur.fetchall():
                rows[int(sid)].append((t, v))
    return {sid: (np.array([r[0] for r in got], np.int64), np.array([r[1] for r in got], np.float64))
            for sid, got in rows.items()}


def evaluate_batch(rows) -> tuple[int, int]:
    """Run the rules of every indicator whose series got new values.
    ``rows``: (sensor id, ts ms, value) tuples, in any order."""
    n = len(rows)
    if not n:
        return 0, 0
    sid = np.fromiter((r[0] for r in rows), np.int64, n)
    ts = np.fromiter((r[1] for r in rows), np.int64, n)
    vs = np.fromiter((r[2] for r in rows), np.float64, n)
    return evaluate_arrays(sid, ts, vs)


def evaluate_arrays(sid: np.ndarray, ts: np.ndarray, vs: np.ndarray) -> tuple[int, int]:
    """:func:`evaluate_batch` for a batch already held as three arrays, stored
    but with the sensors' last readings (``Sensor.last_ms``) not yet moved to
    it: values not newer than those are not judged (see the module docstring).

    Most indicators of a batch have every new value inside their band, no
    warning open, no change faster than their rate limit, no value beyond
    their anomaly score and no flat stretch: nothing can change for them but
    their status (to ok). They are picked out with numpy passes over the
    whole batch (each sensor's smallest and largest new value against the
    band edges, its fastest change, its largest robust z, its longest run of
    steps within the flat-line tolerance) doing the same arithmetic as the
    :class:`Evaluator`'s first checks, and only the others are run through it."""
    n = len(sid)
    if not n:
        return 0, 0
    if n > 1 and not ((sid[1:] > sid[:-1]) | ((sid[1:] == sid[:-1]) & (ts[1:] >= ts[:-1]))).all():
        order = np.lexsort((ts, sid))
        sid, ts, vs = sid[order], ts[order], vs[order]
    starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
    ends = np.append(starts[1:], n)
    position = {s: i for i, s in enumerate(sid[starts].tolist())}
    indicators = [IndicatorRules(*row) for row in Indicator.objects.filter(
        sensor_id__in=_id_set(list(position)), active=True).order_by().values_list(*RULE_COLUMNS)]
    if not indicators:
        return 0, 0
    after = np.full(len(starts), np.iinfo(np.int64).min)
    for ind in indicators:
        if ind.last_ms is not None:
            after[position[ind.sensor_id]] = ind.last_ms
    newer = ts > np.repeat(after, ends - starts)
    if not newer.all():  # late readings, older than what the rules have seen: stored, not judged
        sid, ts, vs = sid[newer], ts[newer], vs[newer]
        if not len(sid):
            return 0, 0
        starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
        ends = np.append(starts[1:], len(sid))
        position = {s: i for i, s in enumerate(sid[starts].tolist())}
        indicators = [i for i in indicators if i.sensor_id in position]
    open_by: dict[int, list[Warning]] = defaultdict(list)
    for w in Warning.objects.filter(indicator_id__in=_id_set([i.pk for i in indicators]), ended_ms__isnull=True):
        open_by[w.indicator_id].append(w)
    at = np.array([position[i.sensor_id] for i in indicators], np.int64)
    low, high = _band_edges(indicators)
    inside = ((np.minimum.reduceat(vs, starts)[at] >= low) & (np.maximum.reduceat(vs, starts)[at] <= high)).tolist()
    baselines = _baselines([i.pk for i in indicators if i.anomaly])
    starts_l, ends_l = starts.tolist(), ends.tolist()
    # every judged value is newer than the sensor's last reading, so that is the one stored before them
    previous = {i.sensor_id: (i.last_ms, i.last_value) for i in indicators if i.last_ms is not None}
    flat = _flatlines_tripping([i for i in indicators if i.flatline_minutes], ts, vs, starts, position)
    tripping = (_rates_tripping([i for i in indicators if i.rate_limit], ts, vs, starts, position, previous)
                | _anomalies_tripping([i for i in indicators if i.anomaly and i.pk in baselines], ts, vs, starts,
                                      ends, position, baselines)
                | flat)
    flat_history = _flat_histories([i for i in indicators if i.pk in flat], ts, vs, starts_l, position)
    look = [i for i, calm in zip(indicators, inside, strict=True) if not calm or i.pk in open_by or i.pk in tripping]
    statuses: dict[str, list[int]] = {}
    looked = {i.pk for i in look}
    for ind in indicators:
        if ind.pk not in looked and ind.status != Status.OK:
            statuses.setdefault(Status.OK, []).append(ind.pk)
    opened = closed = 0
    changed: list[Warning] = []
    for ind in look:
        p = position[ind.sensor_id]
        a, b = starts_l[p], ends_l[p]
        ev = Evaluator(ind, open_by.get(ind.pk, []), previous.get(ind.sensor_id), baselines.get(ind.pk),
                       flat_history.get(ind.pk))
        ev.run(ts[a:b], vs[a:b])
        opened += ev.opened
        closed += ev.closed
        changed.extend(ev.changed.values())
        status = status_of(ev.open.values())
        if status != ind.status:
            statuses.setdefault(status, []).append(ind.pk)
    _save(changed)
    for status, pks in statuses.items():
        Indicator.objects.filter(pk__in=_id_set(pks)).update(status=status)
    return opened, closed


def _rates_tripping(indicators: list[IndicatorRules], ts: np.ndarray, vs: np.ndarray, starts: np.ndarray,
                    position: dict[int, int], previous: dict[int, tuple[int, float]]) -> set[int]:
    """Of these indicators with a rate limit, those whose new values change
    faster than the limit somewhere — between two new readings, or from the
    stored reading before the first (what :meth:`Evaluator._rate` checks
    first), all sensors of the batch in one numpy pass."""
    if not indicators:
        return set()
    rate = np.zeros(len(ts))
    rate[1:] = _rate_per_minute(np.diff(ts), np.diff(vs))
    rate[starts] = 0.0  # across two sensors: no rate
    at = np.array([position[i.sensor_id] for i in indicators], np.int64)
    peak = np.maximum.reduceat(rate, starts)[at]
    first = starts[at]
    before = [previous.get(i.sensor_id, (np.iinfo(np.int64).max, 0.0)) for i in indicators]
    before_t = np.array([b[0] for b in before], np.int64)
    before_v = np.array([b[1] for b in before], np.float64)
    later = before_t < ts[first]  # the stored reading is older than the first new one
    peak = np.where(later, np.maximum(peak, _rate_per_minute(ts[first] - before_t, vs[first] - before_v)), peak)
    limit = np.array([i.rate_limit for i in indicators], np.float64)
    return {i.pk for i, trips in zip(indicators, (peak > limit).tolist(), strict=True) if trips}


def _anomalies_tripping(indicators: list[IndicatorRules], ts: np.ndarray, vs: np.ndarray, starts: np.ndarray,
                        ends: np.ndarray, position: dict[int, int],
                        baselines: dict[int, tuple[np.ndarray, np.ndarray]]) -> set[int]:
    """Of these indicators with a learned baseline, those with a new value
    beyond their anomaly score (what :meth:`Evaluator._anomaly` checks first),
    all in one numpy pass; each sensor's hours of the week are counted with
    the UTC offset at its first new reading, as the evaluator does."""
    if not indicators:
        return set()
    at = np.array([position[i.sensor_id] for i in indicators], np.int64)
    first, lengths = starts[at], ends[at] - starts[at]
    idx = np.concatenate([np.arange(a, b) for a, b in zip(first.tolist(), ends[at].tolist(), strict=True)])
    tz = ZoneInfo(settings.TIME_ZONE)
    offsets = np.repeat([_utc_offset_ms(t, tz) for t in ts[first].tolist()], lengths)
    how = _week_hours(ts[idx], offsets)
    slot = _day_slots(how, (ts[idx].astype(np.int64) + offsets) // (24 * HOUR_MS))
    row = np.repeat(np.arange(len(indicators)), lengths)
    med, mad = _looked_up((np.stack([baselines[i.pk][0] for i in indicators]),
                           np.stack([baselines[i.pk][1] for i in indicators])), slot, how, row)
    counts = np.repeat([i.source == Source.CASES for i in indicators], lengths)
    z = _anomaly_z(vs[idx], med, mad, counts)
    peak = np.maximum.reduceat(z, np.concatenate(([0], np.cumsum(lengths)[:-1])))
    return {i.pk for i, p in zip(indicators, peak.tolist(), strict=True) if p > i.anomaly_score}


def _flatlines_tripping(indicators: list[IndicatorRules], ts: np.ndarray, vs: np.ndarray, starts: np.ndarray,
                        position: dict[int, int]) -> set[int]:
    """Of these indicators with a flat-line rule, those whose new values could
    complete a flat stretch (what :meth:`Evaluator._flatline` looks for), all
    sensors of the batch in one numpy pass. A flat stretch has no step between
    consecutive readings larger than the tolerance, so the runs without such a
    step bound it: an indicator trips only if one of them spans the minutes
    and readings asked for, or if its first run may go on from the stored
    readings (its first new value within the tolerance of the last stored one)."""
    if not indicators:
        return set()
    at = np.array([position[i.sensor_id] for i in indicators], np.int64)
    tol = np.full(len(starts), -1.0)  # sensors without the rule: every step breaks
    span = np.full(len(starts), np.iinfo(np.int64).max)
    tol[at] = [i.flatline_tolerance for i in indicators]
    span[at] = [i.flatline_minutes * MINUTE_MS for i in indicators]
    lengths = np.diff(np.append(starts, len(ts)))
    step = np.zeros(len(ts))
    step[1:] = np.abs(np.diff(vs))
    breaks = step > np.repeat(tol, lengths)
    breaks[starts] = True
    run_start = np.maximum.accumulate(np.where(breaks, np.arange(len(ts)), 0))
    long = ((ts - ts[run_start]) >= np.repeat(span, lengths)) & (np.arange(len(ts)) - run_start + 1
                                                                  >= FLATLINE_MIN_READINGS)
    trips = np.maximum.reduceat(long, starts)[at]
    out = {i.pk for i, t in zip(indicators, trips.tolist(), strict=True) if t}
    first = starts[at].tolist()
    for ind, a in zip(indicators, first, strict=True):
        if ind.last_value is not None and abs(float(vs[a]) - ind.last_value) <= ind.flatline_tolerance:
            out.add(ind.pk)
    return out


def _flat_histories(indicators: list[IndicatorRules], ts: np.ndarray, vs: np.ndarray, starts: list[int],
                    position: dict[int, int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """indicator id -> the stored readings its flat-line rule looks back on:
    those of the last ``2 · flatline_minutes`` before the new values when the
    first new value may continue a flat stretch, none otherwise."""
    back: dict[int, tuple[int, int]] = {}
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float64))
    for ind in indicators:
        a = starts[position[ind.sensor_id]]
        if ind.last_value is not None and abs(float(vs[a]) - ind.last_value) <= ind.flatline_tolerance:
            first = int(ts[a])
            back[ind.sensor_id] = (first - 2 * ind.flatline_minutes * MINUTE_MS, first)
        out[ind.pk] = empty
    stored = _stored_between(back) if back else {}
    for ind in indicators:
        if ind.sensor_id in stored:
            out[ind.pk] = stored[ind.sensor_id]
    return out


def _band_edges(indicators: list[IndicatorRules]) -> tuple[np.ndarray, np.ndarray]:
    """The innermost low and high edge of each indicator's band (what
    :meth:`Evaluator._bands` checks first): -inf / +inf where there is none."""
    def column(name: str) -> np.ndarray:  # None (no such level) becomes NaN
        return np.array([getattr(i, name) for i in indicators], np.float64)

    # fmax/fmin pass over NaN: the one level given, or NaN when neither is
    low = np.nan_to_num(np.fmax(column("warn_low"), column("alarm_low")), nan=-np.inf)
    high = np.nan_to_num(np.fmin(column("warn_high"), column("alarm_high")), nan=np.inf)
    return low, high


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
            try:
                with transaction.atomic():  # a savepoint: a failed case must not lose the readings
                    raise_case(w)
            except Exception:
                log.exception("signs: could not raise a case for warning %s", w.pk)


def alarm_text(w: Warning) -> tuple[str, str]:
    """The title and description of an alarm's case, in the active language."""
    ind = w.indicator
    sensor = ind.sensor
    when = datetime.fromtimestamp(w.started_ms / 1000, UTC).astimezone(ZoneInfo(settings.TIME_ZONE))
    name = ind.display_name
    title = _("Alarm: %(indicator)s — %(rule)s") % {"indicator": name, "rule": Rule(w.rule).label}
    description = _(
        "%(indicator)s: %(rule)s since %(when)s; value %(value)s %(unit)s (peak %(peak)s). Sensor %(sensor)s."
    ) % {"indicator": name, "rule": Rule(w.rule).label, "when": f"{when:%Y-%m-%d %H:%M}",
         "value": _fmt(w.last_value), "unit": sensor.display_unit, "peak": _fmt(w.peak_value), "sensor": sensor.code}
    return title[:200], description


def raise_case(w: Warning):
    """An alarm becomes a case through the intake pipeline, once."""
    from chengyun.cases.models import Channel
    from chengyun.intake.services import ReportInput, submit

    ind = w.indicator
    sensor = ind.sensor
    category = ind.alarm_category or (sensor.kind.alarm_category if sensor.kind_id else None)
    with translation.override(settings.LANGUAGE_CODE):  # stored in the site's language; pages use alarm_text
        title, description = alarm_text(w)
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
    silent for more than its number of intervals. The silent ones are found
    in SQL, so a minute's sweep costs the same with a million quiet sensors."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    watched = Indicator.objects.filter(active=True, missing_intervals__gt=0, sensor__active=True,
                                       sensor__last_ms__isnull=False)
    open_missing = Warning.objects.filter(indicator_id=OuterRef("pk"), rule=Rule.MISSING, ended_ms__isnull=True)
    # bigint arithmetic: a year-long interval times many intervals overflows a PostgreSQL integer
    allowed = Cast("missing_intervals", BigIntegerField()) * Cast("sensor__interval_s", BigIntegerField()) * 1000
    silent = (watched.alias(allowed=allowed)
              .filter(sensor__last_ms__lt=now_ms - F("allowed")).exclude(Exists(open_missing))
              .select_related("sensor"))
    changed = []
    for ind in silent:
        s = ind.sensor
        allowed = ind.missing_intervals * s.interval_s * 1000
        changed.append(Warning(indicator=ind, rule=Rule.MISSING, level=Level.WARNING, started_ms=s.last_ms + allowed,
                               last_value=s.last_value, generated=s.generated, explanation={
                                   "rule": "missing", "last_reading_ms": s.last_ms, "interval_s": s.interval_s,
                                   "intervals": ind.missing_intervals}))
    if changed:
        with transaction.atomic():
            _save(changed)
            Indicator.objects.filter(pk__in=[w.indicator_id for w in changed],
                                     status__in=[Status.OK, Status.UNKNOWN]).update(status=Status.SILENT)
    return {"checked": watched.count(), "opened": len(changed)}


# --------------------------------------------------------------------------- learned baseline


def _spread(dev: np.ndarray) -> float:
    """MAD of absolute deviations; the scaled mean absolute deviation when more than half are 0."""
    if not len(dev):
        return 0.0
    mad = float(np.median(dev))
    return mad if mad > 0 else float(dev.mean()) * MEAN_AD_TO_MAD


def _shrunk(mad: float, n: int, pooled: float) -> float:
    """An hour's spread, trusted in proportion to its number of values: the
    root mean square of the hour's MAD (weight n) and the indicator's pooled
    MAD over all hours (weight SHRINK_SAMPLES). An hour seen 240 times (a
    minute sensor, four weeks) keeps its own spread; an hour seen 4 times (an
    hourly sensor) mostly takes the pooled one; an hour with no spread at all
    takes the pooled one."""
    if mad <= 0:
        return pooled
    return float(np.sqrt((n * mad * mad + SHRINK_SAMPLES * pooled * pooled) / (n + SHRINK_SAMPLES)))


def _slots(keys: np.ndarray, values: np.ndarray, n: int) -> dict[int, tuple[float, np.ndarray]]:
    """key -> (median, absolute deviations from it) of the values with that key, for keys 0 … n-1 present."""
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    bounds = np.searchsorted(keys, np.arange(n + 1))
    out = {}
    for k in range(n):
        sel = values[bounds[k]:bounds[k + 1]]
        if len(sel):
            med = float(np.median(sel))
            out[k] = (med, np.abs(sel - med))
    return out


def compute_baselines(indicators=None, *, weeks: int = 4, at: datetime | None = None) -> int:
    """For every indicator with anomaly detection: per hour of the week, the
    median and MAD of all per-minute values of the last ``weeks`` weeks that
    fell into that hour (minute rollup means; the raw readings of a sensor
    that reports once a minute or less often, which keeps no minute rollups).

    An hour of the week is its own baseline once its values come from at
    least ``WEEKLY_MIN_WEEKS`` different weeks: a median of three outvotes one
    odd day. Before that (a young sensor, or a gap) it takes the same hour of
    the day over all days of its kind — working days or rest days — so the
    weekly swing is kept. Not the plain hour of the day, which would judge
    every weekend hour against weekday values. Measured in
    docs/performance.md ("Detection quality").

    Which days are worked comes from the city's working calendar: a public
    holiday on a weekday and a worked weekend day (调休) are left out of
    their weekday's hours and counted with their kind, and they get slots of
    their own, ``WORKING_DAY_SLOTS + h`` and ``REST_DAY_SLOTS + h`` (the same
    hour of all working / rest days), which the anomaly rule uses on such
    days (:func:`baseline_slots`). Returns the number of indicators given a
    baseline."""
    at = at or now()
    end = int(at.timestamp() * 1000) // HOUR_MS * HOUR_MS
    start = end - weeks * 7 * 24 * HOUR_MS
    qs = indicators if indicators is not None else Indicator.objects.filter(anomaly=True, active=True)
    tz = ZoneInfo(settings.TIME_ZONE)
    done = 0
    if hasattr(qs, "select_related"):
        qs = qs.select_related("sensor")
    for ind in qs:
        if ind.sensor.interval_s >= MINUTE_ROLLUP_BELOW_S:  # no minute rollups: the raw readings are its minutes
            rows = list(Reading.objects.filter(sensor_id=ind.sensor_id, ts__gte=start, ts__lt=end)
                        .values_list("ts", "value"))
        else:
            rows = list(Rollup.objects.filter(sensor_id=ind.sensor_id, resolution="m", bucket__gte=start,
                                              bucket__lt=end).values_list("bucket", "sum", "count"))
        if not rows:
            continue
        arr = np.array(rows, dtype=np.float64)
        stamps = arr[:, 0].astype(np.int64)
        values = arr[:, 1] / arr[:, 2] if arr.shape[1] == 3 else arr[:, 1]
        how = hour_of_week(stamps, tz)
        local_days = (stamps + _utc_offset_ms(int(stamps[0]), tz)) // (24 * HOUR_MS)
        worked = _worked(local_days)
        ordinary = worked == (how < WEEKEND_FROM_HOUR)  # not a holiday on a weekday, not a worked weekend day
        week = (local_days + 3) // 7  # Monday-based week number (1970-01-01 was a Thursday)
        seen_weeks = np.bincount(
            np.unique(how[ordinary] * (int(week.max()) + 1) + week[ordinary]) // (int(week.max()) + 1),
            minlength=168)
        weekly = _slots(how[ordinary], values[ordinary], 168)
        by_day_kind = _slots(np.where(worked, 0, 24) + how % 24, values, 48)  # 0-23 working, 24-47 rest days
        slots = []
        residuals: dict[tuple[str, int], np.ndarray] = {}
        for h in range(168):
            if h in weekly and seen_weeks[h] >= WEEKLY_MIN_WEEKS:
                key = ("week", h)
                med, dev = weekly[h]
            else:
                k = (24 if h >= WEEKEND_FROM_HOUR else 0) + h % 24
                if k not in by_day_kind:
                    continue
                key = ("day kind", k)
                med, dev = by_day_kind[k]
            residuals[key] = dev
            slots.append((h, med, _spread(dev), len(dev)))
        pooled = _spread(np.concatenate(list(residuals.values())))
        for k, (med, dev) in sorted(by_day_kind.items()):  # for holidays and worked weekend days
            slots.append((WORKING_DAY_SLOTS + k, med, _spread(dev), len(dev)))
        objs = [Baseline(indicator=ind, hour_of_week=h, median=med, mad=_shrunk(mad, n, pooled), samples=n,
                         computed_at=at) for h, med, mad, n in slots]
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
