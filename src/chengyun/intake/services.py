"""The intake pipeline: people's channels (portal, hotline, inspectors) and
``/api/v1/reports`` (sensor alarms and department systems, which may set a
priority) go through :func:`submit`; Open311 requests are taken in by
:func:`receive` and processed in batches by the worker.

    validate -> locate -> classify -> store report (claims the idempotency key)
    -> duplicate check -> attach to an open case | new case (+ ask a dispatcher)
    -> route automatically when the category is certain enough -> cluster check

All of it is one transaction: a report is stored with its case, timeline and
audit records, or not at all. The same (source, idempotency key) twice gives
the first report back, never a second one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import translation
from django.utils.translation import gettext as _

from chengyun.areas.locator import in_city
from chengyun.areas.models import Area
from chengyun.areas.services import locate
from chengyun.audit.services import record
from chengyun.cases import services as case_services
from chengyun.cases.errors import CaseForbidden, CaseInvalid
from chengyun.cases.models import Case, Channel, TimelineEntry
from chengyun.cases.workflow import OPEN_STATUSES, CaseStatus
from chengyun.clock import now
from chengyun.org import scope
from chengyun.org.models import Role
from chengyun.taxonomy.models import Category, Priority
from chengyun.taxonomy.services import route

from . import cluster, dedup, notify, numbers
from .classifier import active_model
from .geo import area_from_address
from .models import (
    CategoryCorrection,
    DuplicateOutcome,
    DuplicateSuggestion,
    Report,
    ReporterContact,
    ReportPhoto,
    SuggestionStatus,
)
from .photos import clean_photo

MAX_DESCRIPTION = 4000
SYSTEM_ACTOR = "intake"
CONTACT_FIELDS = ("name", "phone", "email", "device_id", "account_id")
# Digits, with the + ( ) - . and spaces people write them with, and an extension (转801, ext. 801, x801, #801).
PHONE_RE = re.compile(r"^[0-9+()\-.\s]{5,30}(?:\s*(?:转|分机|ext\.?|x|#)\s*\d{1,6})?$", re.IGNORECASE)


@dataclass
class ReportInput:
    channel: str
    description: str = ""
    title: str = ""
    category: Category | str | None = None
    lon: float | None = None
    lat: float | None = None
    address: str = ""
    area: Area | str | None = None  # an area (or its code) chosen by the reporter, used when there is no point
    contact: dict = field(default_factory=dict)
    source: str = ""
    idempotency_key: str = ""
    external_id: str = ""
    attributes: dict = field(default_factory=dict)
    media_url: str = ""
    photos: list[bytes] = field(default_factory=list)
    priority: str | None = None
    self_dispose_note: str = ""  # an inspector closed it on the spot
    generated: bool = False
    # Refuse a report that says nothing of where (a point, an address or an area). Set by
    # the doors for devices and people on the spot; a call may not know, and the platform's
    # own warnings about a computed indicator may have no place.
    place_required: bool = False
    # A case staff say this report repeats (the hotline operator, from the open cases the
    # panel lists): the report joins it, whatever the duplicate check would have found.
    same_as: str = ""


@dataclass
class Submitted:
    report: Report
    created: bool

    @property
    def case(self) -> Case | None:
        return self.report.case


# --------------------------------------------------------------------------- validation


def _category(value) -> Category | None:
    if value is None or value == "":
        return None
    if isinstance(value, Category):
        return value
    code = str(value).strip()
    cat = Category.objects.reportable().filter(code=code).first()
    if cat is None:
        if Category.objects.filter(code=code, active=True).exists():
            raise CaseInvalid(_("“%(code)s” is a group of categories: choose one of the categories in it.")
                              % {"code": code}, field="category")
        raise CaseInvalid(_("Unknown category “%(code)s”.") % {"code": value}, field="category")
    return cat


def _coordinate(value, name: str, label: str, low: float, high: float) -> float | None:
    """``name`` is the field the error names (each door maps it to its own); ``label`` what the message says."""
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CaseInvalid(_("%(field)s must be a number.") % {"field": label}, field=name) from None
    if not math.isfinite(v) or not (low <= v <= high):
        raise CaseInvalid(_("%(field)s must be between %(low)s and %(high)s.") % {"field": label, "low": low,
                                                                                  "high": high}, field=name)
    return v


def report_text(description: str, title: str = "") -> str:
    """The text a report is classified and compared by: its title (by default the
    description's first line), then its description."""
    return f"{title or default_title(description)}\n{description}"


# How a call is opened before it says anything ("您好，我想反映一下，…", "Hello, good
# evening."): left out of a title made from the text, so that the queue, the recent
# calls and a cluster's list say what each is about. The description keeps them.
_OPENING = re.compile(
    r"^(?:\s*(?:(?:您好|你好|喂|哎|打扰了|麻烦一下)[，,。！!\s]*"
    r"|(?:市民|来电人|网友)?(?:来电)?(?:反映|称|表示|留言|投诉|举报)[：:，,]\s*"
    r"|我(?:想|要)(?:反映|投诉|举报)(?:一下|个情况|一个问题)?[：:，,。]\s*"
    r"|(?:hello|hi|good (?:morning|afternoon|evening))[,.!]?\s*"
    r"|(?:i(?:'d| would) like to (?:report|complain)[^.]*|caller says:?)[.:]?\s*))+",
    re.IGNORECASE)


def default_title(description: str) -> str:
    """The title of a report sent without one: its first line without a call's
    opening words (see ``_OPENING``), cut to 60 characters: between words where
    words are spaced (English), not in the middle of one."""
    first = description.splitlines()[0] if description else ""
    said = _OPENING.sub("", first).strip()
    if said != first.strip() and said[:1].isascii() and said[:1].islower():
        said = said[0].upper() + said[1:]  # "Caller says there is…" -> "There is…"
    first = said if len(said) >= 4 else first  # nothing but a greeting: kept as it is
    if len(first) <= 60:
        return first
    cut = first[:59]
    if first[59].isascii() and first[59].isalnum() and " " in cut[30:]:  # inside a word: back to its start
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:.-") + "…"


def _language(value) -> str:
    """One of the site's languages (for the messages to the reporter), or ""."""
    code = str(value or "").strip().lower().replace("_", "-")
    known = {c.lower() for c, _name in settings.LANGUAGES}
    if code in known:
        return code
    return next((c for c in known if code and c.split("-")[0] == code.split("-")[0]), "")


def clean_input(inp: ReportInput) -> dict:
    """Check everything before anything is written; errors name the field."""
    if inp.channel not in Channel.values:
        raise CaseInvalid(_("Unknown channel “%(channel)s”.") % {"channel": inp.channel}, field="channel")
    description = (inp.description or "").strip()
    title = (inp.title or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise CaseInvalid(_("The description is too long (at most %(n)s characters).") % {"n": MAX_DESCRIPTION},
                          field="description")
    if not description and not title:
        raise CaseInvalid(_("Describe the problem."), field="description")
    if len(title) > 200:
        raise CaseInvalid(_("The title is too long (at most 200 characters)."), field="title")
    if not title:
        title = default_title(description)
    lon = _coordinate(inp.lon, "long", _("Longitude"), -180, 180)
    lat = _coordinate(inp.lat, "lat", _("Latitude"), -90, 90)
    if (lon is None) != (lat is None):
        raise CaseInvalid(_("Give both latitude and longitude, or neither."), field="lat" if lat is None else "long")
    if inp.priority is not None and inp.priority not in Priority.values:
        raise CaseInvalid(_("Unknown priority “%(priority)s”; one of: %(values)s.")
                          % {"priority": inp.priority, "values": ", ".join(Priority.values)}, field="priority")
    if len(inp.address or "") > 300:
        raise CaseInvalid(_("The address is too long (at most 300 characters)."), field="address_string")
    if len(inp.idempotency_key or "") > 120:
        raise CaseInvalid(_("The idempotency key is too long (at most 120 characters)."), field="idempotency_key")
    contact = {k: str(inp.contact.get(k) or "").strip() for k in CONTACT_FIELDS}
    limits = {"name": 100, "phone": 40, "email": 254, "device_id": 100, "account_id": 100}
    for k, v in contact.items():
        if len(v) > limits[k]:
            raise CaseInvalid(_("%(field)s is too long.") % {"field": k}, field=k)
    wants_messages = bool(inp.contact.get("notify"))
    # A person typing into our form or an operator is told to correct a number; an
    # Open311 partner relays what its user typed ("+44 7700 900123 (mobile)") and cannot
    # ask them again, so refusing would lose the report over a detail. Its contact is
    # kept as sent, for staff calling back to read; it is never used for messages
    # (GeoReport has no way to ask for them, the partner tells its user itself).
    relayed = inp.channel == Channel.OPEN311 and not wants_messages
    if contact["phone"] and not PHONE_RE.match(contact["phone"]) and not relayed:
        raise CaseInvalid(_("This is not a phone number. Write it as digits, for example 13812345678 or 021-6321 5678 ext. 801."), field="phone")
    if contact["email"] and ("@" not in contact["email"] or " " in contact["email"]) and not relayed:
        raise CaseInvalid(_("This is not an email address."), field="email")
    if wants_messages and notify.medium_for(contact["email"], contact["phone"]) is None:
        raise CaseInvalid(_("Give an email address to get messages about the report.") if not notify.sms_enabled()
                          else _("Give an email address or a mobile number to get messages about the report."),
                          field="email")
    photos = [clean_photo(p, field="media") for p in inp.photos]
    if lon is None and photos and inp.area in (None, "") and area_from_address(inp.address or "") is None:
        # A photo's EXIF position stands in where the reporter's words place nothing (no
        # pin, no area, no address that names one), if it is in the city: an address
        # that places the report wins over where the photo was taken (it may be an old
        # photo, or taken from afar); one that places nothing ("at the gate") does not.
        for p in photos:
            if p.lon is not None and in_city(p.lon, p.lat):
                lon, lat = p.lon, p.lat
                break
    area = inp.area
    if area is not None and not isinstance(area, Area):
        area = Area.objects.filter(code=str(area).strip()).first() if str(area).strip() else None
        if area is None:
            raise CaseInvalid(_("Unknown area “%(code)s”.") % {"code": inp.area}, field="area")
    if lon is not None and inp.channel != Channel.SENSOR and not in_city(lon, lat):
        # Every channel as Open311 and the portal: a point outside the city is refused,
        # unless an address or area says where (a device's fix can stray over the boundary).
        # Not a sensor's: the city's own sensors may stand beyond its boundary (an upstream
        # reservoir); the alarm keeps its point and waits for a dispatcher.
        if not (inp.address or "").strip() and area is None:
            raise CaseInvalid(_("The point (%(lat)s, %(long)s) is outside the area this city serves.")
                              % {"lat": lat, "long": lon}, field="lat")
        lon = lat = None
    category = _category(inp.category)
    if lon is None and area is None and not (inp.address or "").strip() and inp.place_required:
        raise CaseInvalid(_("Say where: give a point (latitude and longitude), an address or an area code."),
                          field="lat")
    return {"title": title, "description": description, "category": category, "lon": lon, "lat": lat,
            "contact": contact, "photos": photos, "area": area, "notify": wants_messages,
            "language": _language(inp.contact.get("language"))}


# --------------------------------------------------------------------------- the pipeline


class KeyReused(CaseInvalid):
    """The idempotency key of an earlier report that is not this one."""

    status_code = 422
    code = "idempotency_key_reused"


def _replayed(found: Report, inp: ReportInput) -> Submitted:
    """The earlier report with this key, when ``inp`` is that report sent
    again (a retry): the same description, address, chosen category and
    point (or area, without one). A different report under a used key is refused (422 on the JSON
    API, as the IETF's Idempotency-Key draft says), not answered with the
    first report as though the new one had been taken."""
    differs = _differs(found, inp)
    if differs:
        label = {"description": _("description"), "address": _("address"), "category": _("category"),
                 "lat": _("location"), "area": _("area"), "channel": _("channel"),
                 "external_id": _("id in the sending system")}[differs]
        exc = KeyReused(_("This key was already used for report %(number)s, whose %(field)s is different. "
                          "Send a new report with a new key.") % {"number": found.number, "field": label},
                        field="idempotency_key")
        exc.number = found.number
        raise exc
    return Submitted(found, False)


def _differs(found: Report, inp: ReportInput) -> str | None:
    """The first field in which ``inp`` is not the stored ``found`` (as it was
    sent: the stored text is the sent text, stripped), or None."""
    if (inp.description or "").strip() != (found.description or "").strip():
        return "description"
    if (inp.address or "").strip() != (found.address or "").strip():
        return "address"
    if (inp.title or "").strip() and inp.title.strip() != (found.title or "").strip():
        return "title"  # given (the new-case page); else it is made from the description
    if inp.same_as.strip() and not (found.case is not None and found.case.number == inp.same_as.strip()):
        return "same_as"  # saved, then Back and "same problem": another decision
    if inp.channel != found.channel:
        return "channel"
    if (inp.external_id or "").strip() != (found.external_id or "").strip():
        return "external_id"
    given = inp.category.code if isinstance(inp.category, Category) else str(inp.category or "").strip()
    if given != (found.category.code if found.category_given and found.category is not None else ""):
        return "category"
    if found.lon is not None and inp.lon not in (None, "") and inp.lat not in (None, ""):
        try:
            lon, lat = float(inp.lon), float(inp.lat)
        except (TypeError, ValueError):
            return "lat"
        if abs(lon - found.lon) > 1e-7 or abs(lat - found.lat) > 1e-7:
            return "lat"
    if found.lon is None and inp.area not in (None, ""):
        given = inp.area.code if isinstance(inp.area, Area) else str(inp.area).strip()
        if given != (found.area.code if found.area_id else ""):
            return "area"
    return None


def _existing(source: str, key: str) -> Report | None:
    if not key:
        return None
    # The exclude() repeats the partial unique index's condition, so that the
    # database uses that index instead of reading every report of the source.
    return (Report.objects.select_related("case", "category").exclude(idempotency_key="")
            .filter(source=source, idempotency_key=key).first())


def submit(inp: ReportInput, *, by=None) -> Submitted:
    """Take in one report from any channel. Idempotent on (source, key)."""
    found = _existing(inp.source, inp.idempotency_key)
    if found is not None:
        return _replayed(found, inp)
    clean = clean_input(inp)
    same_as = _same_as(inp.same_as, by) if inp.same_as.strip() else None
    # The reading work (locate, classify, find duplicate candidates) happens
    # before the write transaction, so the write lock is held only for writing.
    prepared = _prepare(inp, clean, same_as=same_as)
    try:
        with transaction.atomic(), notify.quiet():  # the reporter sees the outcome at once: no message about it
            return Submitted(_submit(inp, clean, by, prepared), True)
    except IntegrityError:
        found = _existing(inp.source, inp.idempotency_key)  # another request with the same key won
        if found is not None:
            return _replayed(found, inp)
        raise


def next_ids(model, n: int = 1) -> list[int]:
    """The next ``n`` ids of ``model``'s table, chosen before the INSERT (a
    report's tracking number holds its id, so it is written with the row: no
    second statement and, on PostgreSQL, no wait on the unique index for a
    placeholder number). PostgreSQL: ``nextval`` of the table's sequence.
    SQLite: past both ``MAX(id)`` and the AUTOINCREMENT counter; the caller's
    transaction holds the write lock (``BEGIN IMMEDIATE``), so no one else can
    take them before it commits."""
    if n <= 0:
        return []
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                        [model._meta.db_table, n])
            return [r[0] for r in cur.fetchall()]
        cur.execute(f"SELECT {_next_id_sql(model)}", [model._meta.db_table])
        start = cur.fetchone()[0]
    return list(range(start, start + n))


def _next_id_sql(model) -> str:
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        return "nextval(pg_get_serial_sequence(%s, 'id'))"
    return (f'MAX(COALESCE((SELECT MAX(id) FROM "{table}"), 0), '
            "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0)) + 1")


def next_id_each(*models, cur=None) -> tuple[int, ...]:
    """The next id of each of ``models``, in one statement (see :func:`next_ids`);
    ``cur``: a cursor of the caller's to run it on."""
    if cur is None:
        with connection.cursor() as cur:
            return next_id_each(*models, cur=cur)
    cur.execute("SELECT " + ", ".join(_next_id_sql(m) for m in models), [m._meta.db_table for m in models])
    return cur.fetchone()


_INSERT_SQL: dict = {}
_PLAIN = (str, int, float, bool, type(None))  # values the database takes as they are
_CONVERTED = ("JSONField", "DateTimeField", "DateField", "TimeField", "DecimalField", "UUIDField", "BinaryField")
_MISSING = object()


def _insert_statement(model, values: dict, db) -> tuple[str, list, list]:
    """The INSERT of one row of ``model`` from ``values`` (attribute name ->
    value; the primary key included; a field left out gets its default), as
    the ORM would write it for the connection ``db``: (SQL, parameters, the
    row's values in field order for ``from_db``).

    No model instance and no statement built anew: on the receive path the
    ORM's SQL compiler and ``Model.__init__`` cost more than the database's
    work (measured: ~150 µs and ~40 µs of a ~1 ms request). A value goes
    through its field's own conversion unless it is a plain str, number,
    bool or None of a field that stores those as they are."""
    plan = _INSERT_SQL.get((model, db.vendor))
    if plan is None:
        quote = db.ops.quote_name
        fields = model._meta.concrete_fields
        plan = _INSERT_SQL[(model, db.vendor)] = (
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))})",
            [(f, f.attname, f.get_internal_type() in _CONVERTED) for f in fields],
            [f.attname for f in fields])
    sql, fields, _names = plan
    row, params = [], []
    for f, attname, convert in fields:
        value = values.get(attname, _MISSING)
        if value is _MISSING:
            value = f.get_default()
        row.append(value)
        params.append(value if not convert and type(value) in _PLAIN else f.get_db_prep_save(value, db))
    return sql, params, row


