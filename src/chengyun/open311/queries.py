"""What Open311 shows: services, service definitions, requests and their
updates, as rows ready for :mod:`chengyun.open311.formats`.

A *service* is an active leaf category; its code is the category code. A
*service request* is a report (:class:`chengyun.intake.models.Report`); its
id is the report's tracking number. Its status is the status of the case
that handles it, following merges, reduced to ``open``/``closed``; the
detailed status goes into ``status_notes``. Reporters' contact details are
never read here, and phone numbers, ID card numbers and emails written into a
description or an address are shown masked (:func:`.privacy.redact_text`).
A hotline call (:data:`UNPUBLISHED_CHANNELS`) is listed with its service,
status, times and area, but without what the caller said, the exact address
or a point: the caller spoke to an operator, not to the public, and those
words and places are often about a home and name a person.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Case as SqlCase
from django.db.models import Count, F, Max, Q, When
from django.utils.translation import gettext as _

from chengyun.areas.locator import get_locator
from chengyun.cases.models import AssignmentRole, Case, CaseAssignment, Channel, TimelineEntry
from chengyun.cases.workflow import CaseStatus
from chengyun.i18n import prefers_chinese
from chengyun.intake import numbers as numbers_
from chengyun.intake.models import DuplicateOutcome, DuplicateSuggestion, Report, SuggestionStatus
from chengyun.intake.privacy import redact_text
from chengyun.taxonomy.models import Category, DeadlineKind

from .formats import city_zone, w3c
from .models import ServiceAttribute

# Channels whose reports' words and exact places are not published.
UNPUBLISHED_CHANNELS = frozenset({Channel.HOTLINE})

S = CaseStatus
CLOSED_STATUSES = frozenset({S.CLOSED, S.RATED, S.REJECTED})


# --------------------------------------------------------------------------- services


def services():
    """Active categories without active sub-categories, with their number of attributes."""
    return (Category.objects.reportable().select_related("parent")
            .annotate(n_attributes=Count("open311_attributes")).order_by("code"))


def _hours(value: Decimal) -> str:
    return format(value.normalize(), "f") if value is not None else ""


def service_row(category: Category) -> dict:
    keywords = (category.keywords_zh or category.keywords_en) if prefers_chinese() else \
        (category.keywords_en or category.keywords_zh)
    words = (_("%(kind)s; deadline: %(hours)s hours, nights and holidays included")
             if category.deadline_kind == DeadlineKind.CALENDAR else _("%(kind)s; deadline: %(hours)s working hours"))
    description = words % {"kind": category.get_kind_display(), "hours": _hours(category.deadline_hours)}
    return {
        "service_code": category.code,
        "service_name": category.display_name,
        "description": description,
        "metadata": (category.n_attributes > 0 if hasattr(category, "n_attributes")
                     else category.open311_attributes.exists()),
        "type": "realtime",
        "keywords": ", ".join(str(k) for k in keywords or []),
        "group": category.parent.display_name if category.parent_id else None,
    }


def definition_row(category: Category, attributes: list[ServiceAttribute]) -> dict:
    rows = []
    for a in attributes:
        row = {
            "variable": a.variable,
            "code": a.code,
            "datatype": a.datatype,
            "required": a.required,
            "datatype_description": a.hint or None,
            "order": a.order,
            "description": a.question,
        }
        if a.datatype in ("singlevaluelist", "multivaluelist"):
            row["values"] = a.choices()
        rows.append(row)
    return {"service_code": category.code, "attributes": rows}


# --------------------------------------------------------------------------- requests


def effective_status_expression():
    """The case's status, or that of the case it was merged into (two levels deep)."""
    return SqlCase(
        When(case__status=S.MERGED, case__merged_into__status=S.MERGED, then=F("case__merged_into__merged_into__status")),
        When(case__status=S.MERGED, then=F("case__merged_into__status")),
        default=F("case__status"),
    )


def find_requests(*, numbers: list[str] | None = None, codes: list[str] | None = None,
                  statuses: set[str] | None = None, start: datetime | None = None, end: datetime | None = None):
    """Reports, newest first. ``numbers`` overrides everything else (as the spec says)."""
    qs = Report.objects.all()
    if numbers is not None:
        # As typed or read out too: lower case, spaces, without the R.
        numbers = [numbers_.normalise(n) or n for n in numbers]
        return qs.filter(number__in=numbers).order_by("-received_at", "-pk")
    if codes:
        qs = qs.filter(Q(case__category__code__in=codes) | Q(case__category__isnull=True, category__code__in=codes))
    if statuses and statuses != {"open", "closed"}:
        qs = qs.annotate(effective_status=effective_status_expression())
        closed = Q(effective_status__in=CLOSED_STATUSES)
        waiting = Q(effective_status__isnull=True)  # received, no case yet: open
        qs = qs.filter(closed if statuses == {"closed"} else (~closed | waiting))
    if start is not None:
        qs = qs.filter(received_at__gte=start)
    if end is not None:
        qs = qs.filter(received_at__lte=end)
    return qs.order_by("-received_at", "-pk")


