"""Every change to a case goes through one of these named actions.

Each action checks the transition table and the actor's role and scope,
claims the case atomically (``UPDATE … WHERE status = expected AND version =
seen``: of two people acting at once exactly one wins, the other gets
:class:`CaseConflict`), and writes the case, its timeline entry and the audit
record in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import translation
from django.utils.translation import gettext as _

from chengyun.areas.models import Area
from chengyun.areas.services import locate
from chengyun.audit.services import actor_name, record
from chengyun.clock import now
from chengyun.org import scope
from chengyun.org.models import Department, Role
from chengyun.taxonomy.models import Category, Priority, deadline_factor
from chengyun.taxonomy.services import route

from .calendar import WorkingCalendar
from .errors import CaseConflict, CaseForbidden, CaseInvalid, InvalidTransition
from .models import (
    AssignmentRole,
    Case,
    CaseAssignment,
    Channel,
    DeadlineState,
    ExtensionRequest,
    ExtensionStatus,
    PartStatus,
    Satisfaction,
    TimelineEntry,
)
from .queries import past_dispatch_time
from .workflow import ACTIONS, AUTOMATIC_ACTIONS, OPEN_STATUSES, WAITING_FOR_DISPATCH, CaseStatus

S = CaseStatus


# --------------------------------------------------------------------------- helpers


def _require(value, field: str, message: str | None = None):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CaseInvalid(message or _("This field is required: %(field)s") % {"field": field}, field=field)
    return value.strip() if isinstance(value, str) else value


def _timeline(case: Case, action: str, by, *, at, from_status="", to_status="", note="", data=None) -> TimelineEntry:
    return TimelineEntry.objects.create(
        case=case, at=at, actor=by if by is not None and not isinstance(by, str) else None,
        actor_name=actor_name(by), action=action, from_status=from_status, to_status=to_status,
        note=note or "", data=data or {},
    )


def _check_allowed(case: Case, action_name: str, by) -> None:
    action = ACTIONS[action_name]
    if case.status not in action.sources:
        raise InvalidTransition(
            _("Cannot “%(action)s” a case that is “%(status)s”.")
            % {"action": action.label, "status": case.get_status_display()}
        )
    if by is None or isinstance(by, str):
        if action_name not in AUTOMATIC_ACTIONS:
            raise CaseForbidden(_("Only a person can take this action."))
        return
    if not scope.can_act(by, case, set(action.roles)):
        raise CaseForbidden(_("Your role or your area does not allow “%(action)s” on this case.")
                            % {"action": action.label})


def _act(
    case: Case,
    action_name: str,
    by,
    *,
    to: str | None = None,
    note: str = "",
    data: dict | None = None,
    fields: dict | None = None,
    side_effects: Callable[[Case, object], None] | None = None,
) -> Case:
    """Check, claim, change, and write timeline + audit, all in one transaction."""
    action = ACTIONS[action_name]
    _check_allowed(case, action_name, by)
    if action.needs_reason:
        note = _require(note, "reason", _("Please give a reason."))
    target = to or (next(iter(action.targets)) if len(action.targets) == 1 else case.status)
    if target not in action.targets and action.targets:
        raise InvalidTransition(_("“%(action)s” cannot lead to “%(status)s”.") % {"action": action.label, "status": target})
    at = now()
    fields = dict(fields or {})
    if target in WAITING_FOR_DISPATCH and case.status not in WAITING_FOR_DISPATCH:
        fields.setdefault("waiting_since", at)  # back in the dispatcher's queue: its dispatch time starts again
        # A new stage, as dispatch starts one: escalation counts afresh (for its dispatch time).
        fields.setdefault("escalation_level", 0)
        fields.setdefault("escalated_to", None)
    with transaction.atomic():
        claimed = Case.objects.filter(pk=case.pk, status=case.status, version=case.version).update(
            status=target, version=F("version") + 1, **fields
        )
        if claimed != 1:
            raise CaseConflict(_("Someone else changed case %(number)s first. Reload it and try again.") % {"number": case.number})
        source = case.status
        case.status = target
        case.version += 1
        for name, value in fields.items():
            setattr(case, name, value)
        if side_effects is not None:
            side_effects(case, at)
        _timeline(case, action_name, by, at=at, from_status=source, to_status=target, note=note, data=data)
        record(
            f"case.{action_name}", actor=by, obj=case, at=at,
            data={"number": case.number, "from": source, "to": target, "note": note, **(data or {})},
        )
    if hasattr(case, "_prefetched_objects_cache"):
        case._prefetched_objects_cache.clear()
    return case


def _calendar() -> WorkingCalendar:
    return WorkingCalendar.from_db()


def compute_deadlines(category: Category | None, priority: str, start) -> tuple:
    """(response due, handling due) for a case dispatched at ``start``."""
    if category is None:
        return None, None
    factor = deadline_factor(priority, category.priority)
    cal = _calendar()
    kind = category.deadline_kind
    due = cal.add_hours(start, Decimal(category.deadline_hours) * Decimal(str(factor)), kind)
    # A response is never due after the work itself (an urgent case's deadline may be
    # shorter than the category's response hours).
    response_due = min(cal.add_hours(start, category.response_hours, kind), due)
    return response_due, due


def _clock_stop(case: Case, at):
    """When the department's time ran until: its report of the work done, while the
    case waits to be checked (checking is not the department's time), else ``at``."""
    if case.status == S.AWAITING_VERIFICATION and case.done_at is not None:
        return min(at, case.done_at)
    return at


def deadline_state_for(case: Case, at=None) -> str:
    at = at or now()
    if case.status not in OPEN_STATUSES or case.due_at is None:
        return DeadlineState.ON_TIME
    if case.status == S.AWAITING_VERIFICATION and case.done_at is not None:
        # Done before the deadline is on time, however long the check takes.
        return DeadlineState.OVERDUE if case.done_at > case.due_at else DeadlineState.ON_TIME
    if at >= case.due_at:
        return DeadlineState.OVERDUE
    start = case.dispatched_at or case.created_at
    allowed = (case.due_at - start).total_seconds()
    if allowed > 0 and (case.due_at - at).total_seconds() <= allowed * settings.NEAR_DUE_SHARE:
        return DeadlineState.NEAR_DUE
    return DeadlineState.ON_TIME


def _parts_for(case: Case, by, department: Department | None) -> CaseAssignment:
    """The active handling part the actor works on."""
    active = [a for a in CaseAssignment.objects.filter(case=case, active=True).select_related("department")]
    mine = scope.handler_departments(by, case)
    if department is not None:
        mine &= {department.pk}
    parts = [a for a in active if a.department_id in mine]
    if not parts:
        raise CaseForbidden(_("Your department has no part in case %(number)s.") % {"number": case.number})
    parts.sort(key=lambda a: a.role != AssignmentRole.LEAD)  # the lead part first
    return parts[0]


# --------------------------------------------------------------------------- intake


def check_point(lon: float | None, lat: float | None) -> None:
    """Both coordinates or neither, each in its range; errors name the field."""
    if (lon is None) != (lat is None):
        raise CaseInvalid(_("Give both longitude and latitude, or neither."), field="lon" if lon is None else "lat")
    if lon is not None:
        if not (-180 <= lon <= 180):
            raise CaseInvalid(_("Longitude must be between -180 and 180."), field="lon")
        if not (-90 <= lat <= 90):
            raise CaseInvalid(_("Latitude must be between -90 and 90."), field="lat")


@transaction.atomic
def create_case(
    *,
    title: str,
    description: str = "",
    category: Category | None = None,
    lon: float | None = None,
    lat: float | None = None,
    address: str = "",
    channel: str = Channel.WEB,
    priority: str | None = None,
    by=None,
    generated: bool = False,
    area: Area | None = None,
) -> Case:
    """Register a new case; it is located in the area tree if it has a point,
    unless ``area`` is given (the intake pipeline located it, or found it from
    the address)."""
    title = _require(title, "title")
    if len(title) > 200:
        raise CaseInvalid(_("The title is too long (at most 200 characters)."), field="title")
    if channel not in Channel.values:
        raise CaseInvalid(_("Unknown channel “%(channel)s”.") % {"channel": channel}, field="channel")
    if priority is not None and priority not in Priority.values:
        raise CaseInvalid(_("Unknown priority “%(priority)s”.") % {"priority": priority}, field="priority")
    check_point(lon, lat)
    if lon is not None:
        if area is None:  # the intake pipeline has located it already
            chain = locate(lon, lat)
            area = Area.objects.get(pk=chain[-1].id) if chain else None
    at = now()
    case = Case.objects.create(
        title=title, description=description or "", category=category,
        priority=priority or (category.priority if category else Priority.NORMAL),
        channel=channel, lon=lon, lat=lat, address=address or "", area=area,
        area_path=area.path if area else "", created_by=by if by is not None and not isinstance(by, str) else None,
        created_at=at, generated=generated,
    )
    local = at.astimezone(ZoneInfo(settings.TIME_ZONE))  # the number carries the city's date
    case.number = f"{local:%Y%m%d}{case.pk:07d}"
    Case.objects.filter(pk=case.pk).update(number=case.number)
    _timeline(case, "create", by, at=at, to_status=case.status, data={"channel": channel})
    record("case.create", actor=by, obj=case, at=at, data={
        "number": case.number, "channel": channel, "category": category.code if category else None,
        "area": area.code if area else None,
    })
    return case


# --------------------------------------------------------------------------- acceptance


def accept_case(case: Case, *, by, note: str = "", category: Category | None = None, priority: str | None = None) -> Case:
    fields = {"accepted_at": now()}
    data = {}
    previous = case.category
    if category is not None and category.pk != case.category_id:
        fields["category"] = category
        data["category"] = category.code
    if priority is not None:
        if priority not in Priority.values:
            raise CaseInvalid(_("Unknown priority “%(priority)s”.") % {"priority": priority}, field="priority")
        fields["priority"] = priority
        data["priority"] = priority

    def correction(c, at):
        if "category" in fields:
            _record_correction(c, previous, category, by, at)

    return _act(case, "accept", by, note=note, data=data, fields=fields, side_effects=correction)


def _record_correction(case: Case, previous: Category | None, category: Category, by, at) -> None:
    """A person changed the category: the classifier learns from it next time."""
    if by is None or isinstance(by, str):
        return
    from chengyun.intake.services import record_correction

    record_correction(case, previous, category, by=by, at=at)


def reclassify_case(case: Case, *, by, category: Category, note: str = "") -> Case:
    """Change the category of a case that is not yet dispatched (or reopened; a
    dispatched one is recalled first, :func:`recall_case`)."""
    if category is None:
        raise CaseInvalid(_("Choose a category."), field="category")
    if case.status not in (S.NEW, S.ACCEPTED, S.REOPENED):
        raise InvalidTransition(_("Only a case that is not yet dispatched can be reclassified: recall it first."))
    if not scope.can_act(by, case, {Role.OPERATOR, Role.DISPATCHER, Role.ADMIN}):
        raise CaseForbidden(_("You may not reclassify this case."))
    if category.pk == case.category_id:
        return case
    previous, old_priority = case.category, case.priority
    at = now()
    with transaction.atomic():
        claimed = Case.objects.filter(pk=case.pk, version=case.version).update(
            category=category, priority=category.priority, version=F("version") + 1
        )
        if claimed != 1:
            raise CaseConflict(_("Someone else changed case %(number)s first. Reload it and try again.") % {"number": case.number})
        case.category, case.priority = category, category.priority
        case.version += 1
        data = {"from": previous.code if previous else None, "to": category.code}
        if old_priority != category.priority:  # the priority follows the category: said, not silent
            data["priority_from"], data["priority_to"] = old_priority, category.priority
        _timeline(case, "reclassify", by, at=at, note=note, data=data)
        record("case.reclassify", actor=by, obj=case, at=at, data={"number": case.number, **data, "note": note})
        _record_correction(case, previous, category, by, at)
    return case


RELOCATE_ROLES = {Role.OPERATOR, Role.DISPATCHER, Role.ADMIN}


def relocate_case(case: Case, *, by, area: Area | None = None, lon=None, lat=None, note: str = "") -> Case:
    """Correct where a case is before it is dispatched (or when reopened; a
    dispatched one is recalled first): a point, located in the area tree, or an
    area (a street of the district an address named, say). A point outside the
    new area is dropped. The route is then suggested for the new place."""
    if not scope.can_act(by, case, RELOCATE_ROLES):
        raise CaseForbidden(_("You may not move this case."))
    if case.status not in (S.NEW, S.ACCEPTED, S.REOPENED):
        raise InvalidTransition(_("Only a case that is not yet dispatched can be moved: recall it first."))
    if area is not None and (lon is not None or lat is not None):
        raise CaseInvalid(_("Choose an area or give a point, not both: the point says the area."), field="area")
    if lon is not None or lat is not None:
        check_point(lon, lat)
        chain = locate(lon, lat)
        if not chain:
            raise CaseInvalid(_("This point is outside the city's areas."), field="lon")
        area = Area.objects.get(pk=chain[-1].id)
    elif area is None:
        raise CaseInvalid(_("Choose an area or give a point."), field="area")
    elif case.lon is not None and not any(a.id == area.pk for a in locate(case.lon, case.lat)):
        lon = lat = None  # the old point is not in the area it was moved to
    else:
        lon, lat = case.lon, case.lat
    if not scope.can_act_in(by, area.path, RELOCATE_ROLES):
        raise CaseForbidden(_("%(area)s is outside your area.") % {"area": area.display_name})
    if area.pk == case.area_id and (lon, lat) == (case.lon, case.lat):
        return case  # already there: nothing to record (a retried move is not an error)
    previous = case.area
    at = now()
    with transaction.atomic():
        claimed = Case.objects.filter(pk=case.pk, version=case.version).update(
            area=area, area_path=area.path, lon=lon, lat=lat, version=F("version") + 1)
        if claimed != 1:
            raise CaseConflict(_("Someone else changed case %(number)s first. Reload it and try again.") % {"number": case.number})
        case.area, case.area_path, case.lon, case.lat = area, area.path, lon, lat
        case.version += 1
        if case.escalated_to_id is not None and not area.path.startswith(case.escalated_to.path):
            # Escalated to a centre it is no longer under: the sweep escalates it again, to its own.
            Case.objects.filter(pk=case.pk).update(escalation_level=0, escalated_to=None)
            case.escalation_level, case.escalated_to = 0, None
        data = {"from": previous.code if previous else None, "to": area.code, "lon": lon, "lat": lat}
        _timeline(case, "relocate", by, at=at, note=note, data=data)
        record("case.relocate", actor=by, obj=case, at=at, data={"number": case.number, **data, "note": note})
    return case


def reject_case(case: Case, *, by, reason: str) -> Case:
    return _act(case, "reject", by, note=reason, fields={"closed_at": now()})


def merge_case(case: Case, *, into: Case, by, note: str = "") -> Case:
    if into is None:
        raise CaseInvalid(_("Choose the case to merge into."), field="into")
    if into.pk == case.pk:
        raise CaseInvalid(_("A case cannot be merged into itself."), field="into")
    if into.status not in OPEN_STATUSES:
        raise CaseInvalid(_("Case %(number)s is not open; merge into an open case.") % {"number": into.number}, field="into")
    if not scope.can_see(by, into):
        raise CaseForbidden(_("You may not see case %(number)s.") % {"number": into.number})

    def link(c, at):
        _timeline(into, "merged_in", by, at=at, note=note, data={"case": c.number})
        # Its open duplicate questions are answered: merged (into this case or another).
        from chengyun.intake.models import DuplicateSuggestion, SuggestionStatus

        DuplicateSuggestion.objects.filter(case=c, status=SuggestionStatus.PENDING).update(
            status=SuggestionStatus.MERGED, decided_by=by if by is not None and not isinstance(by, str) else None,
            decided_at=at)

    return _act(case, "merge", by, note=note, data={"into": into.number},
                fields={"merged_into": into, "closed_at": now()}, side_effects=link)


def unmerge_case(case: Case, *, by, reason: str) -> Case:
    """Undo a merge: the case is new again and handled on its own."""
    original = case.merged_into

    def unlink(c, at):
        if original is not None:
            _timeline(original, "merge_undone", by, at=at, note=reason, data={"case": c.number})

    return _act(case, "unmerge", by, note=reason, data={"from": original.number if original else None},
                fields={"merged_into": None, "closed_at": None}, side_effects=unlink)


def self_dispose_case(case: Case, *, by, note: str) -> Case:
    """A grid inspector fixed it while on patrol (自行处置): closed at once."""
    if case.category is None or not case.category.self_dispose:
        raise CaseInvalid(_("This category cannot be closed on the spot; it must be dispatched."), field="category")
    at = now()
    return _act(case, "self_dispose", by, note=note, fields={"closed_at": at, "done_at": at, "resolved": True})


# --------------------------------------------------------------------------- dispatch


def suggest_route(case: Case):
    return route(case.category, case.area)


def dispatch_case(
    case: Case,
    *,
    by,
    lead: Department | None = None,
    assisting: Iterable[Department] = (),
    note: str = "",
    decision=None,
) -> Case:
    """Send the case to a lead department (+ assisting). Without ``lead`` the
    routing rules choose; a person's choice that differs is recorded as an
    override of the suggestion. ``decision``: the routing decision, if the
    caller has just made it (the intake pipeline), so it is not made twice."""
    if case.category_id is None:
        raise CaseInvalid(_("Classify the case before dispatching it."), field="category")
    decision = decision or suggest_route(case)
    assisting = [d for d in assisting if d is not None]
    if lead is None:
        if decision.lead is None:
            raise CaseInvalid(_("No routing rule finds a department for this case; choose the lead department."), field="lead")
        lead = decision.lead
        if not assisting:
            assisting = list(decision.assisting)
    if not lead.active:
        raise CaseInvalid(_("Department %(name)s is not active.") % {"name": lead}, field="lead")
    assisting = [d for d in dict.fromkeys(assisting) if d.pk != lead.pk]
    overridden = decision.lead is None or lead.pk != decision.lead.pk
    explanation = dict(decision.explanation)
    explanation["overridden"] = overridden
    if overridden:
        explanation["chosen_lead"] = lead.code
        explanation["override_note"] = note
    at = now()
    response_due, due = compute_deadlines(case.category, case.priority, at)

    def assign(c, at):
        CaseAssignment.objects.filter(case=c, active=True).update(active=False, status=PartStatus.WITHDRAWN)
        _withdraw_extensions(c, by, at)  # a new dispatch starts with new deadlines
        CaseAssignment.objects.create(case=c, department=lead, role=AssignmentRole.LEAD, dispatched_at=at)
        for d in assisting:
            CaseAssignment.objects.create(case=c, department=d, role=AssignmentRole.ASSISTING, dispatched_at=at)

    return _act(
        case, "dispatch", by, note=note,
        data={"lead": lead.code, "assisting": [d.code for d in assisting], "rule": decision.rule.pk if decision.rule else None,
              "overridden": overridden},
        fields={
            "dispatched_at": at, "response_due_at": response_due, "due_at": due, "responded_at": None,
            "route_rule": decision.rule, "route_explanation": explanation,
            "deadline_state": DeadlineState.ON_TIME, "escalation_level": 0, "escalated_to": None,
        },
        side_effects=assign,
    )


def return_case(case: Case, *, by, reason: str, department: Department | None = None) -> Case:
    """退单: a department says the case is not theirs. The lead's return sends
    the case back for re-dispatch; an assisting department's return only ends
    its own part."""
    _check_allowed(case, "return", by)
    part = _parts_for(case, by, department)
    reason = _require(reason, "reason", _("Please give a reason."))
    if part.role == AssignmentRole.ASSISTING:
        with transaction.atomic():  # both, or neither if someone else changed the case first
            _withdraw_extensions(case, by, now(), department=part.department)
            return _part_only(case, part, by, "return_part", reason, status=PartStatus.RETURNED, active=False)

    def withdraw(c, at):
        CaseAssignment.objects.filter(case=c, active=True).update(active=False, status=PartStatus.WITHDRAWN)
        CaseAssignment.objects.filter(pk=part.pk).update(status=PartStatus.RETURNED)
        _withdraw_extensions(c, by, at)

    return _act(case, "return", by, note=reason, data={"department": part.department.code},
                fields={"due_at": None, "response_due_at": None, "deadline_state": DeadlineState.ON_TIME},
                side_effects=withdraw)


def _withdraw_extensions(case: Case, by, at, department=None) -> None:
    """An extension asked for by departments whose part has ended (all, or
    ``department``'s) is no longer decided on: it would stay pending, block the next
    department's own request, and its hours would be added to the next dispatch's
    deadline if approved."""
    pending = ExtensionRequest.objects.filter(case=case, status=ExtensionStatus.PENDING)
    if department is not None:
        pending = pending.filter(department=department)
    with translation.override(settings.LANGUAGE_CODE):  # stored: the site's language
        note = _("Withdrawn: the department's part ended.")
    pending.update(status=ExtensionStatus.WITHDRAWN, decided_at=at,
                   decided_by=by if not (by is None or isinstance(by, str)) else None, decision_note=note)


def recall_case(case: Case, *, by, reason: str) -> Case:
    """改派: a dispatcher takes a dispatched case back from all its departments (the
    route was wrong, whether the platform chose it or a person did), to reclassify
    it if need be and dispatch it again. Every part is withdrawn and the deadlines
    go with them; the next dispatch sets new ones."""
    _check_allowed(case, "recall", by)
    reason = _require(reason, "reason", _("Please give a reason."))
    departments = [p.department.code for p in case.assignments.select_related("department").filter(active=True)]

    def withdraw(c, at):
        CaseAssignment.objects.filter(case=c, active=True).update(active=False, status=PartStatus.WITHDRAWN)
        _withdraw_extensions(c, by, at)

    return _act(case, "recall", by, note=reason, data={"departments": departments},
                fields={"due_at": None, "response_due_at": None, "deadline_state": DeadlineState.ON_TIME},
                side_effects=withdraw)


def _part_only(case: Case, part: CaseAssignment, by, action: str, note: str, **changes) -> Case:
    """A change to one assisting part that leaves the case status alone."""
    at = now()
    with transaction.atomic():
        claimed = Case.objects.filter(pk=case.pk, status=case.status, version=case.version).update(version=F("version") + 1)
        if claimed != 1:
            raise CaseConflict(_("Someone else changed case %(number)s first. Reload it and try again.") % {"number": case.number})
        case.version += 1
        stamp = {PartStatus.IN_PROGRESS: "started_at", PartStatus.DONE: "done_at"}.get(changes.get("status"))
        if stamp:
            changes[stamp] = at
        CaseAssignment.objects.filter(pk=part.pk).update(**changes)
        data = {"department": part.department.code, "part": part.role}
        _timeline(case, action, by, at=at, from_status=case.status, to_status=case.status, note=note, data=data)
        record(f"case.{action}", actor=by, obj=case, at=at, data={"number": case.number, "note": note, **data})
    return case


def start_case(case: Case, *, by, department: Department | None = None, note: str = "") -> Case:
    _check_allowed(case, "start", by)
    part = _parts_for(case, by, department)
    if part.status != PartStatus.DISPATCHED:
        raise InvalidTransition(_("This department has already started."))
    if part.role == AssignmentRole.ASSISTING:
        return _part_only(case, part, by, "start_part", note, status=PartStatus.IN_PROGRESS)
    at = now()

    def mark(c, at):
        CaseAssignment.objects.filter(pk=part.pk).update(status=PartStatus.IN_PROGRESS, started_at=at)

    return _act(case, "start", by, to=S.IN_PROGRESS, note=note, data={"department": part.department.code},
                fields={"responded_at": case.responded_at or at}, side_effects=mark)


def report_done(case: Case, *, by, note: str = "", department: Department | None = None) -> Case:
    if case.status != S.DISPATCHED:  # while dispatched, only an assisting part may report done
        _check_allowed(case, "report_done", by)
    part = _parts_for(case, by, department)
    if part.role == AssignmentRole.ASSISTING:
        if case.status not in (S.DISPATCHED, S.IN_PROGRESS):
            raise InvalidTransition(_("The case is not being handled."))
        with transaction.atomic():  # done: its extension asked for is no longer wanted
            _withdraw_extensions(case, by, now(), department=part.department)
            return _part_only(case, part, by, "report_done_part", note, status=PartStatus.DONE)
    if case.status == S.DISPATCHED:
        _check_allowed(case, "report_done", by)  # raises: start first

    def mark(c, at):
        CaseAssignment.objects.filter(pk=part.pk).update(status=PartStatus.DONE, done_at=at)
        # Done: an extension it asked for is not decided on (if the check fails, it asks again).
        _withdraw_extensions(c, by, at, department=part.department)

    return _act(case, "report_done", by, note=note, data={"department": part.department.code},
                fields={"done_at": now()}, side_effects=mark)


# --------------------------------------------------------------------------- extensions


def _parse_hours(hours) -> Decimal:
    try:
        value = Decimal(str(hours))
    except (InvalidOperation, TypeError, ValueError):
        raise CaseInvalid(_("Extra hours must be a number."), field="hours") from None
    if value <= 0 or value > 24 * 365:
        raise CaseInvalid(_("Extra hours must be more than 0 and at most a year."), field="hours")
    return value


def request_extension(case: Case, *, by, hours, reason: str, department: Department | None = None) -> ExtensionRequest:
    _check_allowed(case, "request_extension", by)
    part = _parts_for(case, by, department)
    value = _parse_hours(hours)
    reason = _require(reason, "reason", _("Please give a reason."))
    if case.extensions.filter(status=ExtensionStatus.PENDING).exists():
        raise InvalidTransition(_("An extension request for this case is already waiting for a decision."))
    created = {}

    def make(c, at):
        created["req"] = ExtensionRequest.objects.create(
            case=c, department=part.department, hours=value, reason=reason, requested_by=by, requested_at=at
        )

    _act(case, "request_extension", by, note=reason, data={"hours": str(value), "department": part.department.code},
         side_effects=make)
    return created["req"]


def _pending_extension(case: Case, request: ExtensionRequest | None) -> ExtensionRequest:
    req = request or case.extensions.filter(status=ExtensionStatus.PENDING).first()
    if req is None or req.case_id != case.pk or req.status != ExtensionStatus.PENDING:
        raise InvalidTransition(_("There is no pending extension request on this case."))
    return req


def approve_extension(case: Case, *, by, request: ExtensionRequest | None = None, note: str = "") -> Case:
    _check_allowed(case, "approve_extension", by)
    req = _pending_extension(case, request)
    kind = case.category.deadline_kind if case.category_id else "calendar"
    base = case.due_at or now()
    new_due = _calendar().add_hours(base, req.hours, kind)

    def decide(c, at):
        n = ExtensionRequest.objects.filter(pk=req.pk, status=ExtensionStatus.PENDING).update(
            status=ExtensionStatus.APPROVED, decided_by=by, decided_at=at, decision_note=note)
        if n != 1:
            raise CaseConflict(_("The extension request was decided by someone else first."))
        c.deadline_state = deadline_state_for(c, at)
        Case.objects.filter(pk=c.pk).update(deadline_state=c.deadline_state)

    return _act(case, "approve_extension", by, note=note, data={"hours": str(req.hours), "due_at": new_due.isoformat()},
                fields={"due_at": new_due}, side_effects=decide)


def deny_extension(case: Case, *, by, reason: str, request: ExtensionRequest | None = None) -> Case:
    _check_allowed(case, "deny_extension", by)
    req = _pending_extension(case, request)

    def decide(c, at):
        n = ExtensionRequest.objects.filter(pk=req.pk, status=ExtensionStatus.PENDING).update(
            status=ExtensionStatus.DENIED, decided_by=by, decided_at=at, decision_note=reason)
        if n != 1:
            raise CaseConflict(_("The extension request was decided by someone else first."))

    return _act(case, "deny_extension", by, note=reason, data={"hours": str(req.hours)}, side_effects=decide)


# --------------------------------------------------------------------------- verification and closing


def verify_case(case: Case, *, by, ok: bool, note: str = "") -> Case:
    if ok:
        return _act(case, "verify_ok", by, note=note,
                    fields={"closed_at": now(), "resolved": True, "deadline_state": DeadlineState.ON_TIME
                            if case.due_at is None or now() <= case.due_at else DeadlineState.OVERDUE})

    def reopen_lead(c, at):
        CaseAssignment.objects.filter(case=c, active=True, role=AssignmentRole.LEAD).update(
            status=PartStatus.IN_PROGRESS, done_at=None)

    return _act(case, "verify_fail", by, note=note, fields={"done_at": None}, side_effects=reopen_lead)


def close_case(case: Case, *, by, reason: str) -> Case:
    return _act(case, "close", by, note=reason, fields={"closed_at": now()})


def record_callback(case: Case, *, by, satisfaction: str, resolved: bool | None = None, note: str = "") -> Case:
    """回访: the reporter's answer. "Unsatisfied" reopens the case."""
    if satisfaction not in Satisfaction.values:
        raise CaseInvalid(_("Choose how satisfied the reporter is."), field="satisfaction")
    fields = {"satisfaction": satisfaction}
    if resolved is not None:
        fields["resolved"] = resolved
    target = S.REOPENED if satisfaction == Satisfaction.UNSATISFIED else S.RATED
    if target == S.REOPENED:
        # A reopened case waits for a new dispatch, which sets new deadlines.
        fields.update(closed_at=None, deadline_state=DeadlineState.ON_TIME, due_at=None, response_due_at=None)

    def withdraw(c, at):
        if target == S.REOPENED:
            CaseAssignment.objects.filter(case=c, active=True).update(active=False)
            _withdraw_extensions(c, by, at)

    return _act(case, "callback", by, to=target, note=note, data={"satisfaction": satisfaction, "resolved": resolved},
                fields=fields, side_effects=withdraw)


def reopen_case(case: Case, *, by, reason: str) -> Case:
    def withdraw(c, at):
        CaseAssignment.objects.filter(case=c, active=True).update(active=False)
        _withdraw_extensions(c, by, at)

    return _act(case, "reopen", by, note=reason,
                fields={"closed_at": None, "deadline_state": DeadlineState.ON_TIME, "satisfaction": "",
                        "due_at": None, "response_due_at": None},
                side_effects=withdraw)


# --------------------------------------------------------------------------- escalation


TOP_LEVEL = 3  # the city's centre: escalation levels are 1 street, 2 district, 3 city


def centre_levels() -> tuple[str, ...]:
    """The area levels with an operations centre, from the nearest to the top."""
    return tuple(getattr(settings, "OPS_CENTRE_LEVELS", ("street", "district", "city")))


def level_number(key: str | None) -> int:
    """The escalation level of a centre at area level ``key``, counted from the top of
    ``OPS_CENTRE_LEVELS`` (its last is 3, the city; the one before 2, the district; the
    one before that 1): the same for every case whatever its own area, and for any
    list the setting gives. A root whose level is not listed is the top."""
    levels = centre_levels()
    if key not in levels:
        return TOP_LEVEL
    return TOP_LEVEL - (len(levels) - 1 - levels.index(key))


def ops_centres(case: Case) -> list[Area]:
    """Operations centres above the case, nearest first (street, district, city)."""
    if case.area_id is None:
        return list(Area.objects.filter(parent__isnull=True).order_by("code")[:1])
    levels = set(centre_levels())
    chain = case.area.ancestors()
    centres = [a for a in reversed(chain) if a.level.key in levels]
    return centres or [chain[0]]


def centre_for(case: Case, wanted: int) -> tuple[int, Area | None]:
    """(level, centre) of the escalation ``wanted`` (1 street, 2 district, 3 city: see
    :func:`level_number`): that level's centre above the case, or where it has none (a
    case placed only in a district has no street centre; one without an area only the
    city) the next one up, or the top one. Levels below 1 (a centre under the street's,
    if the setting lists one) are not escalated to."""
    by_level = {}
    for area in ops_centres(case):
        number = level_number(area.level.key if area.level_id else None)
        if number >= 1:
            by_level.setdefault(number, area)
    wanted = max(1, min(wanted, TOP_LEVEL))
    if not by_level:
        return wanted, None
    above = [k for k in sorted(by_level) if k >= wanted]
    level = above[0] if above else max(by_level)
    return level, by_level[level]


def escalate_case(case: Case, *, by=None, reason: str = "", level: int | None = None,
                  centre: tuple[int, Area | None] | None = None) -> Case:
    """督办: raise the case to the next operations centre up the area tree (or to the
    centre of ``level``, see :func:`centre_for`; ``centre``: that answer, already had)."""
    new_level, target = centre or centre_for(case, level if level is not None else case.escalation_level + 1)
    if new_level <= case.escalation_level and level is None:
        raise InvalidTransition(_("The case is already escalated to the top level."))
    return _act(
        case, "escalate", by if by is not None else "system:deadlines",
        note=reason or _("Escalated"),
        data={"level": new_level, "to": target.code if target else None},
        fields={"escalation_level": new_level, "escalated_to": target},
    )


def sweep_deadlines(at=None) -> dict:
    """Refresh near-due/overdue flags and escalate: near due → the street
    centre, overdue → the district, overdue by its whole allowed time again →
    the city. A case waiting for a dispatcher past its dispatch time (派单时限)
    goes to the district, and to the city when it has waited that long again.
    Returns counts."""
    at = at or now()
    counts = {"checked": 0, "near_due": 0, "overdue": 0, "past_dispatch_time": 0, "escalated": 0}
    qs = Case.objects.filter(status__in=OPEN_STATUSES, due_at__isnull=False).select_related("area", "area__level")
    for case in qs.iterator(chunk_size=500):
        counts["checked"] += 1
        state = deadline_state_for(case, at)
        if state != case.deadline_state:
            Case.objects.filter(pk=case.pk, version=case.version).update(deadline_state=state)
            case.deadline_state = state
        if state == DeadlineState.NEAR_DUE:
            counts["near_due"] += 1
            wanted = 1
        elif state == DeadlineState.OVERDUE:
            counts["overdue"] += 1
            allowed = case.due_at - (case.dispatched_at or case.created_at)
            late = _clock_stop(case, at) - case.due_at
            wanted = 3 if late >= max(allowed, timedelta(hours=1)) else 2
        else:
            wanted = 0
        counts["escalated"] += _escalate_to(case, wanted, {
            1: _("Near its deadline"),
            2: _("Overdue"),
            3: _("Overdue by more than its allowed time"),
        })
    allowed = timedelta(hours=settings.DISPATCH_HOURS)
    # Read only those a level may still be wanted for: below the district's, or waiting
    # twice the dispatch time and below the city's.
    late_cases = past_dispatch_time(Case.objects.filter(escalation_level__lt=TOP_LEVEL), at).filter(
        Q(escalation_level__lt=TOP_LEVEL - 1) | Q(waiting_from__lte=at - 2 * allowed)).select_related("area", "area__level")
    for case in late_cases.iterator(chunk_size=500):
        counts["past_dispatch_time"] += 1
        wanted = 3 if at - case.waiting_from >= 2 * allowed else 2
        counts["escalated"] += _escalate_to(case, wanted, {
            2: _("Past its dispatch time"),
            3: _("Waiting for dispatch twice as long as allowed"),
        })
    return counts


def _escalate_to(case: Case, wanted: int, reasons: dict[int, str]) -> int:
    """Escalate ``case`` to the centre of level ``wanted`` (1 street, 2 district, 3 city;
    where it has none, the next one up: :func:`centre_for`) unless it is there
    already; 1 if it was escalated. The reason is the one for ``wanted``."""
    if wanted <= case.escalation_level:
        return 0
    level, centre = centre_for(case, wanted)
    if level <= case.escalation_level:
        return 0
    try:
        escalate_case(case, by=None, reason=reasons[wanted], level=level, centre=(level, centre))
    except (CaseConflict, InvalidTransition):
        return 0  # someone acted on it meanwhile; the next sweep looks again
    return 1


ACTION_FUNCTIONS = {
    "accept": accept_case,
    "reject": reject_case,
    "merge": merge_case,
    "dispatch": dispatch_case,
    "return": return_case,
    "recall": recall_case,
    "request_extension": request_extension,
    "approve_extension": approve_extension,
    "deny_extension": deny_extension,
    "start": start_case,
    "report_done": report_done,
    "verify_ok": lambda case, **kw: verify_case(case, ok=True, **kw),
    "verify_fail": lambda case, **kw: verify_case(case, ok=False, **kw),
    "close": close_case,
    "callback": record_callback,
    "reopen": reopen_case,
    "escalate": escalate_case,
}

ROLE_LABELS = {r.value: r.label for r in Role}
