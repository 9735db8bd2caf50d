"""Reports over JSON: submit from any system, read them as scope allows,
reveal a reporter's contact (audited), detach, answer duplicate questions;
and the classifier's stored versions.

Two routers: ``router`` at /api/v1/reports and ``classifier_router`` at
/api/v1/classifier. Every write calls one service function of
:mod:`chengyun.intake.services` (or :mod:`.privacy`, :mod:`.classifier`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext as _
from ninja import Field, Header, Query, Router, Schema, Status
from pydantic import field_validator
from pydantic_core import PydanticCustomError

from chengyun.cases.errors import CaseForbidden, CaseInvalid
from chengyun.cases.models import Channel
from chengyun.org import scope
from chengyun.org.models import Role
from chengyun.taxonomy.models import Priority

from . import dedup, numbers, privacy, services
from .classifier import activate_version
from .models import ClassifierModel, DuplicateSuggestion, Report, SuggestionStatus

router = Router(tags=["reports"])
classifier_router = Router(tags=["classifier"])

# Channels a system may submit through this API (Open311 has its own endpoint,
# smart discovery is raised by the platform itself).
API_CHANNELS = (Channel.SENSOR, Channel.DEPARTMENT, Channel.HOTLINE, Channel.INSPECTOR, Channel.WEB)
# A device, a citizen at the spot or an inspector knows where the problem is; a call or
# another system's record may not, and then a dispatcher places the case.
PLACED_CHANNELS = (Channel.SENSOR, Channel.INSPECTOR, Channel.WEB)
# The service names some fields as Open311 does; this API calls them by its own names.
FIELD_NAMES = {"long": "lon", "address_string": "address"}
STAFF_ROLES = {Role.OPERATOR, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN}


# --------------------------------------------------------------------------- schemas


class ContactIn(Schema):
    name: str = ""
    phone: str = ""
    email: str = ""
    device_id: str = ""
    account_id: str = ""
    notify: bool = Field(False, description="The reporter asked to be told when the status changes (by email; "
                                            "by SMS if the city has an SMS gateway and no email is given).")
    language: str = Field("", description="The reporter's language for those messages: zh-hans or en.")


class ReportIn(Schema):
    channel: str = Field(
        description="Required. One of: " + ", ".join(c.value for c in API_CHANNELS) + ". A sensor's point is "
                    "kept even beyond the city's boundary; a sensor, inspector or web report must say where "
                    "(a point, an address or an area), a hotline call or a department's report may leave it "
                    "to the dispatcher.",
        json_schema_extra={"enum": [c.value for c in API_CHANNELS]},
    )
    title: str = Field("", description="Short title; taken from the description when empty.")
    description: str = Field("", description=f"What is wrong (at most {services.MAX_DESCRIPTION} characters).")
    category: str | None = Field(None, description="Category code, if the sending system knows it.")
    # Numbers, or numbers as text: a bad value is answered with 400 naming the field.
    lon: float | str | None = Field(None, description="Longitude (WGS84).")
    lat: float | str | None = Field(None, description="Latitude (WGS84).")
    address: str = ""
    area: str | int | None = Field(None, description="Code of an area of the city's area tree (a grid, a community …), where "
                                      "the sending system knows it; used when there is no point.")
    contact: ContactIn | None = Field(None, description="The reporter; personal data, shown masked.")
    external_id: str = Field("", description="The report's id in the sending system.")
    attributes: dict = Field(default_factory=dict, description="Extra facts (Open311 attributes).")
    priority: str | None = Field(None, description="One of: " + ", ".join(Priority.values) + " (default: the "
                                                    "category's).", json_schema_extra={"enum": list(Priority.values)})
    idempotency_key: str = Field(
        "", description="Same key twice from the same user gives the first report back; "
                        "the Idempotency-Key header wins over this field.",
    )

    @field_validator("lon", "lat", mode="before")
    @classmethod
    def _no_booleans(cls, value):
        # JSON true would otherwise be taken as the number 1.
        if isinstance(value, bool):
            raise PydanticCustomError("float_type", "Input should be a valid number")
        return value

    @field_validator("channel", mode="before")
    @classmethod
    def _channel_in_any_case(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("contact", mode="before")
    @classmethod
    def _contact_is_an_object(cls, value):
        # Ninja reads schemas from attributes too: a text sent as the contact would be
        # taken as an object without any, and the person's details silently dropped.
        if value is not None and not isinstance(value, dict):
            raise PydanticCustomError("dict_type", "Input should be a valid dictionary")
        return value


class ErrorOut(Schema):
    """Every error of the API: what is wrong in the caller's language, a code, and the field."""
    detail: str
    code: str = Field(description="invalid, unauthorized, forbidden, not_found, conflict, idempotency_key_reused …")
    field: str | None = Field(None, description="The request field at fault, as the caller named it.")


ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut}


