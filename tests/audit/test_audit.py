"""The tamper-evident audit chain: `chengyun audit verify` and admin changes."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from chengyun.audit.models import AuditHead, AuditRecord
from chengyun.audit.services import record
from chengyun.org.models import DepartmentKind

from .. import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(db):
    """Six records: #1 … #6."""
    for i in range(1, 7):
        record("test.event", actor="tester", object_type="test.thing", object_id=str(i), data={"n": i, "text": "数据"})
    assert list(AuditRecord.objects.values_list("seq", flat=True)) == [1, 2, 3, 4, 5, 6]
    return AuditRecord.objects.all()


def verify() -> tuple[bool, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit", "verify", stdout=out, stderr=err)
    except CommandError as exc:
        return False, out.getvalue(), err.getvalue() + str(exc)
    return True, out.getvalue(), err.getvalue()


def test_fresh_chain_verifies(chain):
    ok, out, _ = verify()
    assert ok and "audit chain OK: 6 records verified" in out


def test_empty_chain_verifies(db):
    ok, out, _ = verify()
    assert ok and "0 records" in out


def test_real_activity_verifies(world, admin_user):
    case = f.make_case(category=world.categories["0101"], by=admin_user)
    f.drive_to(case, "rated", by=admin_user)
    ok, out, _ = verify()
    assert ok and AuditRecord.objects.filter(object_type="cases.case").count() >= 7, out


def test_edited_record_is_named(chain):
    AuditRecord.objects.filter(seq=3).update(data={"n": 300, "text": "数据"})
    ok, _, err = verify()
    assert not ok
    assert "record #3: edited" in err
    assert "record #2" not in err and "record #4" not in err
    assert "BROKEN: 1 problem(s) in 6 records" in err


def test_edited_actor_or_time_is_named(chain):
    from datetime import timedelta

    rec = AuditRecord.objects.get(seq=5)
    AuditRecord.objects.filter(seq=5).update(actor="someone-else")
    AuditRecord.objects.filter(seq=2).update(at=rec.at + timedelta(seconds=1))
    ok, _, err = verify()
    assert not ok and "record #2: edited" in err and "record #5: edited" in err


def test_deleted_middle_record_is_named(chain):
    with pytest.raises(PermissionError):
        AuditRecord.objects.get(seq=4).delete()  # the model refuses …
    deleted, _ = AuditRecord.objects.filter(seq=4).delete()  # … a bulk delete does not
    assert deleted == 1 and AuditRecord.objects.count() == 5
    ok, _, err = verify()
    assert not ok
    assert "record #5: deleted" in err and "#4..#4 are missing" in err


def test_deleted_last_record_is_noticed_through_the_head(chain):
    AuditRecord.objects.filter(seq=6).delete()
    ok, _, err = verify()
    assert not ok and "chain ends at #5 but its head says #6" in err


def test_reordered_records_are_named(chain):
    # Swap the sequence numbers of #2 and #3 (through a free number: seq is unique).
    with connection.cursor() as cursor:
        table = AuditRecord._meta.db_table
        cursor.execute(f"UPDATE {table} SET seq = %s WHERE seq = %s", [1_000_000, 2])
        cursor.execute(f"UPDATE {table} SET seq = %s WHERE seq = %s", [2, 3])
        cursor.execute(f"UPDATE {table} SET seq = %s WHERE seq = %s", [3, 1_000_000])
    assert list(AuditRecord.objects.values_list("object_id", flat=True)) == ["1", "3", "2", "4", "5", "6"]
    ok, _, err = verify()
    assert not ok
    assert "record #2: reordered" in err or "record #2: edited" in err
    assert "record #3" in err
    assert "record #1" not in err and "record #5" not in err


def test_rewritten_record_with_a_fresh_hash_breaks_the_next_link(chain):
    """Someone recomputes the hash of an edited record: the next record's link still breaks."""
    from chengyun.audit.services import compute_hash

    rec = AuditRecord.objects.get(seq=3)
    data = {"n": 333, "text": "数据"}
    digest = compute_hash(seq=3, at=rec.at, actor=rec.actor, action=rec.action, object_type=rec.object_type,
                          object_id=rec.object_id, data=data, prev_hash=rec.prev_hash)
    AuditRecord.objects.filter(seq=3).update(data=data, hash=digest)
    ok, _, err = verify()
    assert not ok and "record #4: reordered" in err and "record #3" not in err


def test_records_are_append_only(chain):
    rec = AuditRecord.objects.get(seq=1)
    rec.actor = "mallory"
    with pytest.raises(PermissionError):
        rec.save()
    assert AuditRecord.objects.get(seq=1).actor == "tester"


def test_audit_tail(chain):
    out = io.StringIO()
    call_command("audit", "tail", "-n", "2", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("#5 ") and lines[1].startswith("#6 ")
    assert "tester test.event test.thing:6" in lines[1]


# --------------------------------------------------------------------------- Django admin


def test_admin_add_and_change_are_audited(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/admin/org/departmentkind/add/", {"kind": "parks", "name": "园林", "name_en": "Parks"})
    assert response.status_code == 302, response.content[:2000]
    kind = DepartmentKind.objects.get(kind="parks")

    added = AuditRecord.objects.get(action="admin.add")
    assert (added.actor, added.object_type, added.object_id) == ("root", "org.departmentkind", str(kind.pk))
    assert added.data["repr"] == str(kind)

    response = client.post(f"/admin/org/departmentkind/{kind.pk}/change/",
                           {"kind": "parks", "name": "园林绿化", "name_en": "Parks and green"})
    assert response.status_code == 302
    changed = AuditRecord.objects.get(action="admin.change")
    assert (changed.actor, changed.object_id) == ("root", str(kind.pk))
    assert "name" in changed.data["message"].lower()
    assert changed.seq == added.seq + 1

    ok, _, _ = verify()
    assert ok


def test_admin_delete_is_audited(client, admin_user):
    kind = f.make_department_kind(kind="temporary")
    client.force_login(admin_user)
    response = client.post(f"/admin/org/departmentkind/{kind.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not DepartmentKind.objects.filter(pk=kind.pk).exists()
    rec = AuditRecord.objects.get(action="admin.delete")
    assert (rec.object_type, rec.object_id) == ("org.departmentkind", str(kind.pk))


def test_admin_changes_do_not_rewrite_history(client, admin_user, chain):
    head_before = AuditHead.objects.get(id=1)
    client.force_login(admin_user)
    client.post("/admin/org/departmentkind/add/", {"kind": "fire", "name": "消防", "name_en": "Fire"})
    assert AuditHead.objects.get(id=1).seq == head_before.seq + 1
    assert AuditRecord.objects.get(seq=7).prev_hash == head_before.hash


def test_admin_bulk_delete_action_is_audited(client, admin_user):
    kinds = [f.make_department_kind(kind="a"), f.make_department_kind(kind="b")]
    client.force_login(admin_user)
    response = client.post("/admin/org/departmentkind/", {
        "action": "delete_selected", "_selected_action": [k.pk for k in kinds], "post": "yes",
    })
    assert response.status_code == 302 and not DepartmentKind.objects.exists()
    assert AuditRecord.objects.filter(action="admin.delete").count() == 2
