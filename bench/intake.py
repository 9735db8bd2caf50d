"""Benchmark: intake in bulk and over HTTP.

(a) bulk: N generated reports (texts from the demo pack's phrasings, points
    inside the city, times over 30 days, about 10 % near-duplicates) through
    :mod:`chengyun.intake.bulk` (classify, locate, duplicate check, route,
    persist), against a plain bulk insert of the same rows into a table shaped
    like ``intake_report`` in the same database in the same run.
(b) http: the production server (``chengyun serve``, granian) on a loopback
    port under ``wrk`` for a sustained run: POST Open311 requests
    (``/open311/v2/requests.json``; the JSON API ``/api/v1/reports/`` if
    Open311 is missing), requests/s, latency percentiles, errors, and every
    accepted request id looked up in the database ("zero lost").

It works on a throwaway database: a temporary data directory (SQLite), or,
with ``DATABASE_URL`` set to a PostgreSQL server, a fresh database created
there and dropped at the end::

    .venv/bin/python bench/intake.py --reports 1000000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/intake.py --reports 1000000

Nothing here is a test: figures go to docs/performance.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- a throwaway database


def throwaway_database(args) -> callable:
    """Point CHENGYUN_DATA_DIR and DATABASE_URL at fresh places; return the cleanup."""
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="chengyun-bench-"))
    os.environ["CHENGYUN_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chengyun.settings"
    os.environ.setdefault("CHENGYUN_ALLOWED_HOSTS", "127.0.0.1,localhost")
    url = os.environ.get("DATABASE_URL", "")
    dropped = []
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        name = f"chengyun_bench_{os.getpid()}"
        parts = urllib.parse.urlsplit(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = urllib.parse.urlunsplit(parts._replace(path="/" + name))
        dropped.append((url, name))

    def cleanup():
        from django.db import connections

        connections.close_all()
        for admin_url, name in dropped:
            if args.keep:
                print(f"kept database {name}")
                continue
            import psycopg

            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.keep:
            print(f"kept data directory {data_dir}")
        elif not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)

    return cleanup


def prepare_city(log) -> None:
    """Migrate, load the demo pack's areas, departments and categories, train a classifier."""
    from django.core.management import call_command

    from chengyun.demo.loader import PACK, load_areas, load_org, load_taxonomy
    from chengyun.intake.classifier import train_and_store

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    quiet = lambda *a, **k: None  # noqa: E731
    load_areas(quiet)
    load_org(quiet)
    load_taxonomy(quiet)
    if (PACK / "report_phrases.json").exists():
        from chengyun.demo.texts import training_corpus

        texts, labels = training_corpus()
        note = "demo pack phrasings"
    else:
        texts, labels = keyword_corpus()
        note = "category keywords"
    result = train_and_store(texts, labels, by="bench", note=note)
    log(f"city loaded and classifier v{result.record.version} trained on {len(texts):,} texts ({note}, held-out "
        f"accuracy {result.metrics['accuracy']:.1%}) in {time.perf_counter() - t0:.1f} s")


def keyword_corpus(per_category: int = 40):
    from chengyun.taxonomy.models import Category

    rng = random.Random(3)
    texts, labels = [], []
    for cat in Category.objects.filter(parent__isnull=False):
        words = cat.keywords_zh or [cat.name]
        for _ in range(per_category):
            texts.append(f"{rng.choice(words)} {rng.choice(FILLERS)}")
            labels.append(cat.code)
    return texts, labels


FILLERS = ["请尽快处理", "已经好几天了", "影响出行", "晚上特别明显", "小区门口", "路口", ""]


# --------------------------------------------------------------------------- generated reports