class ReportOut(Schema):
    number: str
    case: str | None
    case_status: str | None
    case_merged_into: str | None
    channel: str
    source: str
    external_id: str
    title: str
    description: str
    category: str | None
    category_given: bool
    suggested_category: str | None
    confidence: float | None
    classifier_version: int | None
    classification: dict
    lon: float | None
    lat: float | None
    address: str
    area: str | None
    contact: dict | None
    attributes: dict
    duplicate: str
    duplicate_explanation: dict
    received_at: datetime


class ReportPage(Schema):
    count: int
    items: list[ReportOut]


class ReasonIn(Schema):
    reason: str = ""


class ContactOut(Schema):
    name: str
    phone: str
    email: str
    device_id: str
    account_id: str
    masked: bool


class SuggestionOut(Schema):
    id: int
    report: str
    case: str
    case_status: str
    candidate: str
    candidate_status: str
    score: float
    explanation: dict
    status: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class DecisionIn(Schema):
    merge: bool
    note: str = ""


class ClassifierModelOut(Schema):
    version: int
    active: bool
    created_at: datetime
    trained_by: str
    n_train: int
    n_test: int
    accuracy: float
    macro_f1: float
    per_category: dict
    params: dict
    data_note: str


# --------------------------------------------------------------------------- helpers


def _explained(exp: dict) -> dict:
    """The stored explanation, with its reason also in the reader's language (``reason_text``)."""
    return {**exp, "reason_text": dedup.reason_text(exp["reason"])} if exp.get("reason") else exp


def report_out(report: Report) -> dict:
    case = report.case
    return {
        "number": report.number,
        "case": case.number if case else None,
        "case_status": case.status if case else None,
        "case_merged_into": case.merged_into.number if case and case.merged_into_id else None,
        "channel": report.channel, "source": report.source, "external_id": report.external_id,
        "title": report.title, "description": report.description,
        "category": report.category.code if report.category_id else None,
        "category_given": report.category_given,
        "suggested_category": report.suggested_category.code if report.suggested_category_id else None,
        "confidence": report.confidence, "classifier_version": report.classifier_version,
        "classification": report.classification or {},
        "lon": report.lon, "lat": report.lat, "address": report.address,
        "area": report.area.code if report.area_id else None,
        "contact": privacy.masked(report.contact) or None,  # never in full here
        "attributes": report.attributes or {},
        "duplicate": report.duplicate, "duplicate_explanation": _explained(report.duplicate_explanation or {}),
        "received_at": report.received_at,
    }


def _reports():
    return Report.objects.select_related(
        "case", "case__merged_into", "category", "suggested_category", "area", "contact"
    )


def source_of(user) -> str:
    return f"user:{user.pk}"


def visible_reports(user):
    """Reports whose case the user may see, and the reports the user sent."""
    mine = Q(source=source_of(user))
    q = scope.case_scope_q(user, prefix="case__")
    if q == Q():  # the whole city (an empty Q would vanish in ``q | mine``)
        return _reports()
    return _reports().filter(mine if q is None else (q | mine))