def _follow(case: Case | None) -> Case | None:
    seen = set()
    while case is not None and case.status == S.MERGED and case.merged_into_id and case.pk not in seen:
        seen.add(case.pk)
        case = case.merged_into
    return case


def open311_status(status: str | None) -> str:
    return "closed" if status in CLOSED_STATUSES else "open"


def _local(value: datetime) -> str:
    return value.astimezone(city_zone()).strftime("%Y-%m-%d %H:%M")


def _notes(case: Case | None, own: Case | None) -> str | None:
    if case is None:
        return None
    label = S(case.status).label
    if own is not None and own.pk != case.pk:
        return _("Handled together with an earlier report of the same problem: %(status)s") % {"status": label}
    return str(label)


def received_notice() -> str:
    """What a request waiting for the intake pipeline says (in the request's language)."""
    return _("Received. It is being classified and sent to the responsible department; check back shortly.")


def _notice(report: Report, case: Case | None, checking: bool = False) -> str | None:
    """What happens next; ``checking``: a dispatcher has yet to answer whether it repeats a case."""
    if case is None:
        return received_notice() if report.duplicate == DuplicateOutcome.PENDING else None
    if case.status in CLOSED_STATUSES:
        return None
    parts = []
    checking = checking and report.case_id == case.pk  # merged since, or kept apart: decided
    if report.duplicate == DuplicateOutcome.ATTACHED:
        parts.append(_("This problem was already reported; your report was added to the same case."))
    elif checking and case.due_at is None:  # one sentence, not two that begin alike
        return str(_("A dispatcher is checking whether an earlier report is about the same problem, "
                     "and will then send it on."))
    elif checking:
        parts.append(_("A dispatcher is checking whether an earlier report is about the same problem."))
    if case.due_at is not None:
        parts.append(_("The city aims to resolve it by %(due)s.") % {"due": _local(case.due_at)})
    elif case.category_id is None:
        parts.append(_("A dispatcher will assign it to the responsible department."))
    else:  # not sent on yet: no area, no routing rule, reopened, or returned by a department
        parts.append(_("A dispatcher will send it to the responsible department."))
    # Chinese sentences follow one another without a space (。预计…).
    return ("" if prefers_chinese() else " ").join(str(p) for p in parts) or None


PLACE_DEPTHS = (1, 2)  # district and street: a grid or community name is the city's own bookkeeping


def place_name(area_id: int | None) -> str | None:
    """A request's place as people say it, for a request without an address of its
    own: the street and district ("Xiaodongmen Subdistrict, Huangpu"; 黄浦区小东门街道),
    not the grid the point fell in ("…Community 2 Grid 1", which reads as no address)."""
    if area_id is None:
        return None
    loc = get_locator()
    info = loc.by_id.get(area_id)
    if info is None:
        return None
    chain = [a for a in loc.chain(info) if a.depth in PLACE_DEPTHS] or [info]
    if prefers_chinese():
        return "".join(a.display_name for a in chain)
    return ", ".join(a.display_name for a in reversed(chain))


