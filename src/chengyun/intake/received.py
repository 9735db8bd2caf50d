"""The second half of machine intake: the batch pipeline over received reports.

Open311 stores a report as *received*
(:func:`chengyun.intake.services.receive`: one short transaction, the
tracking number at once). The worker then takes what has arrived, up to
``LIVE_BATCH`` reports at a time, through the bulk pipeline of :mod:`.bulk` —
classify, locate, duplicate check, case or attachment, route with deadlines —
and, unlike a history import:

* the reports exist already: they are updated (``WHERE duplicate =
  'pending'``, so two workers can never process one report twice), not
  inserted; contacts, attributes and media stay as received;
* each report's classification keeps its explanation in full (alternatives
  and the terms that drove it), as :func:`.services.classify` writes it;
* the open-case index stays in memory between batches and is brought up to
  date each batch: cases others opened since (the portal, the hotline) are
  added, cases closed or merged since are left out;
* cluster warnings are checked for the new reports, as for ``submit()``;
* one audit record per batch (``report.process``) holds the counts, the id
  ranges and a SHA-256 digest over the batch's reports
  (:func:`verify_processed` recomputes it).

The cases are created at the reports' ``received_at``: deadlines count from
the moment the city was told, not from when the worker got to it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection
from django.utils.translation import gettext as _

from chengyun.cases.models import Case, Channel, TimelineEntry
from chengyun.cases.workflow import OPEN_STATUSES, WAITING_FOR_DISPATCH, CaseStatus
from chengyun.clock import now

from .bulk import (
    CASE_FIELDS,
    DIGEST_FORMAT,
    BatchResult,
    BulkImporter,
    Counts,
    ImportRow,
    Raced,
    _Batch,
    _Writes,
    micros,
    report_digest,
)
from .dedup import active_since
from .models import DuplicateOutcome, Report
from .services import SYSTEM_ACTOR, given_accept_note

log = logging.getLogger(__name__)

# Reports per transaction. On SQLite the worker holds the write lock for about
# 75-100 µs a report, and the server's requests wait for it meanwhile: 100
# gave a lower p99 than 200 at the same rate under load (Open311 POST beside
# the worker, 2 cores: p99 41.6-46.7 ms against 44.1-55.4, 1,158-1,196 creates/s
# against 1,119-1,251), though a backlog alone takes about a fifth longer
# (19,971 reports: 7.3-7.6 s against 6.3 s). docs/performance.md.
LIVE_BATCH = 100
AUDIT_ACTION = "report.process"
POLL_SECONDS = 0.2  # how long the worker rests when nothing is waiting
PENDING = DuplicateOutcome.PENDING.value
_OPEN = sorted(str(s) for s in OPEN_STATUSES)  # as parameters of raw SQL
_FIELDS = ("id", "number", "channel", "source", "external_id", "title", "description",
           "category_id", "lon", "lat", "address", "area_id", "received_at", "generated")


class ReceivedPipeline(BulkImporter):
    """:class:`.bulk.BulkImporter` for reports already stored as received."""

    audit_action = AUDIT_ACTION

    def __init__(self) -> None:
        super().__init__(source="received")
        self.note = _("Taken in by the intake pipeline.")
        self.accept_note = _("Accepted automatically: the category is certain enough.")
        self.accept_note_given = {channel: given_accept_note(channel) for channel in Channel.values}
        self.dispatch_note = _("Dispatched automatically by the routing rules.")
        self._senders: dict[str, tuple[str, int | None]] = {}
        self.built_at = time.monotonic()
        self._case_mark = self._entry_mark = 0
        self._own: set[int] = set()

    # ---------------------------------------------------------------- rows

    @staticmethod
    def pending(ids: list[int] | None = None, limit: int = LIVE_BATCH) -> list[ImportRow]:
        """Received reports not yet processed, oldest first (``ids``: only these).
        Raw SQL, as the other reads of each batch: building the ORM's queries
        cost more than running them (about 15 % of a small batch's time)."""
        where, params = "duplicate = %s", [PENDING]
        if ids is not None:
            if not ids:
                return []
            where += f" AND id IN ({', '.join(['%s'] * len(ids))})"
            params += list(ids)
        with connection.cursor() as cur:
            cur.execute(f'SELECT {", ".join(_FIELDS)} FROM "{Report._meta.db_table}" WHERE {where} ORDER BY id '
                        f"LIMIT {int(limit)}", params)
            found = cur.fetchall()
        rows = []
        for (pk, number, channel, source, external_id, title, description, category_id, lon, lat, address,
             area_id, received_at, generated) in found:
            rows.append(ImportRow(
                line=pk, key=f"#{pk}", title=title, description=description, category_id=category_id, lon=lon,
                lat=lat, address=address, received_at=_aware(received_at), channel=channel, external_id=external_id,
                report_id=pk, number=number, area_id=area_id, source=source, generated=bool(generated),
            ))
        return rows

    def _known(self, keys: list[str]) -> set[str]:
        """The batch's reports that another worker has processed (or, on
        PostgreSQL, is processing: locked rows are skipped) since they were read."""
        ids = [int(k[1:]) for k in keys]
        table = Report._meta.db_table
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute(f'SELECT id FROM "{table}" WHERE id = ANY(%s) AND duplicate = %s '
                            "FOR UPDATE SKIP LOCKED", [ids, PENDING])
                free = {r[0] for r in cur.fetchall()}
            else:
                free = set()
                for s in range(0, len(ids), 900):
                    chunk = ids[s:s + 900]
                    cur.execute(f'SELECT id FROM "{table}" WHERE id IN ({", ".join(["%s"] * len(chunk))}) '
                                "AND duplicate = %s", [*chunk, PENDING])
                    free.update(r[0] for r in cur.fetchall())
        return {f"#{pk}" for pk in ids if pk not in free}

    def _report_ids(self, b: _Batch) -> list[int]:
        return [r.report_id for r in b.rows]

    def _case_ids(self, n: int) -> list[int]:
        return self.tables.reserve(Case, n)

    def _decide_in_transaction(self) -> bool:
        """On SQLite only the writing holds the write lock: the decisions are made
        from reads beforehand (new case ids reserved), so the server's requests
        wait for the lock no longer than the inserts take. A report processed or
        an attached case closed meanwhile is caught inside the write transaction
        (:class:`.bulk.Raced`: the batch is rolled back and read again).
        PostgreSQL has no single writer: the whole batch is one transaction there."""
        return connection.vendor != "sqlite"

    def _before_write(self, b: _Batch) -> None:
        """Every report's explanation, before the write transaction (not while holding the lock)."""
        for i in range(b.n):
            self._explanation(b, i)

    def _write(self, b: _Batch, result: BatchResult, writes: _Writes | None = None) -> None:
        self._check_attached(b)
        super()._write(b, result, writes)

    def _ids(self, model, n: int) -> list[int]:
        """Reserved before the write transaction, in a short one of their own per
        table (the rows are built before it)."""
        return self.tables.reserve(model, n)

    def _check_attached(self, b: _Batch) -> None:
        """The cases reports are attached to must still be open (they were read
        before the write transaction)."""
        ids = sorted({case_id for case_id, _i, _score in b.attached} - {c[1] for c in b.cases})  # not this batch's own
        if not ids:
            return
        with connection.cursor() as cur:
            cur.execute(f'SELECT id FROM "{Case._meta.db_table}" WHERE id IN ({", ".join(["%s"] * len(ids))}) '
                        f'AND status IN ({", ".join(["%s"] * len(_OPEN))})', [*ids, *_OPEN])
            still = {r[0] for r in cur.fetchall()}
        if len(still) != len(ids):
            raise Raced(f"{len(ids) - len(still)} matched cases closed meanwhile")

    # ---------------------------------------------------------------- open cases

    def _marks(self) -> tuple[int, int]:
        with connection.cursor() as cur:
            cur.execute(f'SELECT (SELECT MAX(id) FROM "{Case._meta.db_table}"), '
                        f'(SELECT MAX(id) FROM "{TimelineEntry._meta.db_table}")')
            case_mark, entry_mark = cur.fetchone()
            return case_mark or 0, entry_mark or 0

    def _open_cases(self, b: _Batch) -> None:
        if self.index is None:
            self._case_mark, self._entry_mark = self._marks()  # before loading: what comes after is caught below
            super()._open_cases(b)
            self._own.clear()
            return
        index = self.index
        index.forget_before(b.t[0] - index.max_window)
        since = index.loaded[0] if index.loaded else 0
        case_top, entry_top = self._marks()  # first: what is created while we read is read next time
        own = self._own
        with connection.cursor() as cur:
            cur.execute(f'SELECT {", ".join(CASE_FIELDS)} FROM "{Case._meta.db_table}" WHERE id > %s AND id <= %s '
                        "ORDER BY created_at DESC, id DESC",  # the cases' own order: equal scores break ties alike
                        [self._case_mark, case_top])
            new = [_read(r) for r in cur.fetchall() if r[0] not in own]
            # One read of the timeline since the last batch: cases that left the open
            # statuses, and cases to take again as they are now: given a category by
            # staff (accepted with one, or reclassified: an unclassified one leaves the
            # group searched for every report), or open again (reopened, a merge undone).
            # The pipeline's own accepting changes no category: not a reason to read a case again.
            # Moved by staff (relocate): found at its new place.
            cur.execute(f'SELECT case_id, action, from_status, to_status, actor_name '
                        f'FROM "{TimelineEntry._meta.db_table}" '
                        "WHERE id > %s AND id <= %s AND (to_status <> '' OR action IN ('reclassify', 'accept', "
                        "'relocate'))",
                        [self._entry_mark, entry_top])
            left, again = [], []
            for case_id, action, from_status, to_status, actor in cur.fetchall():
                if to_status and to_status not in OPEN_STATUSES:
                    left.append(case_id)
                elif action in ("reclassify", "relocate") or (action == "accept" and actor != SYSTEM_ACTOR) or (
                        to_status and from_status and from_status not in OPEN_STATUSES) or (
                        # back in the dispatcher's queue (returned, recalled): counts from then (dedup)
                        to_status in WAITING_FOR_DISPATCH and from_status and from_status not in WAITING_FOR_DISPATCH):
                    again.append(case_id)
            again = list(dict.fromkeys(again))
            if again:
                cur.execute(f'SELECT {", ".join(CASE_FIELDS)} FROM "{Case._meta.db_table}" '
                            f'WHERE id IN ({", ".join(["%s"] * len(again))}) ORDER BY created_at DESC, id DESC', again)
                taken = set(again)
                new = [r for r in new if r[0] not in taken] + [_read(r) for r in cur.fetchall()]
        index.gone.update(left)
        for pk in again:
            index.discard(pk)
            index.gone.discard(pk)  # if it is not open now, add_rows leaves it out
        # (reopened long after it was made: it counts from when it came back, as in dedup)
        index.add_rows(r for r in new if r[4] is not None and micros(active_since(r[4], r[11])) >= since)
        self._case_mark, self._entry_mark = case_top, entry_top
        self._own.clear()

    # ---------------------------------------------------------------- writing

    def _create_payload(self, r: ImportRow) -> dict:
        return {"channel": r.channel, "source": r.source, "report": r.number}

    def _sender(self, source: str) -> tuple[str, int | None]:
        """Who sent a report, as timelines name them: ``open311:<partner>`` for an
        API key, the user for a token; else the pipeline itself."""
        found = self._senders.get(source)
        if found is None:
            kind, _sep, pk = source.partition(":")
            found = (SYSTEM_ACTOR, None)
            if kind == "apikey" and pk.isdigit():
                from chengyun.open311.models import ApiKey

                key = ApiKey.objects.filter(pk=int(pk)).first()
                if key is not None:
                    found = (key.actor, None)
            elif kind == "user" and pk.isdigit():
                user = get_user_model().objects.filter(pk=int(pk)).first()
                if user is not None:
                    found = (user.get_username(), user.pk)
            self._senders[source] = found
        return found

    def _acted_at(self, rows: list[ImportRow], at: list) -> list:
        """The pipeline's acts are dated when it made them, not at the reports'
        receipt (the case and its deadlines count from receipt): a partner that
        reads the updates since its last look must find a dispatch the worker
        made late, after a backlog, among the new ones."""
        fmt, now_ = self.tables.dt, now()
        return [a if r.received_at >= now_ else fmt(now_) for r, a in zip(rows, at, strict=True)]

    def _case_entries(self, r: ImportRow, at, acted, case_id: int, status: str, plan, data: str) -> list[tuple]:
        """The timeline :func:`.services.submit` writes: created by the sender at
        receipt; if routed, accepted and dispatched by the pipeline when it did so."""
        actor, person = self._sender(r.source)
        created = json.dumps({"channel": r.channel, "report": r.number}, ensure_ascii=False)
        if plan is None:
            return [(at, actor, "create", "", status, "", created, person, case_id)]
        code = self.planner.dept_code
        dispatch = json.dumps({"lead": code[plan.lead_id], "assisting": [code[d] for d in plan.assisting_ids],
                               "rule": plan.rule_id, "overridden": False}, ensure_ascii=False)
        return [
            (at, actor, "create", "", CaseStatus.NEW, "", created, person, case_id),
            (acted, SYSTEM_ACTOR, "accept", CaseStatus.NEW, CaseStatus.ACCEPTED,
             self.accept_note_given[r.channel] if r.category_id is not None else self.accept_note, "{}", None,
             case_id),
            (acted, SYSTEM_ACTOR, "dispatch", CaseStatus.ACCEPTED, CaseStatus.DISPATCHED, self.dispatch_note, dispatch,
             None, case_id),
        ]

    def _classification_json(self, b: _Batch, i: int, by: str) -> str:
        """As :func:`.services.classify` writes it, terms and alternatives included."""
        explanation = self._explanation(b, i)
        explanation["threshold"] = self.threshold
        explanation["decided_by"] = by
        if b.given[i]:
            explanation["disagrees"] = not b.certain[i]
        return json.dumps(explanation, ensure_ascii=False)

    def _route_classification_json(self, b: _Batch, i: int, by: str) -> str:
        e = self._explanation(b, i)
        return json.dumps({"decided_by": by, "confidence": e.get("confidence"), "model": e.get("model"),
                           "terms": e.get("terms", [])}, ensure_ascii=False)

    def _explanation(self, b: _Batch, i: int) -> dict:
        """Row ``i``'s explanation; the batch's are made together at the first
        ask (every row's are stored): ``TextClassifier.explanations`` gives what
        ``explain_row`` gives row by row, at about a third of the cost."""
        cache = b.explanations
        if not cache:
            if self.model is None or b.P is None:
                cache.update((j, {"model": None}) for j in range(b.n))
            else:
                for j, e in enumerate(self.model.explanations(b.X, b.P, self.version)):
                    cache[j] = e if b.texts[j].strip() else {"model": None}
        return dict(cache[i])

    def _report_rows(self, b: _Batch, at: list, by: list[str], contact_of: dict[int, int]) -> tuple[list[str], list]:
        """What the pipeline decided of each report (contacts, attributes and
        media stay as received), as parameters of the UPDATE."""
        conf, pred, area, decided = b.conf, b.pred, b.area, b.decided
        return [r.number for r in b.rows], [(
            b.case_of[i], decided[i] if decided[i] >= 0 else None, pred[i] if pred[i] >= 0 else None,
            None if conf[i] != conf[i] else conf[i], self.version, self._classification_json(b, i, by[i]),
            area[i] if area[i] >= 0 else None, b.dup_of[i], b.dup_json[i], r.report_id, PENDING,
        ) for i, r in enumerate(b.rows)]

    def _put_reports(self, b: _Batch, rows: list) -> None:
        """Fill in the decisions; only reports still pending are touched.

        A report whose category stays as received (every Open311 request names
        its service) is updated without ``category_id``: SQLite rewrites an
        index entry for every column the UPDATE sets, changed or not, and the
        (category, received_at) index was then the largest share of the
        worker's write-ahead log (16 % of its pages, measured)."""
        table = Report._meta.db_table
        decided = "case_id = %s, category_id = %s, "
        rest = ("suggested_category_id = %s, confidence = %s, classifier_version = %s, classification = %s, "
                "area_id = %s, duplicate = %s, duplicate_explanation = %s WHERE id = %s AND duplicate = %s")
        kept, moved = [], []
        for row, r in zip(rows, b.rows, strict=True):
            if row[1] == r.category_id:
                kept.append((row[0], *row[2:]))
            else:
                moved.append(row)
        changed = 0
        with connection.cursor() as cur:
            for sql, params in ((f'UPDATE "{table}" SET case_id = %s, ' + rest, kept),
                                (f'UPDATE "{table}" SET ' + decided + rest, moved)):
                if params:
                    cur.executemany(sql, params)
                    changed += cur.rowcount
        if changed != b.n:  # another worker got there first: roll the batch back and read again
            raise Raced(f"{b.n - changed} of {b.n} reports were processed meanwhile")
        self._own.update(case_id for _i, case_id, *_rest in b.cases)

    def _audit_extra(self, b: _Batch) -> dict:
        return {"ranges": _ranges(b.report_ids), "digest_format": f"received-{DIGEST_FORMAT}"}

    def _after_write(self, b: _Batch) -> None:
        if self._decide_in_transaction():
            self._check_clusters(b)

    def _after_commit(self, b: _Batch) -> None:
        if not self._decide_in_transaction():
            self._check_clusters(b)

def _read(row: tuple) -> tuple:
    """A case row of :data:`CASE_FIELDS` read with raw SQL, its times with their zone."""
    return (*row[:4], _aware(row[4]), *row[5:11], _aware(row[11]))


def _aware(value):
    """A datetime read with raw SQL: SQLite gives it without a zone (it is UTC), PostgreSQL with one."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as [first, last] runs: [1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for pk in sorted(ids):
        if out and pk == out[-1][1] + 1:
            out[-1][1] = pk
        else:
            out.append([pk, pk])
    return out


def verify_processed(audit) -> bool:
    """Recompute a ``report.process`` record's digest from the reports in the database."""
    from django.db.models import Q

    q = Q()
    for first, last in audit.data["ranges"]:
        q |= Q(pk__gte=first, pk__lte=last)
    rows = (Report.objects.filter(q).order_by("pk").values_list(
        "pk", "number", "case__number", "received_at", "category__code", "lon", "lat", "duplicate", "title",
        "description"))
    return report_digest((number, case, f"#{pk}", received, code, lon, lat, dup, title, description)
                         for pk, number, case, received, code, lon, lat, dup, title, description in
                         rows.iterator(chunk_size=5000)) == audit.data["digest"]


# --------------------------------------------------------------------------- running it

_cached: list[ReceivedPipeline | None] = [None]
_cache_lock = threading.Lock()


def _pipeline(fresh: bool) -> ReceivedPipeline:
    """The worker keeps one pipeline (routing tables, classifier, open cases in
    memory) and rebuilds it every ``INTAKE_PIPELINE_REFRESH_SECONDS`` or when
    another classifier is made active."""
    if fresh:
        return ReceivedPipeline()
    from .classifier import active_model

    p = _cached[0]
    if p is None or time.monotonic() - p.built_at > settings.INTAKE_PIPELINE_REFRESH_SECONDS \
            or active_model()[0] != p.version:
        p = _cached[0] = ReceivedPipeline()
    return p


def process_received(*, ids: list[int] | None = None, limit: int = LIVE_BATCH, attempts: int = 3) -> Counts:
    """Run the pipeline over received reports (all waiting, oldest first, at
    most ``limit``; or only ``ids``). One transaction; returns the counts."""
    with _cache_lock:  # one batch at a time per process: the pipeline keeps state between batches
        fresh = ids is not None or settings.INTAKE_QUEUE == "inline"
        for attempt in range(attempts):
            pipeline = _pipeline(fresh)
            rows = pipeline.pending(ids, limit)
            if not rows:
                return Counts()
            try:
                result = pipeline.import_prepared(pipeline.prepare(rows))
                log.debug("intake batch of %s: %s", len(rows), {k: round(v, 4) for k, v in result.seconds.items()})
                return result.counts
            except Raced:
                _cached[0] = None
                if attempt == attempts - 1:
                    raise
        return Counts()


def waiting() -> int:
    """How many received reports wait for the pipeline."""
    return Report.objects.filter(duplicate=PENDING).count()


CHECKPOINT_SECONDS = 1.0


def checkpoint() -> None:
    """SQLite: copy the write-ahead log back into the database file now.

    Otherwise the web request whose commit crosses ``wal_autocheckpoint``
    (settings) does it, and waits for it. ``PASSIVE`` blocks neither readers
    nor writers; whatever it cannot copy yet is copied next time."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)")


def run_forever(stop: threading.Event | None = None, *, limit: int = LIVE_BATCH) -> None:
    """The worker's intake loop: process what has arrived, rest briefly when
    nothing has; on SQLite also checkpoint the write-ahead log every second."""
    stop = stop or threading.Event()
    checkpointed = time.monotonic()
    while not stop.is_set():
        close_old_connections()
        if time.monotonic() - checkpointed > CHECKPOINT_SECONDS:
            checkpoint()
            checkpointed = time.monotonic()
        try:
            counts = process_received(limit=limit)
        except Exception:  # keep the loop alive; the batch rolled back and is retried
            log.exception("intake pipeline batch failed")
            _cached[0] = None
            stop.wait(1.0)
            continue
        if counts.rows:
            log.info("intake pipeline: %s", counts.as_dict())
        if counts.rows < limit:
            stop.wait(POLL_SECONDS)
    connection.close()
