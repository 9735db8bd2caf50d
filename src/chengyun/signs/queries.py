"""Reading vital signs for the console: a series over a range at the
resolution the range calls for, last-day sparklines, the state of each
sensor, and the warnings still to be looked at.

Resolution by range: raw readings up to 6 hours, minute rollups up to 7
days, hour rollups beyond. A sensor reporting once a minute or less often
keeps no minute rollups (ingest does not write them: they would repeat the
raw readings), so its "minute" series is its raw readings. When the chosen
source holds nothing for the range (raw readings already pruned), the next
coarser one is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import F, Max, Q, Sum

from chengyun.cases.workflow import OPEN_STATUSES
from chengyun.intake.models import ClusterWarning

from .ingest import MINUTE_ROLLUP_BELOW_S
from .models import HOUR_MS, Reading, Rollup, Sensor, SourceTally, Status, Warning, from_ms

RAW = "raw"
MINUTE = "m"
HOUR = "h"
RAW_UP_TO_MS = 6 * HOUR_MS
MINUTE_UP_TO_MS = 7 * 24 * HOUR_MS
COARSER = {RAW: MINUTE, MINUTE: HOUR}

DAY_MS = 24 * HOUR_MS
# A sensor without an indicator (so without a missing-data rule of its own)
# counts as silent after this many expected intervals without a reading.
SILENT_AFTER_INTERVALS = 3
# Ended warnings stay on the board until acknowledged, for this long.
UNACKNOWLEDGED_SHOWN_MS = DAY_MS
# Cluster warnings without a case (or whose case is gone) stay this long.
CLUSTER_SHOWN = timedelta(hours=24)


def resolution_for(span_ms: int) -> str:
    if span_ms <= RAW_UP_TO_MS:
        return RAW
    if span_ms <= MINUTE_UP_TO_MS:
        return MINUTE
    return HOUR


@dataclass
class Series:
    resolution: str  # raw | m | h: what was read
    chosen: str  # what the range called for
    from_readings: bool = False  # raw readings, also when standing in for minute values
    points: list[tuple[int, float, float, float, int]] = field(default_factory=list)  # (t, mean, min, max, count)


def _raw(sensor_id: int, start_ms: int, end_ms: int, limit: int | None = None):
    rows = (Reading.objects.filter(sensor_id=sensor_id, ts__gte=start_ms, ts__lt=end_ms).order_by("ts")
            .values_list("ts", "value"))
    return [(t, v, v, v, 1) for t, v in (rows[:limit] if limit else rows)]


def _rollups(sensor_id: int, resolution: str, start_ms: int, end_ms: int, limit: int | None = None):
    size = HOUR_MS if resolution == HOUR else 60_000
    rows = (Rollup.objects.filter(sensor_id=sensor_id, resolution=resolution, bucket__gte=start_ms // size * size,
                                  bucket__lt=end_ms).order_by("bucket")
            .values_list("bucket", "sum", "count", "min", "max"))
    return [(b, s / n, lo, hi, n) for b, s, n, lo, hi in (rows[:limit] if limit else rows) if n]


def reads_raw(sensor: Sensor, resolution: str) -> bool:
    """Raw readings serve this resolution: asked for, or minute values of a
    sensor that keeps no minute rollups (it reports once a minute or less often)."""
    return resolution == RAW or (resolution == MINUTE and sensor.interval_s >= MINUTE_ROLLUP_BELOW_S)


def points(sensor: Sensor, resolution: str, start_ms: int, end_ms: int, limit: int | None = None):
    """(t, mean, min, max, count) in [start, end) at ``resolution``; rollup
    buckets count when they overlap the range."""
    if reads_raw(sensor, resolution):
        return _raw(sensor.pk, start_ms, end_ms, limit)
    return _rollups(sensor.pk, resolution, start_ms, end_ms, limit)


def series(sensor: Sensor, start_ms: int, end_ms: int, resolution: str | None = None) -> Series:
    """The sensor's values in [start, end) at the resolution the range calls for."""
    chosen = resolution or resolution_for(end_ms - start_ms)
    res = chosen
    while True:
        found = points(sensor, res, start_ms, end_ms)
        if found or res not in COARSER:
            return Series(resolution=res, chosen=chosen, from_readings=reads_raw(sensor, res), points=found)
        res = COARSER[res]


def sparklines(sensor_ids: list[int], end_ms: int) -> dict[int, list[tuple[int, float]]]:
    """Hourly means of the last 24 hours per sensor, one query for all."""
    out: dict[int, list[tuple[int, float]]] = {sid: [] for sid in sensor_ids}
    start = (end_ms - DAY_MS) // HOUR_MS * HOUR_MS
    rows = (Rollup.objects.filter(sensor_id__in=sensor_ids, resolution=HOUR, bucket__gte=start, bucket__lte=end_ms)
            .order_by("sensor_id", "bucket").values_list("sensor_id", "bucket", "sum", "count"))
    for sid, bucket, total, n in rows:
        if n:
            out[sid].append((bucket, total / n))
    return out


