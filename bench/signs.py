"""Benchmark: taking in sensor readings (issue #4) over HTTP and MQTT into
SQLite and PostgreSQL, against the bare bulk write of the same rows.

On a throwaway database (a SQLite file in a temporary data directory; on
PostgreSQL a database ``chengyun_bench_<pid>`` created on ``--pg-url`` and
dropped at the end) it registers S sensors with one indicator each (bands on
all; a rate limit on a tenth, learned anomaly detection with a stored baseline
on another tenth; 1 % get a planted excursion that opens one warning each),
generates N readings the way a sensor network sends them (every sensor in
turn, each every 10 s or 60 s), and writes the same rows

1. raw:    plainly into an empty table shaped like ``signs_reading`` —
           ``old``: as before migration 0003 (id, unique (sensor, ts) index,
           foreign key; two b-trees), ``new``: as now ((sensor, ts) primary
           key, WITHOUT ROWID on SQLite; one b-tree), and ``new_sorted``: the
           same with each batch sorted by (sensor, ts) first, outside the
           timing, as ingest writes it — ``executemany`` on SQLite, ``COPY``
           on PostgreSQL. Every path's ratio is given to ``old`` and ``new``;
2. ingest: through :func:`chengyun.signs.ingest.ingest` in this process, in
           batches of 10,000 and 50,000 with the rules evaluated, and once
           without the rules;
3. http:   through the production server (``chengyun serve``: granian, 2
           workers x 2 threads) as JSON and as CSV bodies of ``--http-batch``
           readings posted by ``--clients`` client threads (bodies serialised
           beforehand), checking that the database holds exactly what the
           answers counted as stored ("zero lost");
4. mqtt:   a fresh private Mosquitto per case on a free loopback port (no
           persistence, no queue or in-flight limits), publishers in their own
           processes, and
           (a) a bare paho client (MQTT 5) counting one-reading messages at QoS 0 and 1,
           (b) the ingest subscriber (:class:`chengyun.signs.mqtt.Subscriber`,
               what ``chengyun ingest-mqtt`` runs, in its own process) storing the
               same one-reading messages at QoS 1,
           (c) the same subscriber storing gateway batches (``--per-message``
               readings a message) at QoS 1, with ``--gateway-batches`` as its
               write size.
           (a) and (b) run twice: *live* (the publishers publish while the
           subscriber takes) and *backlog* (the broker first holds every message
           for the subscriber's persistent session, then the subscriber drains
           it, with no publisher on the CPU: its own capacity).

Every path starts from empty reading and rollup tables, like the raw write.
Rates are readings (or messages) per second from the start signal to the last
one stored (received, for the bare client). Peak memory is the high-water mark
of resident memory (VmHWM, what ``ru_maxrss`` reports) of each process
involved; CPU seconds per process show who used the two cores. ``--py-spy
BIN`` samples the HTTP workers and the ingest subscriber and prints where
their time goes; ``--profile`` prints a cProfile of one in-process batch.

    .venv/bin/python bench/signs.py [--db sqlite|postgres|both] [--readings N] [--sensors S]
        [--messages M] [--http-batch 10000,50000] [--gateway-batches 5000,50000]
        [--pg-url postgres://postgres@127.0.0.1:5432/postgres] [--py-spy /tmp/prof/bin/py-spy] [--json FILE]

The default run (both databases) takes about three minutes on two cores.
Nothing here is a test: figures go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import deque
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
MIN_MS = 60_000
WARN_LOW, WARN_HIGH, ALARM_LOW, ALARM_HIGH = 30.0, 70.0, 10.0, 95.0
MEAN, NOISE = 50.0, 1.0
PLANT = 30.0  # added to a planted excursion: 80, above the warning level, below the alarm level
RATE_LIMIT = 60.0  # per minute; noise of 1 every 10 s stays far below it
TICK = os.sysconf("SC_CLK_TCK")
OUTSTANDING = 20_000  # QoS 1 messages a publisher may have unacknowledged


# --------------------------------------------------------------------------- processes and memory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_figures(pid: int) -> dict:
    """CPU seconds so far and the resident-memory high-water mark (MB) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        hwm = next(int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if x.startswith("VmHWM:"))
        return {"cpu_s": cpu, "peak_mb": hwm / 1024}
    except (OSError, StopIteration, ValueError):
        return {"cpu_s": 0.0, "peak_mb": 0.0}


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d.name))
    return sorted(out)


def self_figures() -> dict:
    """CPU seconds and resident-memory high-water mark of this process. (VmHWM, not
    ru_maxrss: Linux carries ru_maxrss over an exec, so a child started from a big
    parent would report the parent's size.)"""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_mb": proc_figures(os.getpid())["peak_mb"]}


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


