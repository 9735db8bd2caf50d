"""Append to and verify the audit chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from chengyun.clock import now

from .models import GENESIS_HASH, AuditHead, AuditRecord


def actor_name(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return actor.get_username()


def _canonical(data) -> dict:
    # Round-trip through JSON so the stored form and the hashed form agree.
    return json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder, ensure_ascii=False))


def compute_hash(
    *, seq: int, at: datetime, actor: str, action: str, object_type: str, object_id: str, data, prev_hash: str
) -> str:
    payload = json.dumps(
        [seq, at.astimezone(UTC).isoformat(timespec="microseconds"), actor, action, object_type, str(object_id), data, prev_hash],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


_RECORD_COLUMNS = ("seq", "at", "actor", "action", "object_type", "object_id", "data", "prev_hash", "hash")


@dataclass(frozen=True)
class _Statements:
    """The three statements of an append, as SQL for one database vendor."""

    lock_head: str
    insert: str
    move_head: str


_statements: dict[str, _Statements] = {}


def _statements_for(connection) -> _Statements:
    """Every change in the city appends a record, so the append skips the
    ORM: its three statements cost about ten times more to build through
    querysets than to run. The SQL is written once per database vendor from
    the models' own table and column names."""
    found = _statements.get(connection.vendor)
    if found is None:
        qn = connection.ops.quote_name
        head = qn(AuditHead._meta.db_table)
        table = qn(AuditRecord._meta.db_table)
        columns = ", ".join(qn(AuditRecord._meta.get_field(c).column) for c in _RECORD_COLUMNS)
        for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: the write lock
        found = _statements[connection.vendor] = _Statements(
            lock_head=f"SELECT {qn('seq')}, {qn('hash')} FROM {head} WHERE {qn('id')} = %s{for_update}",
            insert=(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_RECORD_COLUMNS))}) "
                    f"RETURNING {qn(AuditRecord._meta.pk.column)}"),
            move_head=f"UPDATE {head} SET {qn('seq')} = %s, {qn('hash')} = %s WHERE {qn('id')} = %s",
        )
    return found


def record(action: str, *, actor=None, obj=None, object_type: str = "", object_id="", data=None, at=None) -> AuditRecord:
    """Append one record. Call inside the transaction that makes the change.

    The chain's head row is locked (``SELECT … FOR UPDATE``; on SQLite the
    transaction's write lock), so appends are serialised and every record
    links to the one before it."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    at = (at or now()).astimezone(UTC)  # hash the same form the database gives back
    rec = AuditRecord(at=at, actor=actor_name(actor), action=action, object_type=object_type,
                      object_id=str(object_id), data=_canonical(data))
    connection = transaction.get_connection()
    sql = _statements_for(connection)
    # Inside the caller's transaction (the usual case) no savepoint of its own:
    # a failure here fails the change it records, which is what should happen.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql.lock_head, [1])
        head = cursor.fetchone()
        if head is None:  # the first record ever
            AuditHead.objects.get_or_create(id=1)
            cursor.execute(sql.lock_head, [1])
            head = cursor.fetchone()
        rec.seq, rec.prev_hash = head[0] + 1, head[1]
        rec.hash = compute_hash(
            seq=rec.seq, at=at, actor=rec.actor, action=action, object_type=object_type,
            object_id=rec.object_id, data=rec.data, prev_hash=rec.prev_hash,
        )
        fields = [AuditRecord._meta.get_field(c) for c in _RECORD_COLUMNS]
        cursor.execute(sql.insert, [f.get_db_prep_save(getattr(rec, f.attname), connection) for f in fields])
        rec.pk = cursor.fetchone()[0]
        cursor.execute(sql.move_head, [rec.seq, rec.hash, 1])
    rec._state.adding, rec._state.db = False, connection.alias
    return rec


@dataclass
class Problem:
    seq: int | None
    kind: str  # edited | deleted | reordered | head
    detail: str

    def __str__(self) -> str:
        where = f"record #{self.seq}" if self.seq is not None else "chain"
        return f"{where}: {self.kind}: {self.detail}"


def verify_chain(batch_size: int = 5000) -> Iterator[Problem]:
    """Walk the chain in sequence order and yield every break found."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    last_seq = 0
    for rec in AuditRecord.objects.order_by("seq").iterator(chunk_size=batch_size):
        if rec.seq != expected_seq:
            yield Problem(
                rec.seq, "deleted",
                f"records #{expected_seq}..#{rec.seq - 1} are missing" if rec.seq > expected_seq
                else f"unexpected sequence {rec.seq}",
            )
        digest = compute_hash(
            seq=rec.seq, at=rec.at, actor=rec.actor, action=rec.action, object_type=rec.object_type,
            object_id=rec.object_id, data=rec.data, prev_hash=rec.prev_hash,
        )
        if digest != rec.hash:
            yield Problem(rec.seq, "edited", "content does not match its hash")
        if rec.prev_hash != expected_prev and rec.seq == expected_seq:
            yield Problem(rec.seq, "reordered", "previous-hash link does not match the record before it")
        expected_prev = rec.hash
        expected_seq = rec.seq + 1
        last_seq = rec.seq
    head = AuditHead.objects.filter(id=1).first()
    if head is not None and (head.seq != last_seq or head.hash != expected_prev):
        yield Problem(
            None, "deleted",
            f"chain ends at #{last_seq} but its head says #{head.seq}: the last records were removed or the head altered",
        )
