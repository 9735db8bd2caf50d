"""Writes of the Open311 room: API keys (made, revoked) and partners' updates.

Reports themselves are taken in by :func:`chengyun.intake.services.submit`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from chengyun.audit.services import actor_name, record
from chengyun.cases import services as case_services
from chengyun.cases.errors import CaseInvalid
from chengyun.clock import now
from chengyun.intake.models import Report

from .models import ApiKey, PartnerUpdate

KEY_PREFIX_CHARS = 8
MAX_UPDATE_TEXT = 4000
# Status words a partner may send: GeoReport's open/closed and the states of
# the FixMyStreet extension (compared without regard to case).
PARTNER_STATUSES = frozenset({
    "open", "closed", "fixed", "investigating", "in_progress", "action_scheduled", "no_further_action",
    "not_councils_responsibility", "duplicate", "internal_referral", "reopen",
})


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# --------------------------------------------------------------------------- API keys


def create_api_key(name: str, *, by, contact_note: str = "") -> tuple[ApiKey, str]:
    """Make a key for partner ``name``. Returns the row and the key itself,
    which is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise CaseInvalid(_("Name the partner."), field="name")
    if len(name) > 120:
        raise CaseInvalid(_("The name is too long (at most 120 characters)."), field="name")
    while True:
        prefix = secrets.token_hex(KEY_PREFIX_CHARS // 2)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    raw = f"{prefix}.{secrets.token_urlsafe(32)}"
    at = now()
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name, prefix=prefix, key_hash=hash_key(raw), contact_note=(contact_note or "").strip(),
            created_at=at, created_by=actor_name(by),
        )
        record("open311.key.create", actor=by, obj=key, at=at, data={"name": name, "prefix": prefix})
    return key, raw


def revoke_api_key(key: ApiKey, *, by) -> ApiKey:
    """Stop a key from working. Revoking a revoked key changes nothing."""
    at = now()
    with transaction.atomic():
        changed = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=at, revoked_by=actor_name(by))
        recent_keys.clear()
        if changed:
            record("open311.key.revoke", actor=by, obj=key, at=at, data={"name": key.name, "prefix": key.prefix})
    key.refresh_from_db(fields=["revoked_at", "revoked_by"])
    return key


class Recent:
    """Lookups a process made in the last ``seconds`` (API keys, services and
    their questions): a partner posting a thousand requests a second should not
    cost a thousand identical queries. Admin changes and revocations take
    effect within that time (at once in the process that made them)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.items: dict = {}
        self.lock = threading.Lock()

    def get(self, key, load):
        t = time.monotonic()
        found = self.items.get(key)
        if found is not None and t - found[1] < self.seconds:
            return found[0]
        value = load()
        with self.lock:
            if len(self.items) > 10_000:  # many distinct keys: start afresh rather than grow
                self.items.clear()
            self.items[key] = (value, t)
        return value

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


RECENT_SECONDS = 5.0
recent_keys = Recent(RECENT_SECONDS)
recent_services = Recent(RECENT_SECONDS)


def clear_recent() -> None:
    recent_keys.clear()
    recent_services.clear()


def authenticate(raw: str | None) -> ApiKey | None:
    """The active key with this value, or ``None`` (a revoked key stops
    working within :data:`RECENT_SECONDS` in every server process)."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 200:
        return None
    digest = hash_key(raw)
    key = recent_keys.get(digest, lambda: ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first())
    at = now()
    if key is not None and (key.last_used_at is None or at - key.last_used_at > timedelta(minutes=1)):
        key.last_used_at = at
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=at)  # at most once a minute: not a write per request
    return key


# --------------------------------------------------------------------------- partners' updates


@dataclass
class PostedUpdate:
    update: PartnerUpdate
    created: bool


def effective_case(report: Report):
    """The case that now handles this report (following merges)."""
    case = report.case
    seen = set()
    while case is not None and case.merged_into_id and case.pk not in seen:
        seen.add(case.pk)
        case = case.merged_into
    return case


def post_update(
    report: Report, *, key: ApiKey, update_id: str, status: str, description: str, updated_at: datetime,
    media_url: str = "",
) -> PostedUpdate:
    """A partner's update for a request: one timeline entry on the case that
    handles the request, audited, once per (key, partner's ``update_id``).

    The case's status does not change: the entry records what the partner
    said; staff act on it through the case's own actions.
    """
    update_id = (update_id or "").strip()
    if not update_id:
        raise CaseInvalid(_("is required."), field="update_id")
    if len(update_id) > 120:
        raise CaseInvalid(_("is too long (at most 120 characters)."), field="update_id")
    status = (status or "").strip().lower()
    if status not in PARTNER_STATUSES:
        raise CaseInvalid(_("must be one of: %(values)s.") % {"values": ", ".join(sorted(PARTNER_STATUSES))},
                          field="status")
    description = (description or "").strip()
    if len(description) > MAX_UPDATE_TEXT:
        raise CaseInvalid(_("is too long (at most %(n)s characters).") % {"n": MAX_UPDATE_TEXT},
                          field="description")
    found = PartnerUpdate.objects.filter(api_key=key, partner_update_id=update_id).first()
    if found is not None:
        return PostedUpdate(found, False)
    case = effective_case(report)
    if case is None:
        raise CaseInvalid(_("this request has no case yet."), field="service_request_id")
    at = now()
    data = {
        "partner": key.name, "api_key": key.pk, "update_id": update_id, "status": status,
        "updated_datetime": updated_at.isoformat(), "service_request_id": report.number, "media_url": media_url,
    }
    try:
        with transaction.atomic():
            entry = case_services._timeline(case, "open311_update", key.actor, at=at, note=description, data=data)
            update = PartnerUpdate.objects.create(
                api_key=key, partner_update_id=update_id, report=report, entry=entry, status=status,
                updated_at=updated_at, received_at=at,
            )
            record("open311.update", actor=key.actor, obj=case, at=at, data={"number": case.number, **data})
    except IntegrityError:
        found = PartnerUpdate.objects.filter(api_key=key, partner_update_id=update_id).first()
        if found is not None:  # the same update, posted twice at once: the other one won
            return PostedUpdate(found, False)
        raise
    return PostedUpdate(update, True)