class PeakMemory:
    """The highest resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def role_cmd(role: str, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--role", role, *extra]


class Helper:
    """A role process (publisher or subscriber) that prints ``ready``, waits
    for ``go`` on stdin where it must, and prints one JSON line of figures."""

    def __init__(self, cmd: list[str], name: str):
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=os.environ.copy())

    def wait_ready(self, timeout: float = 120) -> None:
        line = self._line(timeout)
        if line.strip() != "ready":
            raise SystemExit(f"{self.name} did not start: {line!r}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict:
        line = self._line(timeout)
        self.proc.wait(30)
        try:
            return json.loads(line)
        except ValueError:
            raise SystemExit(f"{self.name} gave no figures: {line!r}") from None

    def _line(self, timeout: float) -> str:
        box = []

        def read():
            while True:
                line = self.proc.stdout.readline()
                if line == "" or (line.strip() and not line.startswith("py-spy>")):
                    box.append(line)
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if not box:
            self.kill()
            raise SystemExit(f"{self.name} timed out")
        return box[0]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- the generated network


class Network:
    """S sensors and N readings: row r is sensor r % S at its (r // S)-th tick;
    even sensors report every 10 s, odd ones every 60 s; the last tick is ten
    minutes ago. Sensor i with i % 100 == 3 has a planted excursion in the
    middle tenth of its ticks."""

    def __init__(self, n: int, s: int, seed: int = 4):
        import numpy as np

        self.n, self.s = n, s
        self.codes = [f"BS{i:05d}" for i in range(s)]
        self.interval = [10 if i % 2 == 0 else 60 for i in range(s)]
        ticks = -(-n // s)
        end = (int(time.time() * 1000) // MIN_MS) * MIN_MS - 10 * MIN_MS
        r = np.arange(n)
        sensor = r % s
        tick = r // s
        interval = np.array(self.interval, np.int64)[sensor]
        self.ts = (end - (ticks - 1 - tick) * interval * 1000).tolist()
        values = MEAN + NOISE * np.random.default_rng(seed).standard_normal(n)
        planted = (sensor % 100 == 3) & (tick >= ticks * 45 // 100) & (tick < ticks * 55 // 100)
        values[planted] += PLANT
        self.values = np.round(values, 3).tolist()
        self.sensor = sensor.tolist()
        self.planted_sensors = len({i for i in range(s) if i % 100 == 3}) if ticks >= 10 else 0

    def rows(self, a: int = 0, b: int | None = None) -> list[tuple[str, int, float]]:
        b = self.n if b is None else b
        codes = self.codes
        return [(codes[self.sensor[i]], self.ts[i], self.values[i]) for i in range(a, b)]

    def batches(self, size: int):
        for a in range(0, self.n, size):
            yield self.rows(a, min(self.n, a + size))

    def json_body(self, a: int, b: int) -> bytes:
        codes, sensor, ts, values = self.codes, self.sensor, self.ts, self.values
        return ('{"readings":[' + ",".join(
            f'{{"sensor":"{codes[sensor[i]]}","ts":{ts[i]},"value":{values[i]!r}}}' for i in range(a, b)
        ) + "]}").encode()

    def csv_body(self, a: int, b: int) -> bytes:
        codes, sensor, ts, values = self.codes, self.sensor, self.ts, self.values
        return ("sensor,ts,value\n" + "".join(f"{codes[sensor[i]]},{ts[i]},{values[i]!r}\n"
                                              for i in range(a, b))).encode()


def register(net: Network, log) -> dict:
    """Two sensor kinds, S sensors, one indicator per sensor, baselines for the anomaly ones (ORM)."""
    from django.db import transaction
    from django.utils import timezone

    from chengyun.signs.models import Baseline, Indicator, Sensor, SensorKind

    t0 = time.perf_counter()
    with transaction.atomic():
        kinds = [SensorKind.objects.create(code="bench_pressure", name="管网压力（基准）", name_en="Pressure (bench)",
                                           unit="kPa", theme="water"),
                 SensorKind.objects.create(code="bench_level", name="河道水位（基准）", name_en="River level (bench)",
                                           unit="cm", theme="water")]
        Sensor.objects.bulk_create([
            Sensor(code=code, kind=kinds[i % 2], interval_s=net.interval[i], lon=121.4 + i * 1e-5, lat=31.2,
                   generated=True) for i, code in enumerate(net.codes)], batch_size=2000)
        ids = dict(Sensor.objects.filter(code__in=net.codes).values_list("code", "id"))
        indicators = []
        for i, code in enumerate(net.codes):
            indicators.append(Indicator(
                code=code, name=f"体征{code}", name_en=f"Indicator {code}", theme="water", sensor_id=ids[code],
                warn_low=WARN_LOW, warn_high=WARN_HIGH, alarm_low=ALARM_LOW, alarm_high=ALARM_HIGH, hysteresis=1.0,
                rate_limit=RATE_LIMIT if i % 10 == 1 else None, anomaly=i % 10 == 2))
        Indicator.objects.bulk_create(indicators, batch_size=2000)
        at = timezone.now()
        anomaly = Indicator.objects.filter(anomaly=True, code__in=net.codes).values_list("id", flat=True)
        Baseline.objects.bulk_create([
            Baseline(indicator_id=pk, hour_of_week=h, median=MEAN, mad=NOISE, samples=20, computed_at=at)
            for pk in anomaly for h in range(168)], batch_size=5000)
    out = {"sensors": len(ids), "indicators": len(indicators), "rate_rules": sum(1 for i in indicators if i.rate_limit),
           "anomaly_rules": len(anomaly), "seconds": time.perf_counter() - t0}
    log(f"registry: {out['sensors']:,} sensors, {out['indicators']:,} indicators with bands "
        f"({out['rate_rules']} with a rate limit, {out['anomaly_rules']} with anomaly detection and "
        f"{out['anomaly_rules'] * 168:,} baseline rows), {out['seconds']:.1f} s")
    return out


def sensor_id_map() -> dict[str, int]:
    from chengyun.signs.models import Sensor

    return dict(Sensor.objects.values_list("code", "id"))


def reset_store() -> None:
    """Empty readings, rollups and warnings; sensors and indicators as new."""
    from django.db import connection

    from chengyun.signs.ingest import forget_sensors

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("TRUNCATE signs_reading, signs_rollup, signs_warning")
        else:
            for table in ("signs_reading", "signs_rollup", "signs_warning"):
                cur.execute(f"DELETE FROM {table}")
        cur.execute("UPDATE signs_sensor SET last_ms = NULL, last_value = NULL")
        cur.execute("UPDATE signs_indicator SET status = 'unknown'")
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    forget_sensors()


def backend_cpu(own: bool) -> dict[int, float]:
    """PostgreSQL only: CPU seconds so far of this process's backend (own) or of
    every other backend on the bench database (the server's workers)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cur:
        if own:
            cur.execute("SELECT pg_backend_pid()")
        else:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        pids = [r[0] for r in cur.fetchall()]
    return {pid: proc_figures(pid)["cpu_s"] for pid in pids}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[p] - before.get(p, 0.0) for p in after)


def stored_count() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM signs_reading")
        return cur.fetchone()[0]


def warning_count() -> int:
    from chengyun.signs.models import Warning

    return Warning.objects.count()


# --------------------------------------------------------------------------- 1. the raw write


OLD_SHAPE = {
    # signs_reading before migration 0003: a rowid table (id) plus a unique (sensor, ts) index, i.e. two b-trees.
    "sqlite": ['CREATE TABLE "{name}" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "ts" bigint NOT NULL, '
               '"value" real NOT NULL, "sensor_id" bigint NOT NULL REFERENCES "signs_sensor" ("id") DEFERRABLE '
               'INITIALLY DEFERRED, CONSTRAINT "{name}_once" UNIQUE ("sensor_id", "ts"))'],
    "postgresql": ['CREATE TABLE "{name}" ("id" bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, '
                   '"ts" bigint NOT NULL, "value" double precision NOT NULL, "sensor_id" bigint NOT NULL '
                   'REFERENCES "signs_sensor" ("id") DEFERRABLE INITIALLY DEFERRED, '
                   'CONSTRAINT "{name}_once" UNIQUE ("sensor_id", "ts"))',
                   'CREATE INDEX "{name}_ts_brin" ON "{name}" USING brin ("ts")'],
}


def plain_table(shape: str) -> str:
    """An empty table shaped like signs_reading now (``new``: its own DDL
    copied, i.e. the (sensor, ts) primary key, WITHOUT ROWID on SQLite) or
    before migration 0003 (``old``: id, unique (sensor, ts), on PostgreSQL
    also the BRIN index on ts); foreign key to the sensors either way."""
    from django.db import connection

    name = f"bench_{shape}_reading"
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        if shape == "old":
            for sql in OLD_SHAPE[connection.vendor]:
                cur.execute(sql.format(name=name))
        elif connection.vendor == "sqlite":
            cur.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'signs_reading' AND sql IS NOT NULL")
            for kind, obj, sql in sorted(cur.fetchall(), key=lambda r: r[0] != "table"):
                sql = sql.replace('"signs_reading"', f'"{name}"')
                if kind == "index":
                    sql = sql.replace(f'"{obj}"', f'"bench_{obj}"', 1)
                cur.execute(sql)
        else:
            cur.execute(f"CREATE TABLE {name} (LIKE signs_reading INCLUDING ALL)")
            cur.execute(f"ALTER TABLE {name} ADD FOREIGN KEY (sensor_id) REFERENCES signs_sensor (id) "
                        "DEFERRABLE INITIALLY DEFERRED")
    return name


RAW_LABELS = {
    "old": "table shaped like signs_reading before 0003 (id + unique index)",
    "new": "table shaped like signs_reading now ((sensor, ts) key)",
    "new_sorted": "table shaped like signs_reading now, each batch sorted by (sensor, ts) first (not timed), "
                  "as ingest() writes it",
}


def bench_raw(net: Network, batch: int, shape: str, log) -> dict:
    """The bare bulk write of the same rows: ``executemany`` on SQLite,
    ``COPY`` on PostgreSQL, ``batch`` rows a transaction, in the order sent
    (``new_sorted``: sorted per batch, outside the timing)."""
    from django.db import connection, transaction

    ids = sensor_id_map()
    name = plain_table("old" if shape == "old" else "new")
    rows = [(ids[net.codes[net.sensor[i]]], net.ts[i], net.values[i]) for i in range(net.n)]
    spent = 0.0
    with PeakMemory() as mem:
        for a in range(0, net.n, batch):
            part = sorted(rows[a:a + batch]) if shape == "new_sorted" else rows[a:a + batch]
            t = time.perf_counter()
            with transaction.atomic():
                raw = connection.connection.cursor()
                if connection.vendor == "postgresql":
                    with raw.copy(f"COPY {name} (sensor_id, ts, value) FROM STDIN") as copy:
                        for row in part:
                            copy.write_row(row)
                else:
                    raw.executemany(f"INSERT INTO {name} (sensor_id, ts, value) VALUES (?, ?, ?)", part)
                raw.close()
            spent += time.perf_counter() - t
    with connection.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {name}")
        n = cur.fetchone()[0]
        cur.execute(f"DROP TABLE {name}")
    how = "COPY" if connection.vendor == "postgresql" else "executemany"
    out = {"how": how, "shape": shape, "readings": n, "seconds": spent, "rate": n / spent, "peak_mb": mem.peak}
    log(f"1. raw {how} into a {RAW_LABELS[shape]}, batches of {batch:,}: "
        f"{out['rate']:>10,.0f} readings/s ({spent:.2f} s, {n:,} rows)")
    return out


def ratios(rate: float, raws: dict) -> dict:
    """Ratios of a rate to the raw writes into the old and the new table shape."""
    return {"ratio": rate / raws["old"], "ratio_new": rate / raws["new"]}


def ratio_text(r: dict) -> str:
    return f"ratio to raw: old shape {r['ratio']:.2f}, new shape {r['ratio_new']:.2f}"


# --------------------------------------------------------------------------- 2. ingest in this process


def bench_ingest(net: Network, batch: int, evaluate: bool, raws: dict, log, profile: bool = False) -> dict:
    from chengyun.signs.ingest import ingest

    reset_store()
    batches = list(net.batches(batch))
    stored = duplicates = refused = opened = 0
    pg_before = backend_cpu(own=True)
    cpu_before = self_figures()["cpu_s"]
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        for rows in batches:
            r = ingest(rows, source="bench:ingest", evaluate=evaluate)
            stored += r.stored
            duplicates += r.duplicates
            refused += len(r.refused)
            opened += r.warnings_opened
        spent = time.perf_counter() - t0
    cpu = self_figures()["cpu_s"] - cpu_before
    pg_cpu = cpu_delta(pg_before, backend_cpu(own=True)) if pg_before else None
    out = {"batch": batch, "evaluate": evaluate, "readings": net.n, "seconds": spent, "rate": net.n / spent,
           **ratios(net.n / spent, raws), "stored": stored, "in_db": stored_count(), "duplicates": duplicates,
           "refused": refused, "warnings_opened": opened, "rss_start_mb": mem.start, "peak_mb": mem.peak,
           "python_cpu_s": cpu, "postgres_cpu_s": pg_cpu}
    rules = "rules evaluated" if evaluate else "no rules"
    log(f"2. ingest() in-process, batches of {batch:,}, {rules:<15}: {out['rate']:>10,.0f} readings/s "
        f"({spent:.2f} s)  {ratio_text(out)}; stored {stored:,} (in db {out['in_db']:,}), "
        f"{opened} warnings opened; memory {mem.start:,.0f} -> peak {mem.peak:,.0f} MB; CPU s: this process "
        f"{cpu:.2f}" + (f", its PostgreSQL backend {pg_cpu:.2f}" if pg_cpu is not None else ""))
    if profile:
        out["profile"] = profile_ingest(batches[len(batches) // 2], evaluate, log)
    return out


def profile_ingest(rows: list, evaluate: bool, log) -> list[str]:
    """cProfile of one ingest() call on a batch already stored once (so the
    rules see previous values) — where the time of a batch goes."""
    import cProfile
    import io
    import pstats

    from chengyun.signs.ingest import ingest

    shifted = [(c, t + 1, v) for c, t, v in rows]  # 1 ms later: new rows, not duplicates
    prof = cProfile.Profile()
    prof.enable()
    ingest(shifted, source="bench:profile", evaluate=evaluate)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    lines = [x for x in buf.getvalue().splitlines() if x.strip()]
    log("   cProfile of one batch (cumulative):")
    for x in lines[:40]:
        log("     " + x[:150])
    return lines


# --------------------------------------------------------------------------- sampling profiles (py-spy)


PROFILE_PARTS = [
    # label, function, file
    ("ingest() (whole call)", "_ingest", "signs/ingest.py"),
    ("  parse and check (before the write)", "_as_float_array", "signs/ingest.py"),
    ("  _write: readings and rollups", "_write", "signs/ingest.py"),
    ("  _update_last", "_update_last", "signs/ingest.py"),
    ("  evaluate_arrays (the rules)", "evaluate_arrays", "signs/rules.py"),
    ("    loading indicators, warnings, baselines", "__iter__", "django/db/models/query.py"),
    ("    Evaluator.run", "run", "signs/rules.py"),
    ("    _save (warnings, audit)", "_save", "signs/rules.py"),
    ("  commit", "_commit", "db/backends/base/base.py"),
    ("API: JSON body (orjson + columns)", "_json_columns", "signs/api.py"),
    ("API: CSV body", "_csv_columns", "signs/api.py"),
    ("API: answer (IngestOut)", "as_dict", "signs/ingest.py"),
    ("MQTT: _on_message (decode, queue)", "_on_message", "signs/mqtt.py"),
    ("  decode (json.loads, topic)", "decode", "signs/mqtt.py"),
    ("MQTT: _ack (PUBACKs)", "_ack", "signs/mqtt.py"),
    ("MQTT: flush (batch + ingest + ack)", "flush", "signs/mqtt.py"),
    ("paho: reading packets", "_packet_read", "paho/mqtt/client.py"),
    ("paho: writing packets", "_packet_write", "paho/mqtt/client.py"),
    ("database driver execute (SQL)", "execute", "db/backends/"),
    ("database driver executemany (SQL)", "executemany", "db/backends/"),
]
IDLE = ("select (selectors.py", "wait (threading.py", "select (paho", "_sleep", "sleep (")


def py_spy_command(args, out: Path, cmd: list[str]) -> list[str]:
    return [args.py_spy, "record", "--format", "raw", "--rate", "250", "--nonblocking", "-o", str(out), "--", *cmd]


def summarize_profile(path: Path, top: int = 10) -> list[str]:
    """py-spy's collapsed stacks -> share of the busy samples (idle threads left out) per part."""
    total = 0
    hits: dict = {}
    own: dict = {}
    if not path.exists():
        return ["(no profile)"]
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        frames = stack.split(";")
        if (any(any(i in f for i in IDLE) for f in frames[-2:]) or frames[-1].startswith("select (")
                or frames[-1].startswith("role_ingest_sub (")):  # the benchmark's own wait for the end
            continue
        n = int(count)
        total += n
        for label, func, where in PROFILE_PARTS:
            if any(f.split(" (")[0].rsplit(".", 1)[-1] == func and where in f for f in frames):
                hits[label] = hits.get(label, 0) + n
        key = frames[-1].replace(str(ROOT) + "/", "").replace(str(BIN.parent) + "/", "")[:100]
        own[key] = own.get(key, 0) + n
    if not total:
        return ["(no busy samples)"]
    lines = [f"{label:<46} {hits[label] / total:6.1%}" for label, _f, _w in PROFILE_PARTS if hits.get(label)]
    lines.append(f"busiest frames (own time, of {total:,} busy samples):")
    lines += [f"  {v / total:6.1%}  {k}" for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    return lines


# --------------------------------------------------------------------------- 3. HTTP


def start_server(workers: int, threads: int, work: Path):
    port = free_port()
    log_file = (work / "server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "chengyun"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--threads", str(threads), "--no-collectstatic"],
        stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True)
    log_file.close()
    return proc, port


def http_post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_for_server(port: int, token: str, proc, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server ended; see its log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/signs/kinds", headers={"Authorization": f"Bearer {token}"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not answer")


def post_bodies(port: int, token: str, bodies: list[tuple[int, bytes]], content_type: str, clients: int) -> dict:
    """``clients`` threads post the bodies (a new connection each, so that the
    kernel spreads them over the workers); returns the summed answers."""
    queue = deque(bodies)
    lock = threading.Lock()
    answers: list = []
    errors: list = []
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}

    def client():
        while True:
            with lock:
                if not queue:
                    return
                n, body = queue.popleft()
            try:
                status, data = http_post(port, "/api/v1/signs/readings", body, headers)
            except OSError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            if status == 200:
                answers.append(json.loads(data))
            else:
                errors.append(f"{status}: {data[:200]!r}")

    before = self_figures()["cpu_s"]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = time.perf_counter() - t0
    return {"seconds": spent, "requests": len(answers), "errors": errors,
            "received": sum(a["received"] for a in answers), "stored": sum(a["stored"] for a in answers),
            "duplicates": sum(a["duplicates"] for a in answers), "refused": sum(a["refused"] for a in answers),
            "warnings_opened": sum(a["warnings_opened"] for a in answers),
            "client_cpu_s": self_figures()["cpu_s"] - before}


def bench_http(net: Network, args, size: int, raws: dict, log) -> dict:
    from chengyun.org.models import User
    from chengyun.org.services import create_token

    user = User.objects.get_or_create(username="bench-signs")[0]
    _token, token = create_token(user, "bench", by=user)
    log(f"3. HTTP POST /api/v1/signs/readings: chengyun serve (granian, {args.workers} workers x {args.server_threads} threads), "
        f"{args.clients} client threads, bodies of {size:,} readings")
    t = time.perf_counter()
    bodies = {
        "json": [(min(net.n, a + size) - a, net.json_body(a, min(net.n, a + size))) for a in range(0, net.n, size)],
        "csv": [(min(net.n, a + size) - a, net.csv_body(a, min(net.n, a + size))) for a in range(0, net.n, size)],
    }
    log(f"   bodies serialised in {time.perf_counter() - t:.1f} s (not counted): JSON "
        f"{sum(len(b) for _, b in bodies['json']) / 2**20:,.0f} MB, CSV {sum(len(b) for _, b in bodies['csv']) / 2**20:,.0f} MB")
    work = Path(tempfile.mkdtemp(prefix="chengyun-bench-http-"))
    proc, port = start_server(args.workers, args.server_threads, work)
    out = {"batch": size, "clients": args.clients, "workers": args.workers}
    try:
        wait_for_server(port, token, proc)
        # Warm up every worker (imports, sensor cache), then start from empty tables.
        warm = net.json_body(0, min(net.n, 2000))
        for _ in range(2 * args.workers):
            http_post(port, "/api/v1/signs/readings", warm, {"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {token}"})
        workers = children_of(proc.pid)  # after the warm-up: a worker still booting is not listed before
        for fmt, content_type in (("json", "application/json"), ("csv", "text/csv")):
            reset_store()
            spy = None
            if args.py_spy:
                spy = subprocess.Popen([args.py_spy, "record", "--pid", str(proc.pid), "--subprocesses", "--format",
                                        "raw", "--rate", "250", "--nonblocking", "-o", str(work / f"profile-{fmt}.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            before = {pid: proc_figures(pid) for pid in workers}
            pg_before = backend_cpu(own=False)
            r = post_bodies(port, token, bodies[fmt], content_type, args.clients)
            after = {pid: proc_figures(pid) for pid in workers}
            r["postgres_cpu_s"] = cpu_delta(pg_before, backend_cpu(own=False)) if pg_before else None
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
                r["profile"] = summarize_profile(work / f"profile-{fmt}.txt")
            r["in_db"] = stored_count()
            r["warnings_in_db"] = warning_count()
            r["rate"] = r["received"] / r["seconds"]
            r.update(ratios(r["rate"], raws))
            r["worker_cpu_s"] = [round(after[p]["cpu_s"] - before[p]["cpu_s"], 2) for p in workers]
            r["zero_lost"] = r["in_db"] == r["stored"] == net.n - r["refused"] and not r["errors"]
            out[fmt] = r
            log(f"   {fmt.upper():<4} {r['rate']:>10,.0f} readings/s ({r['seconds']:.2f} s, {r['requests']} requests) "
                f"{ratio_text(r)}; sent {net.n:,}, stored {r['stored']:,}, refused {r['refused']}, "
                f"in db {r['in_db']:,} -> {'zero lost' if r['zero_lost'] else 'MISMATCH'}; "
                f"{r['warnings_opened']} warnings opened")
            log(f"        CPU s: workers {r['worker_cpu_s']}, client threads {r['client_cpu_s']:.2f}"
                + (f", the workers' PostgreSQL backends {r['postgres_cpu_s']:.2f}" if r["postgres_cpu_s"] else "")
                + (f"; errors: {r['errors'][:3]}" if r["errors"] else ""))
            if r.get("profile"):
                log("        py-spy, share of the workers' busy samples:")
                for x in r["profile"]:
                    log("          " + x)
        out["processes"] = {"master": proc_figures(proc.pid),
                            **{f"worker {i + 1}": proc_figures(p) for i, p in enumerate(workers)}}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    log("   peak memory: " + ", ".join(f"{k} {v['peak_mb']:,.0f} MB" for k, v in out["processes"].items())
        + f"; client (this process) {self_figures()['peak_mb']:,.0f} MB")
    return out


# --------------------------------------------------------------------------- 4. MQTT


class Mosquitto:
    """A private broker on a free loopback port: no persistence, no limits on queued or in-flight messages."""

    def __init__(self, directory: Path):
        self.binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
        self.directory = directory
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            "max_queued_messages 0", "max_queued_bytes 0", "max_inflight_messages 0", "max_inflight_bytes 0",
            "queue_qos0_messages true", "set_tcp_nodelay true", f"user {getpass.getuser()}", "log_dest none", ""]))
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_mqtt_case(work: Path, commands, mode: str, timeout: float = 900) -> dict:
    """A fresh private broker for the case; ``commands(url)`` gives the
    subscriber's command and the publishers'. live: the subscriber is
    connected, then the publishers are told to go; backlog: the subscriber has
    subscribed and gone away, the publishers hand everything to the broker,
    then the subscriber comes back and is told to go. Times are
    CLOCK_MONOTONIC, the same clock in every process."""
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="broker-", dir=work)))
    broker.start()
    subscriber, publishers = commands(broker.url)
    sub = Helper(subscriber, "subscriber")
    pubs = []
    try:
        sub.wait_ready()
        pubs = [Helper(cmd, f"publisher {i + 1}") for i, cmd in enumerate(publishers)]
        for p in pubs:
            p.wait_ready()
        broker_before = proc_figures(broker.proc.pid)
        t_go = time.monotonic()
        for p in pubs:
            p.go()
        pub_results = [p.result(timeout) for p in pubs]
        if mode == "backlog":
            t_go = time.monotonic()
            sub.go()
        sub_result = sub.result(timeout)
        broker_after = proc_figures(broker.proc.pid)
    finally:
        for h in (sub, *pubs):
            h.kill()
        broker.stop()
    return {"mode": mode, "t_go": t_go, "subscriber": sub_result, "publishers": pub_results,
            "broker": {"cpu_s": broker_after["cpu_s"] - broker_before["cpu_s"], "peak_mb": broker_after["peak_mb"]}}