class Reports:
    """Deterministic reports in time order; ``share_dup`` of them repeat a recent
    report a few metres away with the same or slightly changed words."""

    def __init__(self, n: int, *, seed: int = 11, days: int = 30, share_dup: float = 0.1, given: float = 0.5):
        import numpy as np
        import shapely

        from chengyun.areas.models import Area
        from chengyun.demo.loader import PACK
        from chengyun.taxonomy.models import Category

        self.n, self.share_dup, self.given = n, share_dup, given
        weights = {leaf["code"]: leaf.get("weight", 1)
                   for group in json.loads((PACK / "taxonomy.json").read_text(encoding="utf-8"))["categories"]
                   for leaf in group["children"]}
        self.cats = list(Category.objects.filter(code__in=weights))
        self.weights = [weights[c.code] for c in self.cats]
        districts = shapely.union_all([a.geometry for a in Area.objects.filter(level__key="district")])
        shapely.prepare(districts)
        self.districts = districts
        self.np_rng = np.random.default_rng(seed)
        self.rng = random.Random(seed)
        self.end = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self.start = self.end - timedelta(days=days)
        self.step = (self.end - self.start) / max(1, n)
        try:
            from chengyun.demo.texts import compose

            self.compose = compose
        except ImportError:  # the demo's texts module is missing: keywords
            self.compose = None
        self.recent: list = []
        self.i = 0

    def points(self, k: int):
        import numpy as np
        import shapely

        minx, miny, maxx, maxy = self.districts.bounds
        out_x, out_y = [], []
        while sum(len(x) for x in out_x) < k:
            xs = self.np_rng.uniform(minx, maxx, k * 3)
            ys = self.np_rng.uniform(miny, maxy, k * 3)
            inside = shapely.contains_xy(self.districts, xs, ys)
            out_x.append(xs[inside])
            out_y.append(ys[inside])
        return np.concatenate(out_x)[:k].tolist(), np.concatenate(out_y)[:k].tolist()

    def text(self, cat):
        if self.compose is not None:
            return self.compose(cat, self.rng, call_share=0.0)  # the texts of the earlier rounds
        word = self.rng.choice(cat.keywords_zh or [cat.name])
        return word, f"{word}，{self.rng.choice(FILLERS)}", ""

    def batch(self, size: int):
        import shapely

        from chengyun.intake.bulk import ImportRow

        rng = self.rng
        size = min(size, self.n - self.i)
        xs, ys = self.points(size)
        cats = rng.choices(self.cats, weights=self.weights, k=size)
        rows = []
        for j in range(size):
            i = self.i + j
            at = self.start + self.step * i + timedelta(seconds=rng.random())
            if self.recent and rng.random() < self.share_dup:
                cat, lon0, lat0, title, description, address = rng.choice(self.recent)
                lon = lon0 + rng.uniform(-0.0002, 0.0002)  # about 20 m
                lat = lat0 + rng.uniform(-0.0002, 0.0002)
                if not shapely.contains_xy(self.districts, lon, lat):  # moved over the boundary: Open311 refuses it
                    lon, lat = lon0, lat0
                if rng.random() < 0.5:
                    description = description + rng.choice(["！", "。请尽快。", " 还是没修好"])
            else:
                cat, lon, lat = cats[j], xs[j], ys[j]
                title, description, address = self.text(cat)
                self.recent.append((cat, lon, lat, title, description, address))
                if len(self.recent) > 2000:
                    self.recent = self.recent[1000:]
            phone = ""
            name = ""
            if rng.random() < 0.6:  # generated callers: numbers starting 100 reach nobody
                phone = "100" + str(rng.randrange(10**7, 10**8))
                name = rng.choice("王李张刘陈杨黄赵吴周") + rng.choice(["先生", "女士"])
            rows.append(ImportRow(
                line=i + 2, key=f"B{i:09d}", title=title, description=description,
                category_id=cat.pk if rng.random() < self.given else None, lon=lon, lat=lat, address=address,
                received_at=at, channel="hotline", external_id=f"B{i:09d}", name=name, phone=phone,
            ))
        self.i += size
        return rows

    def __iter__(self):
        while self.i < self.n:
            yield self.batch(20_000)


# --------------------------------------------------------------------------- (a) bulk


def rss_mb() -> float:
    """Resident memory now (Linux), in MB."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """The highest resident memory seen while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        import threading

        self.start = self.peak = rss_mb()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())