def _insert(model, values: dict, cur, db) -> list:
    """Run :func:`_insert_statement` on the cursor ``cur``; the row's values."""
    sql, params, row = _insert_statement(model, values, db)
    cur.execute(sql, params)
    return row


def _stored(model, row: list, db):
    """The model instance of a row just written by :func:`_insert`, as a read
    would give it (``from_db`` takes the values in field order: ~8 µs,
    where ``Model(**kwargs)`` takes ~40 µs)."""
    return model.from_db(db.alias, _INSERT_SQL[(model, db.vendor)][2], row)


def tracking_number(at, pk: int) -> str:
    return numbers.tracking_number(f"{at.astimezone(ZoneInfo(settings.TIME_ZONE)):%Y%m%d}", pk)


def receive(inp: ReportInput, *, by=None) -> Submitted:
    """The durable step alone, for Open311 (a machine channel):
    check the input, store the report as *received* with its contact, answer.

    The report has its tracking number at once; classification, duplicate
    check, case, routing and cluster check follow in the worker, which runs
    the batch pipeline (:func:`chengyun.intake.bulk.process_received`) over
    everything received, usually within a second. Idempotent on (source,
    key) like :func:`submit`. With ``INTAKE_QUEUE = "inline"`` the pipeline
    runs for this report before returning (slower; used by the tests).
    """
    if inp.photos or inp.self_dispose_note.strip() or inp.priority is not None:
        raise ValueError("receive() takes no photos, priority or on-the-spot closing: use submit()")
    found = _existing(inp.source, inp.idempotency_key)
    if found is not None:
        return _replayed(found, inp)
    clean = clean_input(inp)
    category, at = clean["category"], now()
    person = by if by is not None and not isinstance(by, str) else None
    # One connection lookup and one cursor for the transaction: on this path
    # Django's per-call connection proxy and cursor set-up cost about as much
    # as the statements (measured: ~60 µs of a ~550 µs receive()).
    db = connections[DEFAULT_DB_ALIAS]
    has_contact = any(clean["contact"].values())

    def report_values(pk: int, contact_id: int | None) -> dict:
        return {
            "id": pk, "number": tracking_number(at, pk), "channel": inp.channel, "source": inp.source,
            "idempotency_key": inp.idempotency_key or "", "external_id": inp.external_id or "",
            "title": clean["title"], "description": clean["description"],
            "category_id": category.pk if category is not None else None, "category_given": category is not None,
            "lon": clean["lon"], "lat": clean["lat"], "address": inp.address or "",
            "area_id": clean["area"].pk if clean["area"] is not None else None, "contact_id": contact_id,
            "attributes": inp.attributes or {}, "media_url": inp.media_url or "",
            "duplicate": DuplicateOutcome.PENDING.value, "received_at": at,
            "created_by_id": person.pk if person is not None else None, "generated": inp.generated,
        }

    def draw_ids(cur) -> tuple[int | None, int]:
        """(the contact's id or None, the report's id), in one statement."""
        ids = next_id_each(*((ReporterContact, Report) if has_contact else (Report,)), cur=cur)
        return (ids[0] if has_contact else None), ids[-1]

    def contact_row(contact_id: int) -> dict:
        return {"id": contact_id, "created_at": at, **clean["contact"]}

    try:
        if db.vendor == "postgresql" and db.get_autocommit():
            # No transaction block: the ids from the sequences, then the contact
            # and the report in one statement (a WITH holding an INSERT runs to
            # completion with the statement, all or nothing): two round trips
            # to the database instead of five. Inside a caller's transaction
            # the path below is taken.
            with db.cursor() as cur:
                contact_id, pk = draw_ids(cur)
                sql, params, row = _insert_statement(Report, report_values(pk, contact_id), db)
                if has_contact:
                    contact_sql, contact_params, _row = _insert_statement(ReporterContact, contact_row(contact_id), db)
                    sql, params = f"WITH contact AS ({contact_sql}) {sql}", [*contact_params, *params]
                cur.execute(sql, params)
        else:
            with transaction.atomic(using=db.alias), db.cursor() as cur:
                contact_id, pk = draw_ids(cur)
                if has_contact:
                    _insert(ReporterContact, contact_row(contact_id), cur, db)
                row = _insert(Report, report_values(pk, contact_id), cur, db)
        report = _stored(Report, row, db)
    except IntegrityError:
        found = _existing(inp.source, inp.idempotency_key)  # another request with the same key won
        if found is not None:
            return _replayed(found, inp)
        raise
    if settings.INTAKE_QUEUE == "inline":
        from .received import process_received

        process_received(ids=[report.pk])
        report.refresh_from_db()
    return Submitted(report, True)