# --------------------------------------------------------------------------- state of a sensor


def state_of(*, status: str | None, has_indicator: bool, missing_intervals: int, last_ms: int | None,
             interval_s: int, now_ms: int) -> str:
    """The state a sensor is shown in: its indicator's status (kept by the
    rules), except that a series silent for longer than its missing-data rule
    allows shows as silent even before the next sweep has opened a warning."""
    if status in (Status.ALARM, Status.WARNING, Status.SILENT):
        return status
    intervals = missing_intervals if has_indicator else SILENT_AFTER_INTERVALS
    if last_ms is not None and intervals and now_ms - last_ms > intervals * interval_s * 1000:
        return Status.SILENT
    if not has_indicator:
        return Status.OK if last_ms is not None else Status.UNKNOWN
    return status or Status.UNKNOWN


def silent_q(now_ms: int) -> Q:
    """The sensors :func:`state_of` calls silent, as a filter."""
    quiet = [Status.OK, Status.UNKNOWN]
    return (
        Q(indicator__status=Status.SILENT)
        | Q(indicator__isnull=True, last_ms__lt=now_ms - F("interval_s") * (1000 * SILENT_AFTER_INTERVALS))
        | Q(indicator__status__in=quiet, indicator__missing_intervals__gt=0,
            last_ms__lt=now_ms - F("interval_s") * F("indicator__missing_intervals") * 1000)
    )


def devices():
    """Active physical sensors (not the virtual series of computed indicators)."""
    return Sensor.objects.filter(active=True, virtual=False)


def sensor_state(sensor: Sensor, now_ms: int) -> str:
    ind = getattr(sensor, "indicator", None)  # reverse one-to-one: None when the sensor has none
    return state_of(status=ind.status if ind else None, has_indicator=ind is not None,
                    missing_intervals=ind.missing_intervals if ind else 0, last_ms=sensor.last_ms,
                    interval_s=sensor.interval_s, now_ms=now_ms)


# --------------------------------------------------------------------------- warnings to look at


def board_warnings(now_ms: int, limit: int = 200):
    """Sensor warnings still open, and ended ones nobody acknowledged in the
    last day, newest first."""
    return (Warning.objects
            .filter(Q(ended_ms__isnull=True)
                    | Q(acknowledged_at__isnull=True, ended_ms__gte=now_ms - UNACKNOWLEDGED_SHOWN_MS))
            .select_related("indicator__sensor__kind", "acknowledged_by", "case")
            .order_by("-started_ms")[:limit])


def board_cluster_warnings(now, limit: int = 100):
    """Cluster warnings (many reports close together) whose case is still
    open, or recent ones without a case, newest first."""
    return (ClusterWarning.objects
            .filter(Q(case__status__in=OPEN_STATUSES) | Q(case__isnull=True, raised_at__gte=now - CLUSTER_SHOWN))
            .select_related("category", "case", "area")
            .order_by("-raised_at")[:limit])


def sources(since_ms: int, *, only: str | None = None) -> list[dict]:
    """What each source sent since ``since_ms`` (whole hours, by arrival),
    summed from :class:`SourceTally`, the sources with refusals first; for
    ``user:{id}`` sources the account's username. ``only``: that source alone."""
    from chengyun.org.models import User

    qs = SourceTally.objects.filter(hour_ms__gte=since_ms)
    if only is not None:
        qs = qs.filter(source=only)
    latest = dict(qs.exclude(last_refusal="").order_by("last_ms").values_list("source", "last_refusal"))
    rows = list(qs.values("source").order_by()
                .annotate(b=Sum("batches"), r=Sum("received"), s=Sum("stored"), d=Sum("duplicates"),
                          x=Sum("refused"), last=Max("last_ms")))

    def account_id(source: str) -> int | None:
        kind, _sep, pk = source.partition(":")
        return int(pk) if kind == "user" and pk.isdigit() else None

    names = dict(User.objects.filter(pk__in=[account_id(r["source"]) for r in rows]).values_list("pk", "username"))
    out = [{"source": r["source"], "account": names.get(account_id(r["source"])),
            "batches": r["b"], "received": r["r"], "stored": r["s"], "duplicates": r["d"], "refused": r["x"],
            "last_at": from_ms(r["last"]), "last_refusal": latest.get(r["source"], "")} for r in rows]
    return sorted(out, key=lambda o: (-o["refused"], -o["received"], o["source"]))
