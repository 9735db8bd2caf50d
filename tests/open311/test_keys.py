"""API keys: the CLI commands and the admin (made once, shown once, revoked, audited)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from chengyun.audit.models import AuditRecord
from chengyun.open311.models import ApiKey
from chengyun.open311.services import authenticate, hash_key


def create(name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", name, "--contact", "ops@example.org", stdout=out, stderr=err)
    assert name in err.getvalue()
    return out.getvalue().strip()


def test_create_api_key_prints_the_key_and_stores_only_its_hash(db):
    raw = create("Civic App")
    key = ApiKey.objects.get()
    assert raw.startswith(key.prefix + ".")
    assert key.key_hash == hash_key(raw) and raw not in (key.key_hash, key.prefix, key.contact_note)
    assert key.contact_note == "ops@example.org"
    assert authenticate(raw) == key
    assert authenticate(raw[:-1]) is None
    record = AuditRecord.objects.get(action="open311.key.create")
    assert record.actor == "cli" and raw not in str(record.data)


def test_revoke_by_prefix_and_by_name(db):
    first, second, other = create("Civic App"), create("Civic App"), create("Other")
    prefix = first.split(".")[0]
    out = io.StringIO()
    call_command("revoke_api_key", prefix, stdout=out)
    assert prefix in out.getvalue()
    assert authenticate(first) is None and authenticate(second) is not None
    call_command("revoke_api_key", "Civic App", stdout=io.StringIO())
    assert authenticate(second) is None and authenticate(other) is not None
    assert AuditRecord.objects.filter(action="open311.key.revoke").count() == 2
    with pytest.raises(CommandError):
        call_command("revoke_api_key", "Civic App", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_api_key", "  ", stdout=io.StringIO(), stderr=io.StringIO())



def test_a_replacement_key_works_beside_the_old_until_the_old_is_revoked_by_its_prefix(db):
    """Rotating a key the obvious way must not cut the partner off."""
    old = create("Civic App")
    err = io.StringIO()
    call_command("create_api_key", "Civic App", stdout=io.StringIO(), stderr=err)
    old_prefix = old.split(".")[0]
    assert f"chengyun revoke-api-key {old_prefix}" in err.getvalue(), "the new key's output says how to end the old"
    with pytest.raises(CommandError, match="2 active keys"):
        call_command("revoke_api_key", "Civic App", stdout=io.StringIO())
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 2, "nothing revoked by the refused command"
    call_command("revoke_api_key", old_prefix, stdout=io.StringIO())
    assert authenticate(old) is None and ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
    create("Civic App")
    call_command("revoke_api_key", "Civic App", "--all", stdout=io.StringIO())
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()


@pytest.mark.site_middleware  # the admin
def test_admin_shows_a_new_key_once_and_revokes(admin_client):
    r = admin_client.post("/admin/open311/apikey/add/", {"name": "Partner X", "contact_note": "x@example.org"},
                          follow=True)
    assert r.status_code == 200
    key = ApiKey.objects.get()
    shown = re.search(re.escape(key.prefix) + r"\.[A-Za-z0-9_-]+", r.content.decode())
    assert shown, "the key is shown once, right after it is made"
    assert authenticate(shown.group(0)) == key
    assert key.created_by == "root"
    page = admin_client.get(f"/admin/open311/apikey/{key.pk}/change/").content.decode()
    assert shown.group(0) not in page
    admin_client.post("/admin/open311/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == "root"
    assert authenticate(shown.group(0)) is None


@pytest.mark.site_middleware  # the admin
def test_admin_edits_service_attributes(admin_client, world):
    leak = world.categories["0101"]
    form = {"category": leak.pk, "code": "severity", "order": 1, "datatype": "singlevaluelist", "variable": "on",
            "required": "on", "description": "漏水程度", "description_en": "", "datatype_description": "",
            "datatype_description_en": "", "values": "[]"}
    r = admin_client.post("/admin/open311/serviceattribute/add/", form)
    assert r.status_code == 200 and "choices" in r.content.decode(), "a list question without choices is refused"
    form["values"] = '[{"key": "drip", "name": "滴漏"}]'
    r = admin_client.post("/admin/open311/serviceattribute/add/", form)
    assert r.status_code == 302
    assert leak.open311_attributes.get().keys() == {"drip"}