def publisher_cmds(url: str, args, kind: str, qos: int, count: int) -> list[list[str]]:
    return [role_cmd("publish", "--url", url, "--kind", kind, "--qos", str(qos), "--part", str(k),
                     "--parts", str(args.publishers), "--count", str(count), "--readings", str(args.readings),
                     "--sensors", str(args.sensors), "--per-message", str(args.per_message))
            for k in range(args.publishers)]


def case_figures(c: dict, count: int) -> dict:
    sub = c["subscriber"]
    spent = sub["t_done"] - c["t_go"]
    pubs = c["publishers"]
    pub_spent = max(p["t_end"] for p in pubs) - min(p["t_start"] for p in pubs)
    return {"mode": c["mode"], "count": count, "seconds": spent, "rate": count / spent,
            "publish_seconds": pub_spent, "publish_rate": sum(p["published"] for p in pubs) / max(1e-9, pub_spent),
            "subscriber": sub, "publishers": pubs, "broker": c["broker"],
            "publisher_cpu_s": sum(p["cpu_s"] for p in pubs), "publisher_peak_mb": max(p["peak_mb"] for p in pubs)}


def log_case(label: str, r: dict, unit: str, log, extra: str = "") -> None:
    sub = r["subscriber"]
    log(f"   {label:<58} {r['rate']:>9,.0f} {unit}/s ({r['seconds']:.2f} s){extra}")
    log(f"      publishing took {r['publish_seconds']:.2f} s ({r['publish_rate']:,.0f} messages/s); CPU s: "
        f"subscriber {sub['cpu_s']:.1f}, publishers {r['publisher_cpu_s']:.1f}, broker {r['broker']['cpu_s']:.1f}; "
        f"peak memory: subscriber {sub['peak_mb']:,.0f} MB, publisher {r['publisher_peak_mb']:,.0f} MB, broker "
        f"{r['broker']['peak_mb']:,.0f} MB")


