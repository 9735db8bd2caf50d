"""Benchmark: detection quality of the vital-signs rules on real public sensor series.

Two real series shipped in PyPI packages (see ``bench/data/README.md``):

* **hotgym** — five gyms' electricity meters, every 15 minutes, six months
  (NuPIC's "hot gym" data): daily and weekly cycles, real oddities.
* **co2** — weekly CO2 at Mauna Loa 1958-2001 (statsmodels), with 22 real gaps.

Each series is replayed through ``ingest()`` the way it would arrive (hourly
batches for hotgym, weekly for co2), with the silent-sensor sweep after each
batch and the anomaly baselines relearned daily (hotgym) or before each week
(co2). The rules' settings are taken from a history period at the start
(not from the data evaluated), see ``calibrate``.

Two runs per series:

1. **untouched** — what the detectors flag on the real data as it is (the
   real gaps of the co2 record should come out as missing data);
2. **planted** — the same data with anomalies planted at known times
   (spikes, level shifts, over-range excursions, meter outages, stuck values,
   gaps), scored per rule: recall = planted events of the kinds a rule is
   meant to catch that a warning of that rule overlaps; precision = warnings
   of the rule that overlap a planted event. A warning that overlaps no
   planted event is counted false even when the untouched run raised it too
   (a real oddity); the precision without those is printed beside it.

    .venv/bin/python bench/signs_quality.py [--series hotgym,co2] [--seed 7]
        [--anomaly-score 6] [--history-weeks 4] [--database-url postgres://…]   (default: a scratch SQLite file)

``--history-weeks 1`` (or 2) plays a young sensor: the gyms' rules and first
baselines rest on one (two) weeks of readings, and the anomaly warnings of the
first three weeks after it, while the baselines still hold fewer than three
weeks, are counted apart.

Nothing here is a test: figures go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import logging
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
WEEK = 7 * DAY
# The co2 record starts in 1958; the store keeps times after 1970. Shift it by
# whole weeks (728 weeks, about 14 years) so weekdays stay what they were.
CO2_SHIFT = 728 * WEEK
ANOMALY_SCORE = 6.0  # the default of an indicator; --anomaly-score to try another
HISTORY_WEEKS = 4  # the gyms' history; --history-weeks to play a young sensor


# --------------------------------------------------------------------------- data


@dataclass
class Series:
    code: str
    name: str
    t: np.ndarray  # ms, every expected reading
    v: np.ndarray  # NaN = no reading
    interval_s: int
    unit: str


def city_ms(text: str) -> int:
    """A naive local time in the file, read as city time."""
    tz = ZoneInfo(os.environ.get("CHENGYUN_TIME_ZONE", "Asia/Shanghai"))
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def load_hotgym() -> list[Series]:
    with gzip.open(DATA / "hotgym_15min.csv.gz", "rt", newline="") as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    t = np.array([city_ms(r[0]) for r in rows[1:]], np.int64)
    out = []
    for j, name in enumerate(names):
        v = np.array([float(r[j + 1]) if r[j + 1] else np.nan for r in rows[1:]])
        out.append(Series(f"GYM-{j}", name, t, v, 900, "kWh"))
    return out


def load_co2() -> list[Series]:
    with open(DATA / "co2_mauna_loa_weekly.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    # Dates, not times of day: midnight UTC (the city's zone had summer time in 1986-1991).
    t = np.array([int(datetime.fromisoformat(r[0]).replace(tzinfo=UTC).timestamp() * 1000) for r in rows],
                 np.int64) + CO2_SHIFT
    v = np.array([float(r[1]) if r[1] else np.nan for r in rows])
    return [Series("CO2-MLO", "Mauna Loa CO2", t, v, 7 * 86_400, "ppm")]


# --------------------------------------------------------------------------- rules from history


def calibrate(s: Series, history: int, *, bands: bool) -> dict:
    """Rule settings from the first ``history`` readings only:
    bands a half / a whole of the central 99 % range beyond it (a low band
    only when that stays above 0), hysteresis 5 % of that range, a rate limit
    1.5 times the 99.9th percentile of the history's rates, anomaly z 6 / 3,
    silent after 3 intervals (1 for weekly data)."""
    t, v = s.t[:history], s.v[:history]
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    lo, hi = np.quantile(v, [0.005, 0.995])
    span = hi - lo
    rate = np.abs(np.diff(v)) / (np.diff(t) / MIN)
    rules = {"rate_limit": float(1.5 * np.quantile(rate, 0.999)), "anomaly": True, "anomaly_score": ANOMALY_SCORE,
             "anomaly_clear": 3.0, "missing_intervals": 3 if s.interval_s < 86_400 else 1}
    if bands:
        rules.update(warn_high=float(hi + 0.5 * span), alarm_high=float(hi + span), hysteresis=float(0.05 * span))
        if lo - 0.5 * span > 0:
            rules.update(warn_low=float(lo - 0.5 * span), alarm_low=float(max(lo - span, 0.0)))
    return rules


# --------------------------------------------------------------------------- planting


EXPECT = {"spike": ("rate", "anomaly"), "shift": ("anomaly",), "over": ("band_high",), "outage": ("anomaly",),
          "stuck": ("anomaly",), "gap": ("missing",)}


@dataclass
class Event:
    code: str
    kind: str
    start: int
    end: int  # the first reading after the event


def plant(rng, s: Series, rules: dict, first: int, plan: list[str], lengths: dict) -> tuple[Series, list[Event]]:
    """A copy of ``s`` with the plan's events, one per equal segment after
    index ``first``, sized by the history's central range."""
    v = s.v.copy()
    ok = ~np.isnan(s.v[:first])
    lo, hi = np.quantile(s.v[:first][ok], [0.005, 0.995])
    span = hi - lo
    kinds = list(rng.permutation(plan))
    seg = (len(v) - first) // len(kinds)
    events = []
    for n, kind in enumerate(kinds):
        length = int(rng.integers(lengths[kind][0], lengths[kind][1] + 1))
        margin = max(2, seg // 8)
        a = first + n * seg + int(rng.integers(margin, seg - length - margin))
        b = a + length
        while b < len(v) - 1 and np.isnan(v[b]):  # the event ends at the first real reading after it
            b += 1
        sign = rng.choice([-1, 1])
        if kind == "spike":
            v[a] += sign * rng.uniform(0.4, 0.6) * span
        elif kind == "shift":
            v[a:b] += sign * rng.uniform(0.25, 0.4) * span
        elif kind == "over":
            v[a:b] = hi + rng.uniform(0.6, 1.4) * span + rng.normal(0, 0.01 * span, b - a)
        elif kind == "outage":
            v[a:b] = 0.0
        elif kind == "stuck":
            base = v[a] if not np.isnan(v[a]) else np.nanmedian(v[a - 10:a])
            v[a:b] = base
        elif kind == "gap":
            v[a:b] = np.nan
            a -= 1
            while np.isnan(v[a]):
                a -= 1
        events.append(Event(s.code + "-P", kind, int(s.t[a]), int(s.t[b])))
    return Series(s.code + "-P", s.name, s.t, v, s.interval_s, s.unit), events


# --------------------------------------------------------------------------- replay


def replay(series: list[Series], rules: dict[str, dict], history: int, batch_ms: int, baseline_ms: int) -> list:
    """Ingest the first ``history`` readings without rules, then the rest in
    batches with the sweep after each and baselines every ``baseline_ms``;
    returns the warnings (as tuples)."""
    from chengyun.signs.ingest import forget_sensors, ingest
    from chengyun.signs.models import Indicator, Sensor, SensorKind, Warning
    from chengyun.signs.rules import compute_baselines, sweep_missing

    kind, _ = SensorKind.objects.get_or_create(code="bench", defaults={"name": "基准", "name_en": "Bench",
                                                                      "theme": "services"})
    inds = []
    for s in series:
        sensor = Sensor.objects.create(code=s.code, kind=kind, unit=s.unit, interval_s=s.interval_s, name=s.name)
        inds.append(Indicator.objects.create(code=s.code, name=s.name, name_en=s.name, theme="services",
                                             sensor=sensor, **rules[s.code]))
    forget_sensors()
    qs = Indicator.objects.filter(pk__in=[i.pk for i in inds])
    t = series[0].t
    start = int(t[history])
    rows = [(s.code, int(a), float(b)) for s in series for a, b in zip(s.t[:history], s.v[:history], strict=True)
            if b == b]
    ingest(rows, evaluate=False, now_ms=start)
    next_baseline = start
    for b in range(start, int(t[-1]) + 1, batch_ms):
        if b >= next_baseline:
            compute_baselines(qs, at=datetime.fromtimestamp(b / 1000, UTC))
            next_baseline += baseline_ms
        lo, hi = np.searchsorted(t, [b, b + batch_ms])
        rows = [(s.code, int(a), float(x)) for s in series
                for a, x in zip(s.t[lo:hi], s.v[lo:hi], strict=True) if x == x]
        if rows:
            ingest(rows, now_ms=b + batch_ms)
        sweep_missing(b + batch_ms)
    out = [(w.indicator.code, w.rule, w.level, w.started_ms, w.ended_ms if w.ended_ms is not None else int(t[-1]),
            w.peak_value, w.explanation) for w in Warning.objects.filter(indicator__in=qs).select_related("indicator")]
    qs.update(active=False)
    return out


# --------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    detected: dict = field(default_factory=lambda: defaultdict(int))
    expected: dict = field(default_factory=lambda: defaultdict(int))
    true: dict = field(default_factory=lambda: defaultdict(int))
    real: dict = field(default_factory=lambda: defaultdict(int))  # false ones the untouched run raised too
    total: dict = field(default_factory=lambda: defaultdict(int))


def overlaps(a0, a1, b0, b1) -> bool:
    return a0 <= b1 and a1 >= b0


def score(events: list[Event], warnings: list, untouched: list) -> Scores:
    sc = Scores()
    for ev in events:
        rules = {w[1] for w in warnings if w[0] == ev.code and overlaps(w[3], w[4], ev.start, ev.end)}
        for rule in EXPECT[ev.kind]:
            sc.expected[rule] += 1
            sc.detected[rule] += rule in rules
    for code, rule, _level, a, b, *_ in warnings:
        sc.total[rule] += 1
        if any(ev.code == code and overlaps(a, b, ev.start, ev.end) for ev in events):
            sc.true[rule] += 1
        elif any(u[0] + "-P" == code and u[1] == rule and overlaps(a, b, u[3], u[4]) for u in untouched):
            sc.real[rule] += 1
    return sc


def fmt_time(ms: int, shift: int = 0) -> str:
    if shift:  # the co2 record: dates at midnight UTC
        return datetime.fromtimestamp((ms - shift) / 1000, UTC).strftime("%Y-%m-%d")
    tz = ZoneInfo(os.environ.get("CHENGYUN_TIME_ZONE", "Asia/Shanghai"))
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


def print_scores(title: str, sc: Scores) -> None:
    print(f"\n{title}")
    print("| rule | recall | precision | precision without real oddities |\n|---|---:|---:|---:|")
    for rule in ("band_high", "band_low", "rate", "anomaly", "missing"):
        if not sc.expected[rule] and not sc.total[rule]:
            continue
        rec = f"{sc.detected[rule]}/{sc.expected[rule]} = {sc.detected[rule] / sc.expected[rule]:.2f}" \
            if sc.expected[rule] else "—"
        prec = f"{sc.true[rule]}/{sc.total[rule]} = {sc.true[rule] / sc.total[rule]:.2f}" if sc.total[rule] else "—"
        rest = sc.total[rule] - sc.real[rule]
        prec2 = f"{sc.true[rule]}/{rest} = {sc.true[rule] / rest:.2f}" if rest else "—"
        print(f"| {rule} | {rec} | {prec} | {prec2} |")


def print_untouched(title: str, warnings: list, series: list[Series], shift: int = 0, show: int = 12) -> None:
    print(f"\n{title}: {len(warnings)} warnings")
    by = defaultdict(lambda: defaultdict(int))
    for w in warnings:
        by[w[0]][w[1]] += 1
    names = {s.code: s.name for s in series}
    for code in sorted(by):
        print(f"  {names[code]}: " + ", ".join(f"{r} {n}" for r, n in sorted(by[code].items())))
    for code, rule, level, a, b, peak, expl in sorted(warnings, key=lambda w: w[3])[:show]:
        extra = f" z={expl.get('peak_z')}" if rule == "anomaly" else ""
        print(f"  {fmt_time(a, shift)} → {fmt_time(b, shift)} {names[code]}: {rule} {level}"
              f" peak {peak if peak is None else round(peak, 2)}{extra}")


# --------------------------------------------------------------------------- the two series


def run_hotgym(rng) -> None:
    series = load_hotgym()
    history = HISTORY_WEEKS * 7 * 96  # weeks of 15-minute readings
    rules = {s.code: calibrate(s, history, bands=True) for s in series}
    t0 = time.perf_counter()
    untouched = replay(series, rules, history, HOUR, DAY)
    seconds = time.perf_counter() - t0
    n = sum(int((~np.isnan(s.v)).sum()) for s in series)
    print(f"\n## hotgym: {len(series)} meters, {n:,} readings, replayed in {seconds:.1f} s "
          f"({n / seconds:,.0f} readings/s with rules, sweeps and daily baselines)")
    print_untouched("untouched", untouched, series)
    young = int(series[0].t[history]) + 3 * WEEK
    print(f"  anomaly warnings in the first three weeks after the history: "
          f"{sum(w[1] == 'anomaly' and w[3] < young for w in untouched)}")
    for s in series:  # the real zero readings (a meter that read nothing for 15 minutes)
        for i in np.flatnonzero(s.v == 0):
            t = int(s.t[i])
            got = sorted({w[1] for w in untouched if w[0] == s.code and overlaps(w[3], w[4], t, t + 900_000)})
            print(f"  real zero reading {fmt_time(t)} {s.name}: flagged by {', '.join(got) or 'nothing'}")
    xmas = [w for w in untouched if w[3] >= city_ms("2010-12-24T00:00")]
    print(f"  from 2010-12-24 (Christmas week): {len(xmas)} warnings, "
          + ", ".join(f"{r} {sum(w[1] == r for w in xmas)}" for r in sorted({w[1] for w in xmas})))
    # Planted: 4 of each kind per meter over the 22 weeks after the history.
    plan = ["spike", "shift", "over", "outage", "stuck", "gap"] * 4
    lengths = {"spike": (1, 1), "shift": (8, 24), "over": (4, 8), "outage": (4, 12), "stuck": (32, 48),
               "gap": (6, 24)}
    planted, events = [], []
    for s in series:
        p, ev = plant(rng, s, rules[s.code], history, plan, lengths)
        planted.append(p)
        events += ev
    rules.update({s.code + "-P": rules[s.code] for s in series})
    warned = replay(planted, rules, history, HOUR, DAY)
    print_scores(f"hotgym planted: {len(events)} events ({len(plan)} per meter)", score(events, warned, untouched))
    kinds = defaultdict(lambda: [0, 0])
    for ev in events:
        got = {w[1] for w in warned if w[0] == ev.code and overlaps(w[3], w[4], ev.start, ev.end)}
        for rule in EXPECT[ev.kind]:
            kinds[(ev.kind, rule)][0] += rule in got
            kinds[(ev.kind, rule)][1] += 1
    print("by kind: " + ", ".join(f"{k}→{r} {d}/{m}" for (k, r), (d, m) in sorted(kinds.items())))
    early = [ev for ev in events if ev.start < young and "anomaly" in EXPECT[ev.kind]]
    found = sum(any(w[0] == ev.code and w[1] == "anomaly" and overlaps(w[3], w[4], ev.start, ev.end) for w in warned)
                for ev in early)
    false = sum(w[1] == "anomaly" and w[3] < young
                and not any(ev.code == w[0] and overlaps(w[3], w[4], ev.start, ev.end) for ev in events)
                for w in warned)
    print(f"first three weeks after the history: anomaly found {found}/{len(early)} planted events; "
          f"{false} anomaly warnings overlapping none")


def run_co2(rng) -> None:
    (s,) = load_co2()
    history = 52  # the first year
    rules = {s.code: calibrate(s, history, bands=False)}
    t0 = time.perf_counter()
    untouched = replay([s], rules, history, WEEK, WEEK)
    seconds = time.perf_counter() - t0
    print(f"\n## co2: {int((~np.isnan(s.v)).sum()):,} weekly readings, replayed in {seconds:.1f} s")
    # The real gaps after the history, as runs of missing weeks.
    gaps = []
    i = history
    while i < len(s.v):
        if np.isnan(s.v[i]):
            j = i
            while j < len(s.v) and np.isnan(s.v[j]):
                j += 1
            gaps.append((int(s.t[i - 1]), int(s.t[min(j, len(s.t) - 1)]), j - i))
            i = j
        else:
            i += 1
    missing = [w for w in untouched if w[1] == "missing"]
    found = sum(any(overlaps(w[3], w[4], a, b) for w in missing) for a, b, _n in gaps)
    matched = sum(any(overlaps(w[3], w[4], a, b) for a, b, _n in gaps) for w in missing)
    print(f"real gaps after the first year: {len(gaps)} runs, {sum(g[2] for g in gaps)} weeks; "
          f"found as missing data: {found}/{len(gaps)}; missing warnings {len(missing)}, "
          f"{matched} of them on a real gap")
    print_untouched("untouched", untouched, [s], shift=CO2_SHIFT, show=40)
    plan = ["spike", "shift", "gap"] * 8
    lengths = {"spike": (1, 1), "shift": (3, 8), "gap": (2, 4)}
    p, events = plant(rng, s, rules[s.code], history, plan, lengths)
    rules[p.code] = rules[s.code]
    warned = replay([p], rules, history, WEEK, WEEK)
    print_scores(f"co2 planted: {len(events)} events", score(events, warned, untouched))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", default="hotgym,co2")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--anomaly-score", type=float, default=ANOMALY_SCORE)
    ap.add_argument("--history-weeks", type=int, default=HISTORY_WEEKS, choices=range(1, 9))
    args = ap.parse_args()
    globals()["ANOMALY_SCORE"] = args.anomaly_score
    globals()["HISTORY_WEEKS"] = args.history_weeks
    scratch = None
    if not args.database_url:
        scratch = Path(tempfile.mkdtemp()) / "signs_quality.sqlite3"
        args.database_url = f"sqlite:///{scratch}"
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chengyun.settings")
    import django
    from django.core.management import call_command

    django.setup()
    logging.disable(logging.WARNING)
    call_command("migrate", verbosity=0)
    import numpy

    print(f"# signs quality — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
          f"database {'SQLite (scratch file)' if scratch else args.database_url.split('@')[-1]}, "
          f"anomaly score {ANOMALY_SCORE:g}, seed {args.seed}, gyms' history {HISTORY_WEEKS} weeks")
    rng = np.random.default_rng(args.seed)
    for name in args.series.split(","):
        {"hotgym": run_hotgym, "co2": run_co2}[name](rng)
    if scratch is not None:
        for p in scratch.parent.iterdir():
            p.unlink()
        scratch.parent.rmdir()


if __name__ == "__main__":
    main()