def classify(text: str, given: Category | None) -> tuple[Category | None, Category | None, float | None, int | None, dict, bool]:
    """-> (decided category, suggestion, confidence, model version, explanation, certain enough to route)."""
    threshold = settings.INTAKE_CONFIDENCE_THRESHOLD
    version, model = active_model()
    prediction = model.predict(text) if (model is not None and text.strip()) else None
    suggestion = Category.objects.filter(code=prediction.code).first() if prediction else None
    explanation = prediction.explanation(version) if prediction else {"model": None}
    explanation["threshold"] = threshold
    confidence = prediction.confidence if prediction else None
    if given is not None:
        disagrees = suggestion is not None and suggestion.pk != given.pk and confidence >= threshold
        explanation["decided_by"] = "reporter"
        explanation["disagrees"] = disagrees
        return given, suggestion, confidence, version, explanation, not disagrees
    if suggestion is not None and confidence >= threshold:
        explanation["decided_by"] = "classifier"
        return suggestion, suggestion, confidence, version, explanation, True
    explanation["decided_by"] = "nobody"  # waits for a dispatcher
    return None, suggestion, confidence, version, explanation, False


def _area_for(lon, lat, address: str, chosen: Area | None = None) -> Area | None:
    if lon is not None:
        chain = locate(lon, lat)
        return Area.objects.get(pk=chain[-1].id) if chain else None
    if chosen is not None:
        return chosen
    info = area_from_address(address)
    return Area.objects.get(pk=info.id) if info else None