def bench_mqtt(net: Network, args, raws: dict, log) -> dict:
    if Mosquitto(Path(".")).binary is None:
        log("4. MQTT: the mosquitto binary is not installed (apt install mosquitto); skipped")
        return {}
    work = Path(tempfile.mkdtemp(prefix="chengyun-bench-mqtt-"))
    m = min(args.messages, net.n)
    g = min(args.gateway_readings or net.n, net.n)
    gw_msgs = -(-g // args.per_message)
    out: dict = {"messages": m, "gateway_readings": g, "gateway_messages": gw_msgs, "per_message": args.per_message,
                 "batch": args.mqtt_batch, "flush_ms": args.flush_ms, "publishers": args.publishers}
    log(f"4. MQTT: a private mosquitto per case; {args.publishers} publisher process(es); {m:,} one-reading "
        f"messages (city/{{sensor}}/reading); {g:,} readings in {gw_msgs:,} gateway messages of {args.per_message} "
        f"(city/gateway/{{id}}/batch); the ingest subscriber writes batches of --batch readings (or what came "
        f"within {args.flush_ms} ms)")
    log("   live: publishers and subscriber run at once; backlog: the broker holds every message for the "
        "subscriber's session first, then the subscriber drains it (no publisher on the CPU)")

    def ingest_case(mode: str, kind: str, count: int, msgs: int, batch: int, label: str, bare: float | None) -> dict:
        reset_store()
        spy_out = work / f"profile-{mode}-{kind}-{batch}.txt"

        def commands(url):
            cmd = role_cmd("ingest-sub", "--url", url, "--count", str(count), "--batch", str(batch), "--flush-ms",
                           str(args.flush_ms), "--mode", mode)
            return (py_spy_command(args, spy_out, cmd) if args.py_spy else cmd,
                    publisher_cmds(url, args, kind, 1, count))

        c = run_mqtt_case(work, commands, mode)
        r = case_figures(c, count)
        st = r["subscriber"]["stats"]
        r.update({"batch": batch, "in_db": stored_count(), "messages": msgs, **ratios(r["rate"], raws)})
        r["zero_lost"] = r["in_db"] == count - st["refused"] and st["acked"] == msgs
        r["message_rate"] = msgs / r["seconds"]
        extra = f"; {ratio_text(r)}"
        if bare:
            r["ratio_to_bare"] = r["rate"] / bare
            extra += f", to the bare client (QoS 1, {mode}) {r['ratio_to_bare']:.2f}"
        extra += (f"; stored {st['stored']:,} in {st['batches']} writes, in db {r['in_db']:,}, acked "
                  f"{st['acked']:,} of {msgs:,} messages -> {'zero lost' if r['zero_lost'] else 'MISMATCH'}; "
                  f"{st['warnings_opened']} warnings opened")
        log_case(f"{mode:<7} {label} --batch {batch:,}", r, "readings", log, extra)
        if args.py_spy:
            time.sleep(0.5)  # py-spy writes its file once the process has ended
            r["profile"] = summarize_profile(spy_out)
            log("      py-spy, share of the subscriber's busy samples:")
            for x in r["profile"]:
                log("        " + x)
        return r

    try:
        for mode in args.mqtt_modes:
            for qos in (0, 1):
                c = run_mqtt_case(work, lambda url, qos=qos, mode=mode: (
                    role_cmd("bare-sub", "--url", url, "--qos", str(qos), "--count", str(m), "--batch",
                             str(args.mqtt_batch), "--mode", mode),
                    publisher_cmds(url, args, "single", qos, m)), mode)
                got = c["subscriber"]["received"]
                r = case_figures(c, got)
                r["lost"] = m - got
                log_case(f"{mode:<7} (a) bare client, one-reading messages, QoS {qos}", r, "messages", log,
                         f"; received {got:,} of {m:,}")
                out[f"{mode}_bare_qos{qos}"] = r
            out[f"{mode}_single"] = ingest_case(mode, "single", m, m, args.mqtt_batch, "(b) ingest, one-reading, QoS 1",
                                                out[f"{mode}_bare_qos1"]["rate"])
        # The publisher of a thousand gateway messages is done at once, so live is the only mode needed.
        for batch in args.gateway_batches:
            out[f"live_gateway_{batch}"] = ingest_case("live", "gateway", g, gw_msgs, batch,
                                                       "(c) ingest, gateway batches, QoS 1", None)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- role processes


def role_publish(a) -> None:
    """Publish this part's messages once told to go; report when the broker has them all."""
    import paho.mqtt.client as mqtt

    net = Network(a.readings, a.sensors)
    msgs: list[tuple[str, bytes]] = []
    if a.kind == "single":
        for i in range(a.part, a.count, a.parts):
            msgs.append((f"city/{net.codes[net.sensor[i]]}/reading",
                         f'{{"ts":{net.ts[i]},"value":{net.values[i]!r}}}'.encode()))
    else:
        codes, sensor, ts, values = net.codes, net.sensor, net.ts, net.values
        for k, start in enumerate(range(0, a.count, a.per_message)):
            if k % a.parts != a.part:
                continue
            body = ",".join(f'{{"sensor":"{codes[sensor[i]]}","ts":{ts[i]},"value":{values[i]!r}}}'
                            for i in range(start, min(a.count, start + a.per_message)))
            msgs.append((f"city/gateway/gw{k % 64:02d}/batch", f"[{body}]".encode()))
    host, port = broker_address(a.url)
    done = threading.Event()
    acked = [0]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)

    window = threading.Condition()

    def on_publish(c, u, mid, rc, props):
        with window:
            acked[0] += 1
            window.notify()
        if acked[0] >= len(msgs):
            done.set()

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    for k, (topic, payload) in enumerate(msgs):
        if a.qos and k - acked[0] >= OUTSTANDING:
            with window:  # paho's packet ids wrap at 65,535: never have that many unacknowledged
                window.wait_for(lambda k=k: k - acked[0] < OUTSTANDING // 2, timeout=60)
        client.publish(topic, payload, qos=a.qos)
    if msgs:
        done.wait(600)
    t1 = time.monotonic()
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"published": len(msgs), "acked": acked[0], "t_start": t0, "t_end": t1, **self_figures()}),
          flush=True)