def _report_or_404(request, number: str) -> Report:
    typed = numbers.normalise(number)
    number = typed or number
    report = visible_reports(request.user).filter(number=number).first()
    if report is None and numbers.misread(number):
        raise Http404(_("%(number)s is not a tracking number: a digit is wrong, or two are the wrong way round.")
                      % {"number": number})
    if report is None:
        raise Http404(_("No report %(number)s, or it is outside your area.") % {"number": number})
    return report


def _suggestion_or_404(request, pk: int) -> DuplicateSuggestion:
    """A question about a case the user may see (whether they may answer it, the service decides)."""
    q = scope.case_scope_q(request.user, prefix="case__")
    found = None
    if q is not None:
        found = (DuplicateSuggestion.objects.select_related("report", "case", "candidate")
                 .filter(q).filter(pk=pk).first())
    if found is None:
        raise Http404(_("No duplicate question %(id)s, or it is outside your area.") % {"id": pk})
    return found


def suggestion_out(s: DuplicateSuggestion) -> dict:
    return {
        "id": s.pk, "report": s.report.number, "case": s.case.number, "case_status": s.case.status,
        "candidate": s.candidate.number, "candidate_status": s.candidate.status, "score": s.score,
        "explanation": s.explanation or {}, "status": s.status, "created_at": s.created_at,
        "decided_by": s.decided_by.get_username() if s.decided_by_id else None, "decided_at": s.decided_at,
    }


# --------------------------------------------------------------------------- reports


@router.post(
    "/", response={200: ReportOut, 201: ReportOut, **ERRORS, 422: ErrorOut}, summary="Submit a report",
    description=(
        "Take in one report from a system (a sensor platform, a department's system, the hotline, an "
        "inspector's app): it is located, classified, checked against open cases for duplicates, turned "
        "into a case (or attached to one) and dispatched automatically when the category is certain "
        "enough. Any user with a role may submit. Send an `Idempotency-Key` header (or the "
        "`idempotency_key` field): the same key again gives the first report back with 200 instead of "
        "201, so a retry never makes a second report; the same key with a different report is 422. Errors "
        "are `{detail, code, field}`: 400 for bad input (the field named), 401 without a valid token, 403 "
        "for a user without a role, 422 for a reused key."
    ),
)
def submit_report(
    request, body: ReportIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", description="Retry-safe key")] = None,
):
    user = request.user
    if not scope.roles_of(user):
        raise CaseForbidden(_("You may not submit reports."))
    if body.channel not in API_CHANNELS:
        raise CaseInvalid(_("Unknown channel “%(channel)s”.") % {"channel": body.channel}, field="channel")
    area = str(body.area).strip() if body.area is not None else ""  # codes are digits: sent as numbers too
    inp = services.ReportInput(
        channel=body.channel, title=body.title, description=body.description, category=body.category,
        lon=body.lon, lat=body.lat, address=body.address, area=area or None,
        place_required=body.channel in PLACED_CHANNELS,
        contact=body.contact.model_dump() if body.contact is not None else {},
        source=source_of(user), idempotency_key=(idempotency_key or body.idempotency_key or "").strip(),
        external_id=body.external_id, attributes=body.attributes, priority=body.priority,
    )
    try:
        result = services.submit(inp, by=user)
    except CaseInvalid as exc:
        exc.field = FIELD_NAMES.get(exc.field, exc.field)
        raise
    report = _reports().get(pk=result.report.pk)
    return Status(201 if result.created else 200, report_out(report))


@router.get(
    "/suggestions", response=list[SuggestionOut], summary="Possible duplicates waiting for a decision",
    description="Grey-zone duplicate matches about cases you may see, newest first; operators, dispatchers "
                "and administrators answer them. `status` is pending (default), merged, kept or all.",
)
def list_suggestions(request, status: str = SuggestionStatus.PENDING, limit: int = 100, offset: int = 0):
    q = scope.case_scope_q(request.user, prefix="case__")
    if q is None:
        return []
    qs = DuplicateSuggestion.objects.select_related("report", "case", "candidate", "decided_by").filter(q)
    if status and status != "all":
        if status not in SuggestionStatus.values:
            raise CaseInvalid(_("Unknown status “%(status)s”.") % {"status": status}, field="status")
        qs = qs.filter(status=status)
    limit = max(1, min(limit, 500))
    return [suggestion_out(s) for s in qs.order_by("-created_at", "-pk")[offset: offset + limit]]