@dataclass
class Prepared:
    at: object
    area: Area | None
    text: str
    category: Category | None
    suggestion: Category | None
    confidence: float | None
    version: int | None
    explanation: dict
    certain: bool
    match: dedup.Match


def _same_as(number: str, by) -> Case:
    """The open case a person says a new report repeats (:attr:`ReportInput.same_as`)."""
    number = number.strip()
    case = Case.objects.filter(number=number).first()
    person = by if by is not None and not isinstance(by, str) else None
    if case is None or person is None or not scope.can_see(person, case):
        raise CaseInvalid(_("There is no case %(number)s that you can see.") % {"number": number}, field="same_as")
    # As for a dispatcher's duplicate decision: seeing a case (a leader, another
    # district's handler) is not enough to add a caller's report to it.
    if not scope.can_act(person, case, {Role.OPERATOR, Role.DISPATCHER, Role.ADMIN}):
        raise CaseInvalid(_("You may not add a call to case %(number)s: it is outside your area.")
                          % {"number": number}, field="same_as")
    if case.status not in OPEN_STATUSES:
        raise CaseInvalid(_("Case %(number)s is no longer open: register the call as a case of its own.")
                          % {"number": number}, field="same_as")
    return case


def _prepare(inp: ReportInput, clean: dict, same_as: Case | None = None) -> Prepared:
    at = now()
    lon, lat = clean["lon"], clean["lat"]
    area = _area_for(lon, lat, inp.address, clean["area"])
    text = report_text(clean["description"], clean["title"])
    category, suggestion, confidence, version, explanation, certain = classify(text, clean["category"])
    if same_as is not None:
        match = dedup.Match(same_as, 1.0, "attach", {"reason": dedup.SAID_BY_STAFF, "best_case": same_as.number})
    elif inp.self_dispose_note.strip():
        match = dedup.Match(None, 0.0, "new", {"reason": "closed on the spot: not checked"})
    else:
        match = dedup.find_duplicate(category=category or suggestion, lon=lon, lat=lat, at=at, text=text,
                                     area=area, address=inp.address)
    return Prepared(at, area, text, category, suggestion, confidence, version, explanation, certain, match)