def _subscribe_props(batch: int):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = min(65_535, max(2 * batch, 1000))  # what the ingest subscriber asks for
    return props


def broker_address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


# The topic scheme of chengyun.signs.mqtt (docs/sensors.md); the publishers and
# the bare client do without Django, so they do not import it.
TOPICS = ("city/+/reading", "city/gateway/+/batch")


def role_bare_sub(a) -> None:
    """A bare MQTT 5 client: count the messages, nothing else (paho acknowledges QoS 1 by itself)."""
    import paho.mqtt.client as mqtt

    host, port = broker_address(a.url)
    client_id = f"bench-bare-{os.getpid()}"
    state = {"n": 0, "first": None, "last": None}
    done = threading.Event()

    def on_message(c, u, msg):
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = now
        state["n"] += 1
        state["last"] = now
        if state["n"] >= a.count:
            done.set()

    def connect(clean: bool):
        ready = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, a.qos) for t in TOPICS])
        client.on_subscribe = lambda *x: ready.set()
        client.connect(host, port, clean_start=clean, properties=_subscribe_props(a.batch))
        client.loop_start()
        ready.wait(30)
        return client

    client = connect(True)
    if a.mode == "backlog":  # subscribed; leave, and let the broker keep the session's messages
        client.disconnect()
        client.loop_stop()
        print("ready", flush=True)
        sys.stdin.readline()
        client = connect(False)
    else:
        print("ready", flush=True)
    seen = -1
    while not done.wait(3.0):  # stop 3 s after the last message if some never come (QoS 0 may drop)
        if state["n"] == seen:
            break
        seen = state["n"]
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"received": state["n"], "t_first": state["first"], "t_done": state["last"] or time.monotonic(),
                      **self_figures()}), flush=True)