def plain_table(tables) -> str:
    """A table shaped like intake_report (same columns and indexes), empty."""
    from django.db import connection

    name = "bench_plain_report"
    with connection.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{name}"')
        if connection.vendor == "sqlite":
            cur.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'intake_report' AND sql IS NOT NULL")
            for kind, obj, sql in sorted(cur.fetchall(), key=lambda r: r[0] != "table"):
                sql = sql.replace('"intake_report"', f'"{name}"')
                if kind == "index":
                    sql = sql.replace(f'"{obj}"', f'"bench_{obj}"', 1)
                cur.execute(sql)
        else:
            cur.execute(f'CREATE TABLE "{name}" (LIKE intake_report INCLUDING ALL)')
    return name


def bench_bulk(args, log) -> dict:
    from django.db import connection, transaction

    from chengyun.intake.bulk import REPORT_COLUMNS, BulkImporter, _Tables
    from chengyun.intake.models import Report

    log(f"\n(a) bulk: {args.reports:,} generated reports, batches of {args.batch:,}")
    t = time.perf_counter()
    gen = Reports(args.reports, seed=args.seed)
    batches = []
    while gen.i < gen.n:
        batches.append(gen.batch(args.batch))
    generate = time.perf_counter() - t
    t0 = time.perf_counter()
    importer = BulkImporter(source="bench:bulk")
    init = time.perf_counter() - t0
    phases: Counter = Counter()
    done = 0
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        for result, size in importer.import_batches((rows, len(rows)) for rows in batches):
            phases.update(result.seconds)
            done += size
            if done % (args.batch * 10) == 0 or done == args.reports:
                log(f"  {done:>10,} reports  {done / (time.perf_counter() - t0):>9,.0f} reports/s")
        spent = time.perf_counter() - t0
    rss0, rss1 = memory.start, memory.peak
    totals = importer.totals

    # Baseline: the same rows, plainly inserted into a table shaped like intake_report.
    tables = _Tables()
    name = plain_table(tables)

    class Plain:
        _meta = type("M", (), {"db_table": name})

    plain = 0.0
    next_id = 1
    for rows in batches:
        values = []
        for r in rows:
            values.append((next_id, f"P{next_id:012d}", r.channel, "bench:plain", r.key, r.external_id, r.title,
                           r.description, r.category_id is not None, None, None, "{}", r.lon, r.lat, r.address, "{}",
                           "", "new", "{}", tables.dt(r.received_at), False, None, None, r.category_id, None, None,
                           None))
            next_id += 1
        t = time.perf_counter()
        with transaction.atomic():
            tables.insert(Plain, REPORT_COLUMNS, values)
        plain += time.perf_counter() - t
    with connection.cursor() as cur:
        cur.execute(f'DROP TABLE "{name}"')

    n = args.reports
    out = {
        "reports": n, "seconds": spent, "rate": n / spent, "plain_seconds": plain, "plain_rate": n / plain,
        "ratio": (n / spent) / (n / plain), "init": init, "generate": generate, "rss_delta_mb": rss1 - rss0,
        "rss_start_mb": rss0, "rss_peak_mb": rss1, "counts": totals.as_dict(), "phases": dict(phases),
        "tables": dict(importer.tables.seconds), "in_db": Report.objects.filter(source="bench:bulk").count(),
    }
    log(f"  importer set up in {init:.2f} s (locator, routing table, classifier); generating the rows took "
        f"{generate:.1f} s (not counted)")
    log(f"  counts: {totals.as_dict()}")
    log(f"  bulk pipeline:         {out['rate']:>10,.0f} reports/s  ({spent:.1f} s)")
    log(f"  plain insert baseline: {out['plain_rate']:>10,.0f} reports/s  ({plain:.1f} s)   "
        f"ratio {out['ratio']:.2f}x")
    log(f"  memory: {rss0:,.0f} MB resident before the run, peak {rss1:,.0f} MB (+{rss1 - rss0:,.0f} MB)")
    log("  where the time goes (classify and locate run in a second thread, overlapping the rest): " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])))
    log("  inserts by table: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(importer.tables.seconds.items(),
                                                                                   key=lambda kv: -kv[1])))
    return out