@router.post(
    "/suggestions/{suggestion_id}", response=SuggestionOut, summary="Decide a possible duplicate",
    description="`merge: true` merges the new case into the possible original; `false` keeps them apart. "
                "Answered once; a merge can be undone with the case action `unmerge`.",
)
def decide(request, suggestion_id: int, body: DecisionIn):
    suggestion = _suggestion_or_404(request, suggestion_id)
    services.decide_suggestion(suggestion, merge=body.merge, by=request.user, note=body.note)
    return suggestion_out(DuplicateSuggestion.objects.select_related("report", "case", "candidate", "decided_by")
                          .get(pk=suggestion.pk))


class ReportFilter(Schema):
    case: str | None = Field(None, description="Case number: its reports and those of cases merged into it.")
    channel: str | None = None
    since: datetime | None = Field(None, description="Received at or after (RFC 3339).")
    limit: int = Field(50, description="Reports per page, at most 500 (more is taken as 500; `count` gives the "
                                       "total, `offset` the next page).")
    offset: int = 0


@router.get(
    "/", response=ReportPage, summary="Reports in your scope",
    description="Reports whose case you may see (and the reports you sent), newest first. Contacts are masked.",
)
def list_reports(request, f: Query[ReportFilter]):
    qs = visible_reports(request.user)
    if f.case:
        qs = qs.filter(Q(case__number=f.case) | Q(case__merged_into__number=f.case))
    if f.channel:
        qs = qs.filter(channel=f.channel)
    if f.since:
        qs = qs.filter(received_at__gte=f.since)
    limit = max(1, min(f.limit, 500))
    return {"count": qs.count(), "items": [report_out(r) for r in qs.order_by("-received_at", "-pk")[f.offset: f.offset + limit]]}


@router.get(
    "/{number}", response={200: ReportOut, 401: ErrorOut, 404: ErrorOut}, summary="One report",
    description="Visible when you may see its case, or when you sent it. The contact is always masked "
                "(138****1234); see `POST /reports/{number}/contact`.",
)
def get_report(request, number: str):
    return report_out(_report_or_404(request, number))


@router.post(
    "/{number}/contact", response=ContactOut, summary="Reveal the reporter's contact (audited)",
    description="The full contact details, for operators and the handling department, who must call back. "
                "Give a `reason`; the view is written to the audit log. 403 for everyone else.",
)
def reveal_contact(request, number: str, body: ReasonIn):
    report = _report_or_404(request, number)
    return privacy.reveal_contact(report, by=request.user, reason=body.reason)


@router.post(
    "/{number}/detach", response=ReportOut, summary="Detach an attached report into a case of its own",
    description="Undo an automatic duplicate attachment (operators, dispatchers, administrators); "
                "a `reason` is required.",
)
def detach(request, number: str, body: ReasonIn):
    report = _report_or_404(request, number)
    services.detach_report(report, by=request.user, reason=body.reason)
    return report_out(_reports().get(pk=report.pk))


# --------------------------------------------------------------------------- classifier


def _is_staff(user) -> bool:
    return bool(user.is_superuser or user.is_staff or (STAFF_ROLES & scope.roles_of(user)))


def _is_admin(user) -> bool:
    if user.is_superuser:
        return True
    return any(a.role == Role.ADMIN and not a.area_id and not a.department_id for a in scope.assignments(user))


def model_out(m: ClassifierModel) -> dict:
    return {
        "version": m.version, "active": m.active, "created_at": m.created_at, "trained_by": m.trained_by,
        "n_train": m.n_train, "n_test": m.n_test, "accuracy": m.accuracy, "macro_f1": m.macro_f1,
        "per_category": m.per_category or {}, "params": m.params or {}, "data_note": m.data_note,
    }