def role_ingest_sub(a) -> None:
    """The ingest subscriber (what ``chengyun ingest-mqtt`` runs) until ``count`` readings are stored."""
    import django

    django.setup()
    from chengyun.signs.mqtt import Subscriber

    def subscriber() -> Subscriber:
        sub = Subscriber(a.url, client_id=f"bench-ingest-{os.getpid()}", batch=a.batch, flush_ms=a.flush_ms, qos=1,
                         evaluate=True, report=None)
        sub.start()
        if not sub.wait_ready(30):
            raise SystemExit("the subscriber did not connect")
        return sub

    sub = subscriber()
    if a.mode == "backlog":  # subscribed under a persistent session; leave, come back when told
        sub.stop()
        print("ready", flush=True)
        sys.stdin.readline()
        sub = subscriber()
    else:
        print("ready", flush=True)
    st = sub.stats
    first = None
    last_change, seen = time.monotonic(), -1
    while True:
        time.sleep(0.02)
        now = time.monotonic()
        if first is None and st.messages:
            first = now
        handled = st.stored + st.duplicates + st.refused
        if handled >= a.count and st.acked >= st.messages:
            break
        if handled != seen:
            seen, last_change = handled, now
        elif now - last_change > 30:
            break  # stuck: report what there is
    t_done = now
    sub.stop()
    print(json.dumps({"t_first": first, "t_done": t_done, "stats": {
        "messages": st.messages, "readings": st.readings, "stored": st.stored, "duplicates": st.duplicates,
        "refused": st.refused, "batches": st.batches, "db_errors": st.db_errors, "acked": st.acked,
        "warnings_opened": st.warnings_opened}, **self_figures()}), flush=True)


