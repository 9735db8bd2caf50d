"""Computed indicators: values made from other sensors or from case reports,
written as readings of the indicator's virtual sensor through
:func:`~chengyun.signs.ingest.ingest`, so storage, rollups and the warning
rules are the same as for a device.

Time is cut into buckets of the virtual sensor's ``interval_s`` (aligned to
the epoch, so a 5-minute indicator has values at :00, :05, …). The value of
the bucket ending at ``end`` covers the readings or reports with a time in
``(end − window, end]`` and is stored with ``ts = end``; computing a bucket
again stores nothing new (the reading is already there), so a rerun, an
overlap between two workers or a catch-up after an outage is harmless.

* ``source="aggregate"``: window = one interval. Each input's *raw readings*
  in the window are reduced to its count/min/max/mean (one grouped query),
  then: ``mean`` = mean of the inputs' means (every input weighs the same,
  whatever its reporting rate); ``sum`` = sum of the inputs' means (for
  example the total flow of several meters, independent of how often each
  reports); ``max`` = the largest reading; ``min`` = the smallest. Inputs with
  no reading in the window are left out; with none at all the bucket gets no
  value (and the missing-data rule notices).
* ``source="cases"``: window = one hour. The number of reports of
  ``case_category`` or any category below it (all categories when empty),
  located in ``case_area`` or below (the whole city when empty), received in
  the hour: "no-water reports per hour in district X", written every
  ``interval_s``. Reports the vital signs raised themselves (source
  ``signs``) are not counted, so an alarm's own case does not feed the count.

Catch-up: a run computes every bucket after the series' last value, at most
``max_buckets`` of them (a new indicator gets its recent history).
Indicators computed from other computed indicators run after those.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db.models import Count, F, Max, Min, Sum

from chengyun.clock import now

from .ingest import ingest
from .models import HOUR_MS, Aggregate, Indicator, Reading, Source, from_ms, to_ms

CASES_WINDOW_MS = HOUR_MS
MAX_BUCKETS = 1440


def bucket_ends(interval_ms: int, at_ms: int, last_ms: int | None, max_buckets: int = MAX_BUCKETS) -> list[int]:
    """The ends of the whole buckets up to ``at_ms`` not yet written (after ``last_ms``)."""
    end = at_ms // interval_ms * interval_ms
    first = end - (max_buckets - 1) * interval_ms
    if last_ms is not None:
        first = max(first, (last_ms // interval_ms + 1) * interval_ms)
    return list(range(first, end + 1, interval_ms)) if first <= end else []


def _aggregate_values(ind: Indicator, ends: list[int], interval_ms: int) -> list[tuple[int, float]]:
    inputs = list(ind.inputs.values_list("id", flat=True))
    if not inputs or not ends:
        return []
    # bucket k holds ts in ((k-1)·interval, k·interval]: k = ceil(ts / interval)
    rows = (Reading.objects.filter(sensor_id__in=inputs, ts__gt=ends[0] - interval_ms, ts__lte=ends[-1])
            .annotate(k=(F("ts") + (interval_ms - 1)) / interval_ms).values("sensor_id", "k")
            .annotate(n=Count("ts"), lo=Min("value"), hi=Max("value"), total=Sum("value")).order_by())
    per_bucket: dict[int, list[tuple[int, float, float, float]]] = defaultdict(list)
    for r in rows:
        per_bucket[int(r["k"]) * interval_ms].append((r["n"], r["lo"], r["hi"], r["total"]))
    out = []
    how = ind.aggregate or Aggregate.MEAN
    for end in ends:
        parts = per_bucket.get(end)
        if not parts:
            continue
        means = [total / n for n, _lo, _hi, total in parts]
        if how == Aggregate.SUM:
            value = float(sum(means))
        elif how == Aggregate.MAX:
            value = float(max(p[2] for p in parts))
        elif how == Aggregate.MIN:
            value = float(min(p[1] for p in parts))
        else:
            value = float(sum(means) / len(means))
        out.append((end, value))
    return out


def _category_ids(category) -> list[int] | None:
    """The category and every category below it; None = all."""
    if category is None:
        return None
    from chengyun.taxonomy.models import Category

    ids, level = [category.pk], [category.pk]
    while level:
        level = list(Category.objects.filter(parent_id__in=level).values_list("pk", flat=True))
        ids.extend(level)
    return ids


def _case_counts(ind: Indicator, ends: list[int]) -> list[tuple[int, float]]:
    from chengyun.intake.models import Report

    if not ends:
        return []
    qs = Report.objects.filter(received_at__gt=from_ms(ends[0] - CASES_WINDOW_MS),
                               received_at__lte=from_ms(ends[-1])).exclude(source="signs")
    cats = _category_ids(ind.case_category)
    if cats is not None:
        qs = qs.filter(category_id__in=cats)
    if ind.case_area_id is not None:
        qs = qs.filter(area__path__startswith=ind.case_area.path)
    times = np.sort(np.array([to_ms(t) for t in qs.values_list("received_at", flat=True)], np.int64))
    e = np.array(ends, np.int64)
    counts = np.searchsorted(times, e, side="right") - np.searchsorted(times, e - CASES_WINDOW_MS, side="right")
    return list(zip(ends, counts.astype(float).tolist(), strict=True))


def _ordered(indicators: list[Indicator]) -> list[Indicator]:
    """Case counts first, then aggregates whose computed inputs are already done."""
    computed = {i.sensor_id for i in indicators}
    inputs = {i.pk: set(i.inputs.values_list("id", flat=True)) & computed for i in indicators
              if i.source == Source.AGGREGATE}
    done: set[int] = set()
    out = [i for i in indicators if i.source == Source.CASES]
    done.update(i.sensor_id for i in out)
    pending = [i for i in indicators if i.source == Source.AGGREGATE]
    while pending:
        ready = [i for i in pending if inputs[i.pk] <= done] or pending  # a cycle: run the rest anyway
        out.extend(ready)
        done.update(i.sensor_id for i in ready)
        pending = [i for i in pending if i not in ready]
    return out


def compute_indicators(at: datetime | None = None, *, indicators=None, max_buckets: int = MAX_BUCKETS,
                       settle_s: int = 0) -> dict:
    """Compute every active computed indicator up to ``at`` (default now),
    less ``settle_s`` seconds for late readings; returns counts."""
    at = at or now()
    at_ms = to_ms(at)
    upto = at_ms - settle_s * 1000
    qs = indicators if indicators is not None else (
        Indicator.objects.filter(active=True, sensor__active=True, source__in=[Source.AGGREGATE, Source.CASES])
        .select_related("sensor", "case_area", "case_category"))
    result = {"indicators": 0, "values": 0, "warnings_opened": 0, "warnings_closed": 0}
    for ind in _ordered(list(qs)):
        sensor = ind.sensor
        sensor.refresh_from_db(fields=["last_ms"])
        interval_ms = max(1, sensor.interval_s) * 1000
        oldest = at_ms - settings.SIGNS_MAX_AGE_DAYS * 86_400_000  # older values would be refused by ingest
        ends = [e for e in bucket_ends(interval_ms, upto, sensor.last_ms, max_buckets) if e >= oldest]
        if ind.source == Source.CASES:
            values = _case_counts(ind, ends)
        else:
            values = _aggregate_values(ind, ends, interval_ms)
        result["indicators"] += 1
        if not values:
            continue
        res = ingest([(sensor.code, t, v) for t, v in values], source="compute", now_ms=at_ms)
        result["values"] += res.stored
        result["warnings_opened"] += res.warnings_opened
        result["warnings_closed"] += res.warnings_closed
    return result