def _submit(inp: ReportInput, clean: dict, by, prep: Prepared) -> Report:
    at = prep.at
    person = by if by is not None and not isinstance(by, str) else None
    lon, lat = clean["lon"], clean["lat"]
    area = prep.area
    category, suggestion, confidence = prep.category, prep.suggestion, prep.confidence
    version, explanation, certain = prep.version, prep.explanation, prep.certain
    contact = None
    if any(clean["contact"].values()):
        contact = ReporterContact.objects.create(created_at=at, notify=clean["notify"], language=clean["language"],
                                                 **clean["contact"])
    report = Report.objects.create(
        channel=inp.channel, source=inp.source, idempotency_key=inp.idempotency_key or "",
        external_id=inp.external_id or "", title=clean["title"], description=clean["description"],
        category=category, category_given=clean["category"] is not None, suggested_category=suggestion,
        confidence=confidence, classifier_version=version, classification=explanation,
        lon=lon, lat=lat, address=inp.address or "", area=area, contact=contact,
        attributes=inp.attributes or {}, media_url=inp.media_url or "", received_at=at, created_by=person,
        generated=inp.generated,
    )
    report.number = tracking_number(at, report.pk)
    for p in clean["photos"]:
        ReportPhoto.objects.create(
            report=report, file=ContentFile(p.content, name=f"{report.number}-{p.sha256[:12]}.{p.extension}"),
            content_type=p.content_type, width=p.width, height=p.height, size=len(p.content),
            exif_lon=p.lon, exif_lat=p.lat, sha256=p.sha256,
        )

    self_dispose = bool(inp.self_dispose_note.strip())
    match = prep.match
    if match.outcome == "attach":  # still open? (it was read before the transaction)
        match.case.refresh_from_db(fields=["status"])
        if match.case.status not in OPEN_STATUSES:
            match = dedup.Match(None, 0.0, "new", {**match.explanation, "reason": "the matching case closed meanwhile"})
    report.duplicate_explanation = match.explanation
    if match.outcome == "attach":
        report.case = match.case
        report.duplicate = DuplicateOutcome.ATTACHED
        said = match.explanation.get("reason") == dedup.SAID_BY_STAFF
        case_services._timeline(match.case, "report_attached", by or SYSTEM_ACTOR, at=at, data={
            "report": report.number, "channel": inp.channel,
            **({"said_by_staff": True} if said else {"score": round(match.score, 4)}),
        })
        report.save(update_fields=["number", "case", "duplicate", "duplicate_explanation"])
    else:
        case = case_services.create_case(
            title=clean["title"], description=clean["description"], category=category, lon=lon, lat=lat,
            address=inp.address or "", channel=inp.channel, priority=inp.priority, by=by, generated=inp.generated,
            area=area,
        )
        report.case = case
        if match.outcome == "ask":
            report.duplicate = DuplicateOutcome.ASK
            DuplicateSuggestion.objects.create(
                report=report, case=case, candidate=match.case, score=match.score, explanation=match.explanation,
                created_at=at,
            )
        report.save(update_fields=["number", "case", "duplicate", "duplicate_explanation"])
        if self_dispose:
            case_services.self_dispose_case(case, by=by, note=inp.self_dispose_note)
        elif certain and match.outcome == "new":
            auto_route(case, explanation)
    record("report.create", actor=by or SYSTEM_ACTOR, obj=report, at=at, data={
        "number": report.number, "channel": inp.channel, "source": inp.source, "case": report.case.number,
        "duplicate": report.duplicate, "category": category.code if category else None,
        "confidence": round(confidence, 4) if confidence is not None else None,
    })
    if category is not None:
        cluster.check_cluster(report, open_case=_open_cluster_case)
    return report


