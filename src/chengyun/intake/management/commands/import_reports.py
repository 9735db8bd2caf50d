"""``chengyun import-reports FILE``: bulk import of reports from a CSV or JSON
Lines file (history migration, other hotline systems).

Columns are found by name: our field name, else the first of the usual
headers of hotline exports that the file has, else ``--map field=column``:

=============  ==========================================================
field          also found under
=============  ==========================================================
description    诉求内容, 描述, 问题描述, 内容
title          标题, 诉求标题 (default: the description's first line)
category       分类, 事项, 事项分类, 诉求分类 (a code, or a category's
               Chinese or English name)
lon, lat       lng/longitude, 经度; latitude, 纬度 (WGS84)
address        地址, 事发地址, 诉求地址
received_at    受理时间, 来电时间, 时间 (ISO 8601, 2024/5/1 8:00,
               2024年5月1日 8时0分; without a zone: the city's time;
               empty: the time of the import, as for a live feed)
channel        渠道, 来源渠道 (default: --channel, hotline; also the words of
               12345 exports: 12345热线, 热线, 电话, 网站, 微信, 网格员 …)
external_id    id, 工单编号, 工单号, 编号 (the key of idempotency)
phone, name    来电号码, 联系电话, 电话; 联系人, 姓名
email          邮箱, 电子邮箱
status         状态, 办理状态: open (empty, 未办结, 办理中 …) or closed
               (已办结, 办结, 已结案 …); closed rows are imported closed
closed_at      办结时间, 结案时间 (default: received_at)
=============  ==========================================================

Rows that cannot be imported are written, with the reason naming the column
as the file names it, to ``FILE.refused.csv`` (row number, line, column,
reason, then the row as read); so is a row whose id an earlier row of the
file has. The import commits in batches and keeps a checkpoint
(``FILE.progress.json``: the file's size and the SHA-256 of its first MB, the
last committed row and byte offset; ``FILE.progress.keys``: the committed
rows' key hashes, to refuse a repeat of a row from before a resume) after
each one, so after Ctrl+C or a crash the same command continues after the
last committed batch; rows already
imported (same source and ``external_id``, or without an id the same row
content) are skipped in any case. ``--restart`` ignores the checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from tqdm import tqdm

from chengyun.cases.models import Channel
from chengyun.clock import now
from chengyun.intake.bulk import BATCH_SIZE, FIELDS, BulkImporter, Counts, RowCleaner, RowRefused

# Our field -> the column names tried, in order, when --map does not name one.
HEADERS = {
    "description": ["description", "诉求内容", "描述", "问题描述", "内容"],
    "title": ["title", "标题", "诉求标题"],
    "category": ["category", "分类", "事项", "事项分类", "诉求分类"],
    "lon": ["lon", "lng", "longitude", "经度"],
    "lat": ["lat", "latitude", "纬度"],
    "address": ["address", "地址", "事发地址", "诉求地址"],
    "received_at": ["received_at", "受理时间", "来电时间", "时间"],
    "channel": ["channel", "渠道", "来源渠道"],
    "external_id": ["external_id", "id", "工单编号", "工单号", "编号"],
    "phone": ["phone", "来电号码", "联系电话", "电话"],
    "name": ["name", "联系人", "姓名"],
    "email": ["email", "邮箱", "电子邮箱"],
    "status": ["status", "状态", "办理状态"],
    "closed_at": ["closed_at", "办结时间", "结案时间"],
}
HEAD_BYTES = 1024 * 1024
CHECKPOINT_VERSION = 1
KEY_PAIR = np.dtype([("key", "<u8"), ("row", "<i8")])  # a row's key hash and its row number, 16 bytes


@contextlib.contextmanager
def _one_import_at_a_time(path: Path):
    """Hold ``FILE.progress.lock`` while importing ``FILE``: a second run on the same
    file (a "resume" started while the first still runs) would read the checkpoint the
    first is rewriting. The lock is the operating system's (``flock``): a run that
    dies releases it, so there is never a stale lock to remove by hand."""
    lock_path = Path(f"{path}.progress.lock")
    while True:
        lock = lock_path.open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = lock.read().strip() or "?"
            lock.close()
            raise CommandError(_("Another import of %(path)s is running (process %(pid)s). Wait for it to finish "
                                 "or stop it, then run the same command again to continue.")
                               % {"path": path, "pid": pid}) from None
        # A run that just finished removes the file: a lock on the file it removed
        # would not keep out a third run, which makes a new one. Lock the one there.
        try:
            if os.fstat(lock.fileno()).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        lock.close()
    with lock:
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
            lock_path.unlink(missing_ok=True)  # finished: nothing left to resume
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _head_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()


class _Lines:
    """Decoded lines of a file opened in binary, with the byte offset after
    the last line handed out (csv.reader pulls exactly the lines of a record)."""

    def __init__(self, f, encoding: str, offset: int, lines: int = 0) -> None:
        self.f, self.encoding, self.offset, self.lines = f, encoding, offset, lines
        # Until a row has been read whole, a line that does not decode means the
        # wrong encoding (stop and say so); after that, a bad line refuses its row.
        self.strict = True
        self.bad: set[int] = set()  # numbers of lines that did not decode
        f.seek(offset)

    @property
    def encoding_name(self) -> str:
        return "UTF-8" if self.encoding == "utf-8-sig" else self.encoding

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self.f.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.lines += 1
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            if self.strict:
                raise CommandError(_("The file is not %(encoding)s (line %(line)s, near byte %(offset)s); convert it "
                                     "(for example iconv -f GBK -t UTF-8) or give --encoding.")
                                   % {"encoding": self.encoding_name, "line": self.lines,
                                      "offset": self.offset - len(raw)}) from None
            self.bad.add(self.lines)
            return raw.decode(self.encoding, errors="replace")

    def refusal(self, first: int) -> RowRefused | None:
        """Why the row on lines ``first``.. (to the last read) cannot be imported, if a line did not decode."""
        bad = [n for n in range(first, self.lines + 1) if n in self.bad]
        if not bad:
            return None
        return RowRefused("record", _("Line %(line)s is not %(encoding)s: some of its bytes are not text in that "
                                      "encoding.") % {"line": bad[0], "encoding": self.encoding_name})


class _KeysSeen:
    """The key of every row taken so far, to refuse a repeat and name the row it
    repeats: 64-bit BLAKE2b hashes in sorted arrays, 16 bytes a row (a dict took
    about 100), plus the rows read since the last commit in a dict. The committed
    ones are appended to ``FILE.progress.keys`` beside the checkpoint, which records
    its length: a resumed import still knows the rows before it. Two different keys
    with one hash would refuse a row as a repeat; for a million rows the chance is
    about one in 30 million."""

    def __init__(self, path: Path, length: int) -> None:
        self.path = path
        self.lost = False  # the file the checkpoint names is gone or short: earlier rows unknown
        try:
            pairs = np.fromfile(path, dtype=KEY_PAIR, count=length // KEY_PAIR.itemsize) if length else None
        except OSError:
            pairs = None
        if pairs is None or len(pairs) * KEY_PAIR.itemsize != length:
            self.lost = length > 0
            pairs, length = np.empty(0, dtype=KEY_PAIR), 0
        order = np.argsort(pairs["key"], kind="stable")
        self.keys, self.rows, self.length = pairs["key"][order], pairs["row"][order], length
        self.pending: dict[int, int] = {}  # hash -> row, in the order read

    @staticmethod
    def hash(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")

    def first(self, key: str, row: int) -> int:
        """The row that first had ``key``: ``row`` itself unless it repeats one."""
        h = self.hash(key)
        seen = self.pending.setdefault(h, row)
        if seen != row or not len(self.keys):
            return seen
        i = int(self.keys.searchsorted(np.uint64(h)))  # a plain int would compare as objects: 300 µs
        if i < len(self.keys) and int(self.keys[i]) == h:
            del self.pending[h]
            return int(self.rows[i])
        return row

    def commit(self, upto: int) -> int:
        """Rows up to ``upto`` are committed: their keys join the arrays and the file
        (synced before the checkpoint that counts them is written). Returns the
        file's new length, for the checkpoint."""
        done = [(h, r) for h, r in self.pending.items() if r <= upto]
        if not done:
            return self.length
        for h, _r in done:
            del self.pending[h]
        pairs = np.array(done, dtype=KEY_PAIR)
        with self.path.open("r+b" if self.path.exists() else "wb") as f:
            f.truncate(self.length)  # what a crash wrote after the last checkpoint
            f.seek(self.length)
            f.write(pairs.tobytes())
            f.flush()
            os.fsync(f.fileno())
        self.length += len(pairs) * KEY_PAIR.itemsize
        # Merge in one pass (a full sort each batch would grow with the square of the rows).
        pairs.sort(order="key")
        at = self.keys.searchsorted(pairs["key"])
        self.keys, self.rows = np.insert(self.keys, at, pairs["key"]), np.insert(self.rows, at, pairs["row"])
        return self.length