# --------------------------------------------------------------------------- the run


def throwaway_database(db: str, args):
    """Point CHENGYUN_DATA_DIR and DATABASE_URL at fresh places; return the cleanup."""
    data_dir = Path(tempfile.mkdtemp(prefix="chengyun-bench-signs-"))
    os.environ["CHENGYUN_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chengyun.settings"
    os.environ["CHENGYUN_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    dropped = []
    if db == "postgres":
        import psycopg

        name = f"chengyun_bench_{os.getpid()}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = urllib.parse.urlunsplit(urllib.parse.urlsplit(args.pg_url)._replace(path="/" + name))
        dropped.append(name)
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'chengyun.sqlite3'}"

    def cleanup():
        from django.db import connections

        connections.close_all()
        for name in dropped:
            if args.keep:
                print(f"kept database {name}")
                continue
            import psycopg

            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.keep:
            print(f"kept data directory {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    return cleanup


def machine(vendor: str) -> str:
    import sqlite3

    from django.db import connection

    try:
        cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                   if x.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    db = f"SQLite {sqlite3.sqlite_version}"
    if vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            db = f"PostgreSQL {cur.fetchone()[0]}"
    try:
        broker = subprocess.run([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], capture_output=True,
                                text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        broker = "no mosquitto"
    import paho.mqtt

    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {db}, {broker}, "
            f"paho-mqtt {paho.mqtt.__version__}, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
            f"load average {os.getloadavg()[0]:.1f} at start")


def summary(f: dict) -> list[str]:
    """One line per path: rate, ratios to the raw writes into the old and the
    new table shape (and to the bare MQTT client), peak memory."""
    raws = f["raw"]
    rows = []
    for shape, raw in raws.items():
        label = {"old": "old shape", "new": "new shape", "new_sorted": "new shape, sorted"}[shape]
        rows.append((f"raw {raw['how']}, {label}", f"{raw['rate']:,.0f} readings/s",
                     f"{raw['rate'] / raws['old']['rate']:.2f}", f"{raw['rate'] / raws['new']['rate']:.2f}", "",
                     f"{raw['peak_mb']:,.0f} (bench)"))
    for r in f["ingest"]:
        rows.append((f"ingest() batches of {r['batch']:,}" + ("" if r["evaluate"] else ", no rules"),
                     f"{r['rate']:,.0f} readings/s", f"{r['ratio']:.2f}", f"{r['ratio_new']:.2f}", "",
                     f"{r['peak_mb']:,.0f} (bench)"))
    for key in sorted(k for k in f if k.startswith("http_")):
        h = f[key]
        peak = max(v["peak_mb"] for k, v in h["processes"].items() if k.startswith("worker"))
        for fmt in ("json", "csv"):
            r = h[fmt]
            rows.append((f"HTTP {fmt.upper()}, bodies of {h['batch']:,}", f"{r['rate']:,.0f} readings/s",
                         f"{r['ratio']:.2f}", f"{r['ratio_new']:.2f}", "", f"{peak:,.0f} (worker)"))
    mq = f.get("mqtt") or {}
    for key, r in mq.items():
        if not isinstance(r, dict):
            continue
        mode, _, what = key.partition("_")
        sub = f"{r['subscriber']['peak_mb']:,.0f} (subscriber), {r['broker']['peak_mb']:,.0f} (broker)"
        if what.startswith("bare"):
            rows.append((f"MQTT {mode}, bare client, QoS {what[-1]}", f"{r['rate']:,.0f} messages/s", "", "", "1.00",
                         sub))
        elif what == "single":
            rows.append((f"MQTT {mode}, ingest, one-reading messages, QoS 1, batch {r['batch']:,}",
                         f"{r['rate']:,.0f} readings/s", f"{r['ratio']:.2f}", f"{r['ratio_new']:.2f}",
                         f"{r['ratio_to_bare']:.2f}", sub))
        else:
            rows.append((f"MQTT {mode}, ingest, gateway messages of {mq['per_message']}, QoS 1, batch {r['batch']:,}",
                         f"{r['rate']:,.0f} readings/s", f"{r['ratio']:.2f}", f"{r['ratio_new']:.2f}", "", sub))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'path':<{width}}  {'rate':>20}  {'/old':>5}  {'/new':>5}  {'/bare':>5}  peak MB", "-" * (width + 67),
             "(/old, /new: ratio to the raw write into the old and the new shape of signs_reading, rows as sent)"]
    lines += [f"{a:<{width}}  {b:>20}  {c:>5}  {d:>5}  {e:>5}  {g}" for a, b, c, d, e, g in rows]
    return lines


