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


def record(action: str, *, actor=None, obj=None, object_type: str = "", object_id="", data=None, at=None) -> AuditRecord:
    """Append one record. Call inside the transaction that makes the change."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
    at = (at or now()).astimezone(UTC)  # hash the same form the database gives back
    data = _canonical(data)
    actor = actor_name(actor)
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
        seq = head.seq + 1
        digest = compute_hash(
            seq=seq, at=at, actor=actor, action=action, object_type=object_type,
            object_id=str(object_id), data=data, prev_hash=head.hash,
        )
        rec = AuditRecord.objects.create(
            seq=seq, at=at, actor=actor, action=action, object_type=object_type,
            object_id=str(object_id), data=data, prev_hash=head.hash, hash=digest,
        )
        AuditHead.objects.filter(id=1).update(seq=seq, hash=digest)
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