class _Refused:
    """The refused rows, as CSV (row, line, field, reason, then the row itself)."""

    def __init__(self, path: Path, keep_bytes: int, columns: list[str]) -> None:
        self.path, self.columns, self.count = path, columns, 0
        self.f = None
        if keep_bytes and path.exists():
            self.f = path.open("r+b")
            self.f.truncate(keep_bytes)
            self.f.seek(keep_bytes)
        elif path.exists():
            path.unlink()

    def write(self, row: int, line: int, field: str, reason: str, values: list[str]) -> None:
        if self.f is None:
            self.f = self.path.open("wb")
            self.f.write(b"\xef\xbb\xbf")  # a BOM, so that spreadsheet programs read UTF-8
            self._put(["row", "line", "field", "reason", *self.columns])
        self._put([row, line, field, reason, *values])
        self.count += 1

    def _put(self, values: list) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerow(values)
        self.f.write(buf.getvalue().encode("utf-8"))

    def size(self) -> int:
        if self.f is None:
            return 0
        self.f.flush()
        os.fsync(self.f.fileno())
        return self.f.tell()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


class Command(BaseCommand):
    help = (
        gettext_noop("Import reports from a CSV (UTF-8, BOM tolerated) or JSON Lines file through the bulk "
                     "intake pipeline (classify, locate, duplicate check, route), in batches of one "
                     "transaction each.")
        + " Columns, by our name or the usual headers of hotline exports: "
        + "; ".join(f"{field} ({', '.join(names[1:])})" for field, names in HEADERS.items())
        + ". Or name them with --map field=column. Times without a zone are the city's time. Refused rows go "
        "to FILE.refused.csv with the reason naming the field. A rerun continues after the last committed batch "
        "(FILE.progress.json); rows already imported are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name (.csv, .jsonl)")
        parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                            help="take FIELD from COLUMN (repeatable); fields: " + ", ".join(FIELDS))
        parser.add_argument("--channel", default=Channel.HOTLINE, choices=Channel.values,
                            help="channel of rows without one (default: hotline)")
        parser.add_argument("--source", help="the sender's name, with external_id the key of idempotency "
                                             "(default: import:<file name>)")
        parser.add_argument("--refused", help="where refused rows go (default: FILE.refused.csv)")
        parser.add_argument("--encoding", default="utf-8", help="text encoding of the file (default: utf-8)")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="rows per transaction")
        parser.add_argument("--restart", action="store_true", help="ignore the checkpoint and read from the start")
        parser.add_argument("--warnings", action="store_true",
                            help="raise cluster warnings (智能发现) for rows recent enough that their burst may "
                                 "still be going on (a live feed from another hotline system); history raises none")

    # ------------------------------------------------------------------ setup

    def handle(self, *args, **o):
        path = Path(o["file"])
        if not path.is_file():
            raise CommandError(_("No such file: %(path)s") % {"path": path})
        fmt = o["format"] or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(
            path.suffix.lower())
        if fmt is None:
            raise CommandError(_("Cannot tell the format from the file name; give --format csv or --format jsonl."))
        if o["batch_size"] < 1:
            raise CommandError(_("--batch-size must be at least 1."))
        mapping = self.parse_map(o["map"])
        source = (o["source"] or f"import:{path.name}")[:80]
        encoding = "utf-8-sig" if o["encoding"].lower().replace("_", "-") in ("utf-8", "utf8") else o["encoding"]
        self.checkpoint_path = Path(f"{path}.progress.json")
        self.keys_path = Path(f"{path}.progress.keys")
        refused_path = Path(o["refused"]) if o["refused"] else Path(f"{path}.refused.csv")
        with _one_import_at_a_time(path):
            self.run_import(path, fmt, mapping, source, encoding, refused_path, o)

    def run_import(self, path: Path, fmt: str, mapping: dict, source: str, encoding: str, refused_path: Path,
                   o: dict) -> None:
        state = self.load_checkpoint(path, source, restart=o["restart"])

        importer = BulkImporter(source=source, warnings=o["warnings"])
        totals = Counts(**state["counts"])
        self.read, self.refused_total = state["read"], state["refused"]
        self.keys_seen = _KeysSeen(self.keys_path, state["keys_bytes"])
        if self.keys_seen.lost:
            self.stderr.write(_("%(path)s is missing or short: a repeat of a row from before the checkpoint will "
                                "count as already imported, not be refused.") % {"path": self.keys_path})
        with path.open("rb") as f:
            if fmt == "csv":
                columns, start, header_lines = self.csv_header(f, encoding)
                if state["offset"] < start:
                    state["offset"], state["line"] = start, header_lines
                lines = _Lines(f, encoding, state["offset"], state["line"])
                records = self.csv_records(lines, state["row"], columns, mapping)
                names = self.columns_for(columns, mapping)
            else:
                columns = ["record"]
                lines = _Lines(f, encoding, state["offset"], state["line"])
                records = self.jsonl_records(lines, state["row"], mapping)
                names = mapping
            if state["row"]:
                lines.strict = False  # resumed: rows of this file have been read whole before
            # Reasons name the file's own columns (受理时间, not received_at).
            cleaner = RowCleaner(channel=o["channel"], names=names)
            refused = _Refused(refused_path, state["refused_bytes"], columns)
            # The real stderr: Django's wraps each write in a style and a line end, which
            # turns the bar's redrawing into a line per update.
            progress = tqdm(total=path.stat().st_size, initial=state["offset"], unit="B", unit_scale=True,
                            desc=path.name, file=sys.stderr, disable=None)
            batches = self.batches(records, cleaner, refused, lines, progress, o["batch_size"])
            try:
                for result, cut in importer.import_batches(batches):
                    totals.add(result.counts)
                    self.checkpoint(cut, totals, path, source)
            except KeyboardInterrupt:
                raise CommandError(_("Interrupted. Everything up to row %(row)s is imported; run the same command "
                                     "again to continue.") % {"row": self.committed_row}, returncode=130) from None
            finally:
                progress.close()
                refused.close()
        self.checkpoint_path.unlink(missing_ok=True)
        self.keys_path.unlink(missing_ok=True)
        self.summary(totals, refused_path if self.refused_total else None,
                     warnings=len(importer.warnings_seen) if o["warnings"] else None,
                     unchecked=importer.warnings_failed)

    def batches(self, records, cleaner: RowCleaner, refused: _Refused, lines: _Lines, progress,
                size: int) -> Iterator[tuple[list, dict]]:
        """Clean rows into batches; each comes with where the file stands after
        it (what the checkpoint needs once the batch is committed)."""
        batch, cut = [], None
        for row_no, line_no, raw, values, end in records:
            self.read += 1
            try:
                if isinstance(raw, RowRefused):
                    raise raw
                row = cleaner.clean(raw, row_no)
                # A key twice in one file: the first row (in the file's order) is the report.
                first = self.keys_seen.first(row.key, row_no)
                if first != row_no:
                    if row.external_id:
                        raise RowRefused("external_id", _("Row %(row)s of this file has the same id “%(id)s”: one "
                                                          "report per id.") % {"row": first, "id": row.external_id})
                    raise RowRefused("record", _("The same report as row %(row)s of this file.") % {"row": first})
                batch.append(row)
            except RowRefused as exc:
                refused.write(row_no, line_no, cleaner.name(exc.field), exc.message, values)
                self.refused_total += 1
            cut = {"row": row_no, "line": lines.lines, "offset": end}
            progress.update(end - progress.n)
            if len(batch) >= size:
                yield batch, {**cut, "refused_bytes": refused.size(), "read": self.read, "refused": self.refused_total}
                batch = []
        if batch:
            yield batch, {**cut, "refused_bytes": refused.size(), "read": self.read, "refused": self.refused_total}

    def parse_map(self, items: list[str]) -> dict[str, str]:
        mapping = {}
        for item in items:
            field, sep, column = item.partition("=")
            field, column = field.strip(), column.strip()
            if not sep or not column:
                raise CommandError(_("--map takes FIELD=COLUMN, not “%(item)s”.") % {"item": item})
            if field not in FIELDS:
                raise CommandError(_("Unknown field “%(field)s” in --map; fields: %(fields)s.")
                                   % {"field": field, "fields": ", ".join(FIELDS)})
            mapping[field] = column
        return mapping

    # ------------------------------------------------------------------ checkpoint

    def load_checkpoint(self, path: Path, source: str, *, restart: bool) -> dict:
        fresh = {"row": 0, "line": 0, "offset": 0, "refused_bytes": 0, "counts": {}, "read": 0, "refused": 0,
                 "keys_bytes": 0}
        self.size, self.head = path.stat().st_size, _head_digest(path)
        self.committed_row = 0
        if restart or not self.checkpoint_path.exists():
            return fresh
        try:
            state = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.stderr.write(_("The checkpoint %(path)s cannot be read; starting from the beginning.")
                              % {"path": self.checkpoint_path})
            return fresh
        if (state.get("version") != CHECKPOINT_VERSION or state.get("size") != self.size
                or state.get("head_sha256") != self.head or state.get("source") != source):
            self.stderr.write(_("The file or the source changed since the checkpoint was written; starting from the "
                                "beginning (rows already imported are skipped)."))
            return fresh
        self.committed_row = state["row"]
        self.stdout.write(_("Continuing after row %(row)s (checkpoint of %(at)s).") % {"row": state["row"],
                                                                                    "at": state["updated_at"]})
        return {**fresh, **{k: state[k] for k in fresh if k in state}}

    def checkpoint(self, cut: dict, totals: Counts, path: Path, source: str) -> None:
        """After a committed batch: where to continue from (written atomically)."""
        self.committed_row = cut["row"]
        state = {
            "version": CHECKPOINT_VERSION, "file": str(path.resolve()), "size": self.size, "head_sha256": self.head,
            "source": source, **cut, "keys_bytes": self.keys_seen.commit(cut["row"]), "counts": totals.as_dict(), "updated_at": now().isoformat(),
        }
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.checkpoint_path)

    # ------------------------------------------------------------------ reading

    def csv_header(self, f, encoding: str) -> tuple[list[str], int, int]:
        """(columns, byte offset after the header, lines it takes)."""
        lines = _Lines(f, encoding, 0)
        header = next(csv.reader(lines), None)
        if not header:
            raise CommandError(_("The file is empty: no header row."))
        return [h.strip() for h in header], lines.offset, lines.lines

    def columns_for(self, available, mapping: dict[str, str]) -> dict[str, str]:
        """Our field -> the column holding it."""
        found = {}
        for field in FIELDS:
            if field in mapping:
                found[field] = mapping[field]
                continue
            for name in HEADERS[field]:
                if name in available:
                    found[field] = name
                    break
        return found

    def csv_records(self, lines: _Lines, row: int, columns: list[str], mapping: dict[str, str]) -> Iterator[tuple]:
        """(row number, first line, our fields, the values as read, byte offset after the row)."""
        missing = [c for c in mapping.values() if c not in columns]
        if missing:
            raise CommandError(_("No column “%(column)s” in the file; its columns: %(columns)s.")
                               % {"column": missing[0], "columns": ", ".join(columns)})
        found = self.columns_for(columns, mapping)
        if "description" not in found and "title" not in found:
            raise CommandError(_("No column for the description; name it with --map description=COLUMN."))
        where = {field: columns.index(column) for field, column in found.items()}
        before = lines.lines
        for values in csv.reader(lines):
            first, before = before + 1, lines.lines
            if not any(v.strip() for v in values):
                continue
            row += 1
            raw = lines.refusal(first)
            if raw is None and (len(values) < len(columns) or any(v.strip() for v in values[len(columns):])):
                raw = RowRefused("record", _(
                    "The row has %(n)s values and the header %(m)s columns: a value is missing, or there is a "
                    "separator too many (a comma in a text without quotes?).") % {"n": len(values), "m": len(columns)})
            if raw is None:
                raw = {field: values[i] for field, i in where.items()}
                lines.strict = False
            yield row, first, raw, values, lines.offset

    def jsonl_records(self, lines: _Lines, row: int, mapping: dict[str, str]) -> Iterator[tuple]:
        checked = False
        self.keys_unseen = set(mapping.values())  # --map keys no record has had (said in the summary)
        for text in lines:
            if not text.strip():
                continue
            row += 1
            obj = lines.refusal(lines.lines)
            if obj is None:
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    obj = RowRefused("record", _("Not JSON: %(error)s") % {"error": exc})
            if not isinstance(obj, dict | RowRefused):
                obj = RowRefused("record", _("Each line must be a JSON object."))
            if isinstance(obj, dict) and not checked:
                # As a CSV's header: the key --map names for the description (which every
                # record needs) must be in the first record; other keys may be optional.
                missing = [mapping[k] for k in ("description", "title") if k in mapping and mapping[k] not in obj]
                if missing and not any(k in mapping and mapping[k] in obj for k in ("description", "title")):
                    raise CommandError(_("No key “%(column)s” in the first record (row %(row)s); its keys: "
                                         "%(columns)s.") % {"column": missing[0], "row": row,
                                                           "columns": ", ".join(obj)})
                checked = True
            raw = obj
            if isinstance(obj, dict):
                self.keys_unseen.difference_update(obj)
                columns = self.columns_for(obj, mapping)
                raw = {field: obj.get(column) for field, column in columns.items()}
                nested = [field for field, v in raw.items() if isinstance(v, dict | list)]
                if nested:
                    raw = RowRefused(nested[0], _("%(field)s is a JSON object or list; it must be a text, number or "
                                                 "null.") % {"field": columns[nested[0]]})
                else:
                    lines.strict = False
            yield row, lines.lines, raw, [text.strip()], lines.offset

    # ------------------------------------------------------------------ report

    def summary(self, totals: Counts, refused_path: Path | None, *, warnings: int | None = None,
                unchecked: list | None = None) -> None:
        w = self.stdout.write
        w(_("Rows read: %(n)s") % {"n": self.read})
        w(_("Taken as new cases: %(n)s (routed to a department: %(routed)s; closed in the sending system: %(closed)s; "
            "possible duplicates for a dispatcher to decide: %(asked)s)")
          % {"n": totals.cases, "routed": totals.routed, "closed": totals.closed, "asked": totals.asked})
        w(_("Attached to an open case as duplicates: %(n)s") % {"n": totals.attached})
        w(_("Already imported: %(n)s") % {"n": totals.already})
        if warnings is not None:
            w(_("Cluster warnings raised or joined: %(n)s") % {"n": warnings})
        if unchecked:
            self.stderr.write(_("The cluster check failed for %(n)s imported rows (%(error)s); they are imported "
                                "but were not checked for warnings.")
                              % {"n": sum(n for n, _e in unchecked), "error": unchecked[-1][1]})
        if refused_path is not None:
            w(_("Refused: %(n)s (see %(path)s)") % {"n": self.refused_total, "path": refused_path})
        else:
            w(_("Refused: %(n)s") % {"n": self.refused_total})
        for key in sorted(getattr(self, "keys_unseen", ())):
            self.stderr.write(_("No record had the key “%(column)s” that --map names.") % {"column": key})