def run(db: str, args) -> dict:
    cleanup = throwaway_database(db, args)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    log = lambda s: print(s, flush=True)  # noqa: E731
    figures: dict = {}
    try:
        t = time.perf_counter()
        call_command("migrate", verbosity=0)
        figures["machine"] = machine(connection.vendor)
        log(f"\n=== {connection.vendor}: {connection.settings_dict['NAME']} ===")
        log(f"machine: {figures['machine']}")
        log(f"migrated in {time.perf_counter() - t:.1f} s")
        net = Network(args.readings, args.sensors)
        figures["registry"] = register(net, log)
        log(f"readings: {net.n:,} ({net.n // net.s:,} per sensor; {net.planted_sensors} sensors with a planted "
            f"excursion above the warning level)")
        figures["raw"] = {shape: bench_raw(net, max(args.batches), shape, log) for shape in RAW_LABELS}
        raws = {shape: r["rate"] for shape, r in figures["raw"].items()}
        figures["ingest"] = []
        for batch in args.batches:
            figures["ingest"].append(bench_ingest(net, batch, True, raws, log, args.profile and
                                                  batch == max(args.batches)))
        figures["ingest"].append(bench_ingest(net, max(args.batches), False, raws, log))
        for size in args.http_batch:
            figures[f"http_{size}"] = bench_http(net, args, size, raws, log)
        if args.messages:
            figures["mqtt"] = bench_mqtt(net, args, raws, log)
        figures["bench_process"] = self_figures()
        log(f"\nsummary ({connection.vendor}, {net.n:,} readings, {net.s:,} sensors; load average "
            f"{os.getloadavg()[0]:.1f} at the end):")
        for line in summary(figures):
            log("  " + line)
    finally:
        cleanup()
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--readings", type=int, default=300_000, help="readings per path (N)")
    ap.add_argument("--sensors", type=int, default=2000, help="sensors (S), one indicator each")
    ap.add_argument("--batches", default="10000,50000", help="in-process ingest batch sizes")
    ap.add_argument("--http-batch", default="50000", help="readings per HTTP body, one run per size (0: skip HTTP)")
    ap.add_argument("--clients", type=int, default=2, help="HTTP client threads")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (chengyun serve --workers)")
    ap.add_argument("--server-threads", type=int, default=2, help="Python threads per server worker (chengyun serve --threads)")
    ap.add_argument("--messages", type=int, default=30_000, help="one-reading MQTT messages (0: skip MQTT)")
    ap.add_argument("--per-message", type=int, default=500, help="readings in one gateway message")
    ap.add_argument("--gateway-readings", type=int, default=0, help="readings sent as gateway batches (default: N)")
    ap.add_argument("--publishers", type=int, default=1, help="MQTT publisher processes")
    ap.add_argument("--mqtt-modes", default="backlog,live", help="backlog and/or live (see the MQTT section)")
    ap.add_argument("--mqtt-batch", type=int, default=5000, help="readings per database write of the subscriber "
                                                                  "(ingest-mqtt's default)")
    ap.add_argument("--gateway-batches", default="5000,50000", help="subscriber batch sizes for the gateway case")
    ap.add_argument("--flush-ms", type=int, default=200, help="the subscriber writes a smaller batch after this long")
    ap.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_ADMIN),
                    help="PostgreSQL server to create the throwaway database on")
    ap.add_argument("--profile", action="store_true", help="cProfile one in-process batch")
    ap.add_argument("--py-spy", metavar="BIN", help="py-spy binary (from its own venv): sample the HTTP workers and "
                                                    "the MQTT ingest subscriber")
    ap.add_argument("--keep", action="store_true", help="keep the database and files")
    ap.add_argument("--json", help="write the figures to this file")
    # role processes (started by the benchmark itself)
    ap.add_argument("--role", choices=("publish", "bare-sub", "ingest-sub"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=("single", "gateway"), help=argparse.SUPPRESS)
    ap.add_argument("--qos", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=5000, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("live", "backlog"), default="live", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        {"publish": role_publish, "bare-sub": role_bare_sub, "ingest-sub": role_ingest_sub}[args.role](args)
        return
    args.batches = [int(x) for x in args.batches.split(",") if x.strip()]
    args.http_batch = [int(x) for x in args.http_batch.split(",") if x.strip() and int(x) > 0]
    args.gateway_batches = [int(x) for x in args.gateway_batches.split(",") if x.strip()]
    args.mqtt_modes = [x.strip() for x in args.mqtt_modes.split(",") if x.strip() in ("live", "backlog")]
    figures = {}
    if args.db == "both":
        # One process per database: Django's settings are fixed once set up.
        for db in ("sqlite", "postgres"):
            cmd = [sys.executable, str(Path(__file__).resolve()), *[a for a in sys.argv[1:]], "--db", db]
            out = Path(tempfile.mkstemp(prefix=f"bench-signs-{db}-", suffix=".json")[1])
            subprocess.run([*cmd, "--json", str(out)], check=True)
            figures[db] = json.loads(out.read_text())
            out.unlink()
    else:
        figures[args.db] = run(args.db, args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures if args.db == "both" else figures[args.db], indent=1,
                                              default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