class ClassifyIn(Schema):
    text: str = Field(description=f"The report's text (title and description; at most {services.MAX_DESCRIPTION} "
                                  "characters).")


class CategoryGuessOut(Schema):
    category: str
    name: str
    name_en: str
    confidence: float


class ClassifyOut(Schema):
    model: int | None
    threshold: float
    certain: bool = Field(description="Confident enough that a report with this text would be routed "
                                      "automatically (confidence at least the threshold).")
    guess: CategoryGuessOut | None
    alternatives: list[CategoryGuessOut]
    terms: list[tuple[str, float]] = Field(description="The character n-grams that drove the guess, with weights.")


@classifier_router.post(
    "/classify", response={200: ClassifyOut, **ERRORS}, summary="Classify a text",
    description="What the active classifier makes of a text, as the intake pipeline would: the likeliest "
                "category with its confidence, the next likeliest, and the terms behind the guess. Nothing is "
                "stored. For any user with a role (a department system pre-filling its form, a partner "
                "checking its mapping).",
)
def classify_text(request, body: ClassifyIn):
    from chengyun.taxonomy.models import Category

    if not scope.roles_of(request.user):
        raise CaseForbidden(_("You may not use the classifier."))
    text = body.text.strip()
    if not text:
        raise CaseInvalid(_("Give a text to classify."), field="text")
    if len(text) > services.MAX_DESCRIPTION + 200:
        raise CaseInvalid(_("The text is too long (at most %(n)s characters).")
                          % {"n": services.MAX_DESCRIPTION + 200}, field="text")
    # As the pipeline classifies a report of this text: its title (the first line), then it.
    _decided, suggestion, confidence, version, explanation, certain = services.classify(
        services.report_text(text), None)
    codes = [c for c, _p in explanation.get("alternatives") or []]
    cats = {c.code: c for c in Category.objects.filter(code__in=codes + ([suggestion.code] if suggestion else []))}

    def guess(code: str, p: float) -> dict:
        c = cats[code]
        return {"category": code, "name": c.name, "name_en": c.name_en, "confidence": round(p, 4)}

    return {
        "model": version, "threshold": explanation["threshold"], "certain": bool(certain and suggestion),
        "guess": guess(suggestion.code, confidence) if suggestion else None,
        "alternatives": [guess(c, p) for c, p in explanation.get("alternatives") or [] if c in cats],
        "terms": _merged_terms(explanation.get("terms") or []),
    }


def _merged_terms(terms) -> list[tuple[str, float]]:
    """The n-grams behind a guess, each once (" 路灯" and "路灯 " are one term to a reader)."""
    merged: dict[str, float] = {}
    for t, w in terms:
        key = t.strip()
        if key:
            merged[key] = merged.get(key, 0.0) + w
    return [(t, round(w, 4)) for t, w in sorted(merged.items(), key=lambda kv: -kv[1])]


@classifier_router.get(
    "/models", response=list[ClassifierModelOut], summary="Stored classifier versions with their scores",
    description="Every trained version, newest first, with held-out accuracy, macro F1 and per-category "
                "precision/recall; the active one is marked. Staff only (operators, dispatchers, "
                "supervisors, administrators).",
)
def list_models(request):
    if not _is_staff(request.user):
        raise CaseForbidden(_("Only staff may see the classifier's versions."))
    return [model_out(m) for m in ClassifierModel.objects.defer("blob").order_by("-version")]


@classifier_router.post(
    "/models/{version}/activate", response=ClassifierModelOut, summary="Activate a classifier version",
    description="Make this stored version the one that classifies new reports (also a rollback). "
                "City-wide administrators only; audited.",
)
def activate(request, version: int):
    if not _is_admin(request.user):
        raise CaseForbidden(_("Only an administrator may change the active classifier."))
    if not ClassifierModel.objects.filter(version=version).exists():
        raise Http404(_("No classifier version %(version)s.") % {"version": version})
    activate_version(version, by=request.user)
    return model_out(ClassifierModel.objects.defer("blob").get(version=version))