def given_by(channel: str) -> str:
    """Who chose the category sent with a report: a call's is the hotline
    operator's, an inspection's the inspector's, any other the reporter's."""
    return {Channel.HOTLINE: "operator", Channel.INSPECTOR: "inspector"}.get(channel, "reporter")


def given_accept_note(channel: str) -> str:
    """The note of the automatic acceptance of a case whose category came with its report."""
    return {
        "operator": _("Accepted automatically: the hotline operator chose the category."),
        "inspector": _("Accepted automatically: the grid inspector chose the category."),
    }.get(given_by(channel)) or _("Accepted automatically: the reporter chose the category.")


def auto_route(case: Case, explanation: dict) -> bool:
    """Accept and dispatch by the routing rules, if a rule finds a department."""
    if case.category is None or case.area is None:
        return False
    decision = route(case.category, case.area)
    if decision.lead is None:
        return False
    why = {"classification": {k: explanation.get(k) for k in ("decided_by", "confidence", "model", "terms")}}
    case_services.accept_case(case, by=SYSTEM_ACTOR, note=(
        given_accept_note(case.channel) if explanation.get("decided_by") == "reporter"
        else _("Accepted automatically: the category is certain enough.")))
    case_services.dispatch_case(case, by=SYSTEM_ACTOR, note=_("Dispatched automatically by the routing rules."),
                                decision=decision)
    Case.objects.filter(pk=case.pk).update(route_explanation={**case.route_explanation, **why})
    case.route_explanation = {**case.route_explanation, **why}
    return True