# --------------------------------------------------------------------------- (b) http


WRK_SCRIPT = r"""
local bodies = dofile("%(bodies)s")
local path = "%(path)s"
local headers = %(headers)s
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  -- each thread starts at its own share of the bodies: no body is sent twice until one has gone round
  ok, bad, i = 0, 0, (tid - 1) * math.floor(#bodies / %(threads)s)
  ids = io.open("%(ids)s" .. tid, "w")
  errs = io.open("%(ids)s" .. tid .. ".errors", "w")
end

function request()
  i = i + 1
  return wrk.format("POST", path, headers, bodies[(i %% #bodies) + 1])
end

function response(status, hdrs, body)
  local id = body:match('"%(id_field)s"%%s*:%%s*"([^"]+)"')
  if (status == 200 or status == 201) and id then
    ok = ok + 1
    ids:write(id, "\n")
  else
    bad = bad + 1
    errs:write(status, " ", body:sub(1, 200):gsub("\n", " "), "\n")
  end
end

function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format("RESULT ok=%%d bad=%%d requests=%%d duration_us=%%d p50=%%d p90=%%d p99=%%d max=%%d "
    .. "connect=%%d read=%%d write=%%d status=%%d timeout=%%d\n", o, b, summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.3)
    raise SystemExit(f"the server did not answer {url}")


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def request_bodies(n: int, open311: bool, api_key: str, seed: int, dup_share: float = 0.0) -> list[str]:
    gen = Reports(n, seed=seed + 1, share_dup=dup_share)
    rows = gen.batch(n)
    codes = {c.pk: c.code for c in gen.cats}
    bodies = []
    for r in rows:
        cat = r.category_id or rows[0].category_id or gen.cats[0].pk
        if open311:
            bodies.append(urllib.parse.urlencode({
                "api_key": api_key, "service_code": codes.get(cat, gen.cats[0].code), "lat": f"{r.lat:.6f}",
                "long": f"{r.lon:.6f}", "description": r.description, "phone": r.phone, "first_name": r.name,
            }))
        else:
            bodies.append(json.dumps({"channel": "hotline", "description": r.description, "lon": r.lon, "lat": r.lat,
                                      "contact": {"phone": r.phone, "name": r.name}}, ensure_ascii=False))
    return bodies


def queries_per_request(open311: bool, body: str, token: str) -> dict:
    """One request in this process with every query captured: what a request costs."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from chengyun.audit.models import AuditRecord

    client = Client()
    before = AuditRecord.objects.count()
    with CaptureQueriesContext(connection) as q:
        if open311:
            r = client.post("/open311/v2/requests.json", data=body, content_type="application/x-www-form-urlencoded")
        else:
            r = client.post("/api/v1/reports/", data=body, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Bearer {token}")
    kinds: Counter = Counter()
    for x in q.captured_queries:
        sql = x["sql"].lstrip()
        verb = sql.split(None, 1)[0].upper()
        table = ""
        for word in ("FROM", "INTO", "UPDATE"):
            if f"{word} " in sql.upper():
                after = sql[sql.upper().index(f"{word} ") + len(word) + 1:].split()[0].strip('"')
                table = after
                break
        kinds[f"{verb} {table}"] += 1
    return {"status": r.status_code, "queries": len(q.captured_queries),
            "audit_records": AuditRecord.objects.count() - before, "by_kind": kinds.most_common(12)}


def py_spy() -> Path | None:
    for candidate in (Path("/tmp/prof/bin/py-spy"), Path("/tmp/prof-venv/bin/py-spy"),
                      Path(shutil.which("py-spy") or "/nonexistent")):
        if candidate.exists():
            return candidate
    return None


PROFILE_PARTS = [
    # label, function, file
    ("intake submit() (whole pipeline)", "submit", "intake/services.py"),
    ("  classify", "classify", "intake/services.py"),
    ("  dedup.find_duplicate", "find_duplicate", "intake/dedup.py"),
    ("  create_case", "create_case", "cases/services.py"),
    ("  auto_route (accept + dispatch)", "auto_route", "intake/services.py"),
    ("    taxonomy route()", "route", "taxonomy/services.py"),
    ("    compute_deadlines", "compute_deadlines", "cases/services.py"),
    ("  cluster check", "check_cluster", "intake/cluster.py"),
    ("  audit record() (chain append)", "record", "audit/services.py"),
    ("Open311 response rows", "request_rows", "open311/queries.py"),
    ("Open311 API key check", "authenticate", "open311/services.py"),
    ("SQLite/psycopg execute (incl. lock waits)", "execute", "db/backends/"),
    ("Django ORM: building SQL", "as_sql", "db/models/sql/compiler.py"),
    ("commit", "_commit", "db/backends/base/base.py"),
    ("new DB connection", "connect", "db/backends/base/base.py"),
]


def summarize_profile(path: Path, top: int = 12) -> list[str]:
    """py-spy's raw (collapsed) stacks -> the share of busy samples in parts of the request path."""
    total = 0
    hits: Counter = Counter()
    own: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if any(("select (selectors.py" in f or "wait (threading.py" in f or "sleep" in f.split(" (")[0])
               for f in frames[-2:]):
            continue  # an idle worker thread waiting for work
        n = int(count)
        total += n
        for label, func, where in PROFILE_PARTS:
            if any(f.split(" (")[0].rsplit(".", 1)[-1] == func and where in f for f in frames):
                hits[label] += n
        own[frames[-1].replace(str(ROOT) + "/", "")[:90]] += n
    if not total:
        return ["(no samples)"]
    lines = [f"{label:<44} {hits[label] / total:6.1%}" for label, _f, _w in PROFILE_PARTS if hits[label]]
    lines.append("busiest frames (own time):")
    lines += [f"  {v / total:6.1%}  {k}" for k, v in own.most_common(top)]
    return lines


def bench_http(args, log, label: str = "(b) http") -> dict:
    from chengyun.areas.models import Area
    from chengyun.intake.models import Report
    from chengyun.intake.received import waiting
    from chengyun.org.models import Role, RoleAssignment, User
    from chengyun.org.services import create_token

    wrk = shutil.which("wrk")
    if wrk is None:
        log(f"\n{label}: wrk is not installed (apt-get install -y wrk); skipped")
        return {}
    try:
        from chengyun.open311.services import create_api_key

        key, api_key = create_api_key(f"bench-{time.monotonic_ns()}", by="bench")
        open311, path, source = True, "/open311/v2/requests.json", key.source
    except ImportError:
        key, api_key, open311, path = None, "", False, "/api/v1/reports/"
    user = User.objects.create_user(username=f"bench-hotline-{time.monotonic_ns()}")
    RoleAssignment.objects.create(user=user, role=Role.OPERATOR, area=Area.objects.get(level__key="city"))
    _token, token = create_token(user, "bench", by="bench")
    if not open311:
        source = f"user:{user.pk}"
    work = Path(tempfile.mkdtemp(prefix="chengyun-wrk-"))
    bodies = request_bodies(args.bodies, open311, api_key, args.seed, args.dup_share)
    (work / "bodies.lua").write_text("return {\n" + ",\n".join(lua_string(b) for b in bodies) + "\n}\n",
                                     encoding="utf-8")
    headers = ('{["Content-Type"] = "application/x-www-form-urlencoded"}' if open311 else
               '{["Content-Type"] = "application/json", ["Authorization"] = "Bearer ' + token + '"}')
    (work / "post.lua").write_text(WRK_SCRIPT % {
        "bodies": work / "bodies.lua", "path": path, "headers": headers, "ids": work / "ids-", "threads": args.threads,
        "id_field": "service_request_id" if open311 else "number"}, encoding="utf-8")

    per_request = queries_per_request(open311, bodies[0], token)
    endpoint = "Open311 POST " + path if open311 else "JSON API POST " + path + " (bearer token)"
    log(f"\n{label}: {endpoint}, chengyun serve (granian, {args.workers} workers x {args.server_threads} threads), wrk {args.threads} threads "
        f"x {args.connections} connections, {args.seconds} s")
    log(f"  one request in-process: status {per_request['status']}, {per_request['queries']} SQL queries, "
        f"{per_request['audit_records']} audit records appended")
    log("  queries by kind: " + ", ".join(f"{k.strip()} x{v}" for k, v in per_request["by_kind"]))

    port = free_port()
    server_log = (work / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "chengyun"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
         "--threads", str(args.server_threads), *(["--no-access-log"] if args.no_access_log else [])],
        stdout=server_log, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True,
    )
    # The intake pipeline runs beside the server, as `chengyun worker` runs it in production: the
    # HTTP figures are taken while it processes what arrives, on the same two cores.
    worker_log = (work / "worker.log").open("w")
    worker = None if args.no_worker else subprocess.Popen(
        [str(BIN / "chengyun"), "process-intake", *(["--batch", str(args.pipeline_batch)] if args.pipeline_batch else [])],
        stdout=worker_log, stderr=subprocess.STDOUT,
        env={**os.environ, "CHENGYUN_LOG_LEVEL": "DEBUG" if args.keep else os.environ.get("CHENGYUN_LOG_LEVEL", "WARNING")},
        start_new_session=True)
    spy = None
    try:
        wait_for(f"http://127.0.0.1:{port}/open311/v2/discovery.json" if open311 else f"http://127.0.0.1:{port}/")
        before = Report.objects.filter(source=source).count()
        # A short warm-up (classifier and locator load in every worker), not counted.
        subprocess.run([wrk, "-t1", "-c4", "-d3s", "-s", str(work / "post.lua"), f"http://127.0.0.1:{port}{path}"],
                       capture_output=True, check=True)
        for f in work.glob("ids-*"):
            f.unlink()
        warm = Report.objects.filter(source=source).count() - before
        spy_bin = py_spy() if args.profile else None
        if spy_bin is not None:
            spy = subprocess.Popen([str(spy_bin), "record", "--pid", str(server.pid), "--subprocesses", "--format",
                                    "raw", "--rate", "200", "--duration", str(max(5, args.seconds - 5)), "--nonblocking",
                                    "--output", str(work / "profile.txt")], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        run = subprocess.run([wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                              "--timeout", "10s", "-s", str(work / "post.lua"), f"http://127.0.0.1:{port}{path}"],
                             capture_output=True, text=True, check=True)
        if spy is not None:
            spy.wait(timeout=args.seconds + 60)
        time.sleep(1.0)  # requests in flight when wrk stopped finish
        waiting_at_end = waiting()
        drained_in = None
        if worker is not None:
            started = time.perf_counter()
            while waiting() and time.perf_counter() - started < 600:
                time.sleep(0.5)
            drained_in = time.perf_counter() - started if not waiting() else None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server_log.close()
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        worker_log.close()
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT"))
    r = {k: int(v) for k, v in (p.split("=") for p in line.split()[1:])}
    ids = [x for f in sorted(work.glob("ids-*")) if not f.name.endswith(".errors")
           for x in f.read_text().split()]
    errors = [x for f in sorted(work.glob("ids-*.errors")) for x in f.read_text().splitlines()]
    numbers = set(ids)
    found = 0
    chunk = list(numbers)
    for s in range(0, len(chunk), 5000):
        found += Report.objects.filter(number__in=chunk[s:s + 5000]).count()
    in_db = Report.objects.filter(source=source).count() - before - warm
    seconds = r["duration_us"] / 1e6
    out = {
        "endpoint": endpoint, "workers": args.workers, "seconds": seconds, "accepted": r["ok"], "rate": r["ok"] / seconds,
        "p50_ms": r["p50"] / 1000, "p90_ms": r["p90"] / 1000, "p99_ms": r["p99"] / 1000, "max_ms": r["max"] / 1000,
        "bad": r["bad"], "socket_errors": {k: r[k] for k in ("connect", "read", "write", "timeout")},
        "ids": len(ids), "unique_ids": len(numbers), "ids_in_db": found, "rows_in_db": in_db,
        "per_request": per_request, "waiting_at_end": waiting_at_end, "drained_in_s": drained_in,
        "processed": Report.objects.filter(source=source).exclude(case=None).count(),
    }
    log(f"  accepted: {r['ok']:,} in {seconds:.1f} s = {out['rate']:,.0f} creates/s; other responses: {r['bad']}; "
        f"socket errors: {out['socket_errors']}")
    log(f"  latency: p50 {out['p50_ms']:.1f} ms, p90 {out['p90_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms, "
        f"max {out['max_ms']:.1f} ms")
    log(f"  zero lost: {found:,} of {len(numbers):,} accepted ids are in the database"
        f" ({'all' if found == len(numbers) == r['ok'] else 'NOT ALL'}); reports stored during the run: {in_db:,}"
        f" (includes requests still in flight when wrk stopped)")
    if worker is None:
        log(f"  intake pipeline not running (--no-worker): {waiting_at_end:,} reports wait for it")
    else:
        log(f"  intake pipeline (chengyun process-intake beside the server): {waiting_at_end:,} reports still "
            f"waiting when wrk stopped, all processed {drained_in:.1f} s later" if drained_in is not None else
            f"  intake pipeline: {waiting_at_end:,} waiting when wrk stopped, NOT drained within 600 s")
    if errors:
        log(f"  first errors: {errors[:3]}")
    if spy is not None and (work / "profile.txt").exists():
        log("  py-spy, share of samples in all workers:")
        for x in summarize_profile(work / "profile.txt"):
            log("    " + x)
        if args.keep:
            log(f"  profile kept at {work / 'profile.txt'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- main


def machine() -> str:
    import sqlite3

    cpu = ""
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                   if x.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=200_000, help="generated reports for the bulk run (0: skip)")
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--seconds", type=int, default=30, help="length of the HTTP run (0: skip)")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (chengyun serve --workers)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--bodies", type=int, default=5000,
                    help="request bodies, sent in turn (fewer than the requests: each is sent several times, at the "
                         "same place, so most become duplicates and many cluster warnings)")
    ap.add_argument("--dup-share", type=float, default=0.0,
                    help="share of the bodies that repeat a recent one a few metres away (the bulk run's data: 0.1)")
    ap.add_argument("--http-again", action="store_true", help="run the HTTP part again after the bulk import")
    ap.add_argument("--server-threads", type=int, default=2, help="Python threads per server worker (chengyun serve --threads)")
    ap.add_argument("--no-access-log", action="store_true", help="serve without the access log (chengyun serve --no-access-log)")
    ap.add_argument("--no-worker", action="store_true", help="do not run the intake pipeline beside the server")
    ap.add_argument("--pipeline-batch", type=int, default=0,
                    help="reports per transaction of the pipeline (process-intake --batch; 0: its default)")
    ap.add_argument("--profile", action="store_true", help="sample the server with py-spy (/tmp/prof/bin or /tmp/prof-venv/bin)")
    ap.add_argument("--data-dir", help="use this data directory instead of a temporary one")
    ap.add_argument("--keep", action="store_true", help="keep the database and files")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    cleanup = throwaway_database(args)
    sys.path.insert(0, str(ROOT / "src"))
    import django

    django.setup()
    from django.db import connection

    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"machine: {machine()}")
    log(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
    figures = {"machine": machine(), "database": connection.vendor}
    try:
        prepare_city(log)
        if args.seconds:  # on the fresh city first: the request path itself
            figures["http"] = bench_http(args, log, label="(b) http, fresh city")
        if args.reports:
            figures["bulk"] = bench_bulk(args, log)
        if args.seconds and args.reports and args.http_again:
            figures["http_after_bulk"] = bench_http(args, log, label="(b) http again, after the bulk import")
    finally:
        cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