def request_rows(reports) -> list[dict]:
    """GeoReport ``request`` rows for these reports (a few queries for all of them)."""
    reports = list(reports.select_related(
        "category", "area", "case", "case__category", "case__merged_into", "case__merged_into__category",
        "case__merged_into__merged_into", "case__merged_into__merged_into__category",
    ) if hasattr(reports, "select_related") else reports)
    handling = {r.pk: _follow(r.case) for r in reports}
    case_ids = {c.pk for c in handling.values() if c is not None} | {r.case_id for r in reports if r.case_id}
    leads = {
        a.case_id: a.department.display_name
        for a in CaseAssignment.objects.filter(case_id__in=case_ids, role=AssignmentRole.LEAD, active=True)
        .select_related("department")
    }
    last = dict(TimelineEntry.objects.filter(case_id__in=case_ids).values("case_id").annotate(at=Max("at"))
                .values_list("case_id", "at"))
    asked = [r.pk for r in reports if r.duplicate == DuplicateOutcome.ASK]
    checking = set(DuplicateSuggestion.objects.filter(report_id__in=asked, status=SuggestionStatus.PENDING)
                   .values_list("report_id", flat=True)) if asked else set()
    rows = []
    for r in reports:
        case = handling[r.pk]
        category = (case.category if case is not None and case.category_id else None) or \
            (r.case.category if r.case is not None and r.case.category_id else None) or r.category
        times = [t for t in (r.received_at, last.get(r.case_id), last.get(case.pk) if case else None) if t]
        published = r.channel not in UNPUBLISHED_CHANNELS
        area_name = place_name(r.area_id)
        rows.append({
            "service_request_id": r.number,
            "status": open311_status(case.status if case else None),
            "status_notes": _notes(case, r.case),
            "service_name": category.display_name if category else None,
            "service_code": category.code if category else None,
            "description": (redact_text(r.description) or None) if published else None,
            "agency_responsible": leads.get(case.pk) if case else None,
            "service_notice": _notice(r, case, r.pk in checking),
            "requested_datetime": w3c(r.received_at),
            # GeoReport: "for requests with status=closed, this will be the date the request was closed".
            "updated_datetime": w3c(case.closed_at if case is not None and case.status in CLOSED_STATUSES
                                    and case.closed_at else max(times)),
            "expected_datetime": w3c(case.due_at) if case is not None and case.status not in CLOSED_STATUSES else None,
            "address": (redact_text(r.address) or area_name) if published else area_name,
            "address_id": r.area.code if r.area_id else None,
            "zipcode": None,
            "lat": r.lat if published else None,
            "long": r.lon if published else None,
            "media_url": (r.media_url or None) if published else None,
        })
    return rows


# --------------------------------------------------------------------------- updates (servicerequestupdates)


# The states of FixMyStreet's update extension (its client maps them: "fixed" to
# fixed, "no_further_action" to unable to fix, "in_progress" and
# "action_scheduled" to themselves; a bare "closed" it reads as fixed, so a case
# not taken up must not say "closed").
UPDATE_STATES = {
    S.NEW: "open", S.ACCEPTED: "open", S.REOPENED: "open", S.DISPATCHED: "action_scheduled",
    S.IN_PROGRESS: "in_progress", S.AWAITING_VERIFICATION: "in_progress", S.CLOSED: "fixed", S.RATED: "fixed",
    S.REJECTED: "no_further_action",
}


def update_state(status: str | None) -> str:
    return UPDATE_STATES.get(status, "open")


def _update_description(to_status: str, merged_into_status: str | None) -> str:
    if to_status == S.NEW:
        return str(_("Received"))
    if to_status == S.MERGED:
        return _("Handled together with an earlier report of the same problem: %(status)s") % {
            "status": S(merged_into_status).label if merged_into_status else S.MERGED.label}
    return str(S(to_status).label)


def update_rows(*, start: datetime, end: datetime, offset: int, limit: int) -> list[dict]:
    """Status changes of the cases handling requests, one row per (change,
    request), oldest first. A request sees the changes of its own case and,
    once merged, of the case it was merged into, from the time it was received."""
    base = (TimelineEntry.objects.filter(at__gte=start, at__lte=end).exclude(to_status="")
            .exclude(to_status=F("from_status")))
    fields = ["pk", "at", "to_status", "case__merged_into__status"]
    own = (base.filter(case__reports__received_at__lte=F("at"))
           .values(*fields, report_pk=F("case__reports__pk"), number=F("case__reports__number")))
    via_merge = (base.filter(case__merged_cases__reports__received_at__lte=F("at"))
                 .values(*fields, report_pk=F("case__merged_cases__reports__pk"),
                         number=F("case__merged_cases__reports__number")))
    need = offset + limit
    rows = {}
    for qs in (own, via_merge):
        for row in qs.order_by("at", "pk", "report_pk")[:need]:
            rows[(row["pk"], row["report_pk"])] = row
    ordered = sorted(rows.values(), key=lambda r: (r["at"], r["pk"], r["report_pk"]))[offset:need]
    out = []
    for row in ordered:
        status = row["to_status"]
        out.append({
            "update_id": f"{row['pk']}-{row['report_pk']}",
            "service_request_id": row["number"],
            # A merge: the request goes on open with the case it joined (whose later
            # changes follow as rows of their own); not that case's state of today.
            "status": "open" if status == S.MERGED else update_state(status),
            "updated_datetime": w3c(row["at"]),
            "description": _update_description(status, row["case__merged_into__status"]),
            "media_url": None,
        })
    return out