def _open_cluster_case(warning) -> Case:
    # Stored in the site's language, whoever's request or command raised it (pages show
    # the title in the reader's, from the warning).
    with translation.override(settings.LANGUAGE_CODE):
        title = cluster.warning_title(warning)[:200]
        description = _("Raised automatically from %(n)s reports; see the linked reports.") % {
            "n": warning.report_count}
    case = case_services.create_case(
        title=title, description=description,
        category=warning.category, channel=Channel.DISCOVERY,
        # By area: in that street, without a point (its representative point is no report's position).
        lon=None if warning.by_area else warning.lon, lat=None if warning.by_area else warning.lat,
        area=warning.area if warning.by_area else None,
        priority=Priority.URGENT if warning.category.priority == Priority.URGENT else Priority.HIGH, by=SYSTEM_ACTOR,
        # Raised from generated reports only (the demo's): generated too, and marked so.
        generated=warning.reports.exists() and not warning.reports.filter(generated=False).exists(),
    )
    auto_route(case, {"decided_by": "cluster warning"})
    return case


# --------------------------------------------------------------------------- staff decisions


def _staff(user, case: Case, message: str) -> None:
    if not scope.can_act(user, case, {Role.OPERATOR, Role.DISPATCHER, Role.ADMIN}):
        raise CaseForbidden(message)


def decide_suggestion(suggestion: DuplicateSuggestion, *, merge: bool, by, note: str = "") -> DuplicateSuggestion:
    """A dispatcher answers a grey-zone question: the same problem or not."""
    if suggestion.status != SuggestionStatus.PENDING:
        raise CaseInvalid(_("This question has already been answered."), field="suggestion")
    _staff(by, suggestion.case, _("You may not decide on duplicates of this case."))
    with transaction.atomic():
        if merge:
            # merge_case answers the case's open questions (this one among them) as merged
            case_services.merge_case(suggestion.case, into=suggestion.candidate, by=by,
                                     note=note or _("Duplicate (confirmed by a dispatcher)."))
        else:
            case_services._timeline(suggestion.case, "duplicate_kept", by, at=now(), note=note,
                                    data={"case": suggestion.candidate.number, "report": suggestion.report.number})
        suggestion.status = SuggestionStatus.MERGED if merge else SuggestionStatus.KEPT
        suggestion.decided_by, suggestion.decided_at = by, now()
        suggestion.save(update_fields=["status", "decided_by", "decided_at"])
        record("duplicate.decide", actor=by, obj=suggestion, data={
            "case": suggestion.case.number, "candidate": suggestion.candidate.number, "merge": merge,
            "score": round(suggestion.score, 4),
        })
        if not merge:
            _route_when_kept(suggestion)
    return suggestion


def _route_when_kept(suggestion: DuplicateSuggestion) -> None:
    """A case kept apart goes on as it would have without the question: accepted and
    dispatched by the routing rules when its category was certain (the classifier's,
    or the reporter's undisputed, or one staff chose since) and no other question
    is open."""
    case = Case.objects.select_related("category", "area").get(pk=suggestion.case_id)
    if case.status != CaseStatus.NEW or case.category_id is None:
        return
    if DuplicateSuggestion.objects.filter(case=case, status=SuggestionStatus.PENDING).exists():
        return
    report = suggestion.report
    why = report.classification or {}
    certain = (why.get("decided_by") == "classifier" or (why.get("decided_by") == "reporter" and not why.get("disagrees"))
               or case.category_id != report.category_id)
    if certain:
        auto_route(case, why)


def detach_report(report: Report, *, by, reason: str) -> Case:
    """Undo an automatic attachment: the report gets a case of its own."""
    old = report.case
    if old is None or report.duplicate != DuplicateOutcome.ATTACHED:
        raise CaseInvalid(_("This report was not attached to another case."), field="report")
    _staff(by, old, _("You may not change the reports of this case."))
    reason = (reason or "").strip()
    if not reason:
        raise CaseInvalid(_("Please give a reason."), field="reason")
    with transaction.atomic():
        case = case_services.create_case(
            title=report.title, description=report.description, category=report.category, lon=report.lon,
            lat=report.lat, address=report.address, channel=report.channel, by=by, area=report.area,
        )
        claimed = Report.objects.filter(pk=report.pk, case=old, duplicate=DuplicateOutcome.ATTACHED).update(
            case=case, duplicate=DuplicateOutcome.DETACHED
        )
        if claimed != 1:
            raise CaseInvalid(_("Someone else changed this report first."), field="report")
        report.case, report.duplicate = case, DuplicateOutcome.DETACHED
        at = now()
        case_services._timeline(old, "report_detached", by, at=at, note=reason, data={"report": report.number, "case": case.number})
        case_services._timeline(case, "report_detached", by, at=at, note=reason, data={"report": report.number, "from": old.number})
        record("report.detach", actor=by, obj=report, at=at, data={"report": report.number, "from": old.number,
                                                                    "to": case.number, "reason": reason})
    return case


def record_correction(case: Case, previous: Category | None, category: Category, *, by, at) -> CategoryCorrection:
    first = case.reports.order_by("pk").first() if case.pk else None
    return CategoryCorrection.objects.create(
        case=case, from_category=previous, to_category=category, text=f"{case.title}\n{case.description}",
        by=by, at=at, classifier_version=first.classifier_version if first else None,
    )


def case_reports(case: Case):
    """All reports of a case, including those of cases merged into it."""
    return Report.objects.filter(Q(case=case) | Q(case__merged_into=case)).select_related("contact", "category")


# --------------------------------------------------------------------------- training data


TRAINED_STATUSES = (CaseStatus.CLOSED, CaseStatus.RATED, CaseStatus.DISPATCHED, CaseStatus.IN_PROGRESS,
                    CaseStatus.AWAITING_VERIFICATION)
CORRECTION_WEIGHT = 3.0


def training_examples(*, limit: int | None = None) -> tuple[list[str], list[str], list[float], dict]:
    """Texts and categories of the city's handled cases (a person or a rule
    settled the category); cases a person corrected count ``CORRECTION_WEIGHT`` times.

    A case whose category the classifier alone chose counts only once a person
    has acted on it after it was opened (a dispatcher dispatched it, a department
    took it on, someone closed it): until then the category is the model's own
    guess, and training on it would teach the model its mistakes. This leaves
    out cases the rules dispatched that nobody has taken up yet, and imported
    history whose file gave no category (the import classified it; the old
    system's staff never saw that category)."""
    opened_by_a_guess = Report.objects.filter(
        classification__decided_by="classifier",
        duplicate__in=[DuplicateOutcome.NEW, DuplicateOutcome.DETACHED]).values("case_id")
    # A person's act on the case after it was opened (not the sender's own "create",
    # nor the sender of a later report attached to it).
    looked_at = (TimelineEntry.objects.filter(case=OuterRef("pk"), actor__isnull=False)
                 .exclude(action__in=("create", "report_attached")))
    guessed = (Q(pk__in=opened_by_a_guess) & ~Q(pk__in=CategoryCorrection.objects.values("case_id"))
               & ~Exists(looked_at))
    qs = (Case.objects.filter(status__in=TRAINED_STATUSES, category__isnull=False)
          .exclude(channel=Channel.DISCOVERY)
          # As a subquery: excluded in place, a NULL in the condition would drop other cases too.
          .exclude(pk__in=Case.objects.filter(guessed).values("pk")).order_by("-created_at")
          .values_list("pk", "title", "description", "category__code"))
    if limit:
        qs = qs[:limit]
    corrected = set(CategoryCorrection.objects.values_list("case_id", flat=True))
    texts, labels, weights = [], [], []
    for pk, title, description, code in qs.iterator(chunk_size=2000):
        texts.append(f"{title}\n{description}")
        labels.append(code)
        weights.append(CORRECTION_WEIGHT if pk in corrected else 1.0)
    return texts, labels, weights, {"cases": len(texts), "corrected": sum(1 for w in weights if w > 1)}


def timeline_for_reporter(case: Case) -> list[TimelineEntry]:
    """The public part of a case's history (no staff notes, no names)."""
    return list(case.timeline.filter(to_status__gt="").order_by("at", "pk"))
