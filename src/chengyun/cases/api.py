"""Cases over JSON: the scoped list, one case, create, and every action."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.http import Http404
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema

from chengyun.areas.models import Area
from chengyun.org import scope
from chengyun.org.models import Department, Role
from chengyun.taxonomy.models import Category

from . import services
from .errors import CaseForbidden, CaseInvalid
from .models import Case, DeadlineState
from .queries import get_visible, past_dispatch_time, queue, waiting_for_dispatch
from .workflow import CaseStatus

router = Router(tags=["cases"])


class AreaRef(Schema):
    code: str
    name: str
    level: str


class PartOut(Schema):
    department: str
    department_name: str
    role: str
    status: str
    active: bool


class TimelineOut(Schema):
    at: datetime
    by: str
    action: str
    from_status: str
    to_status: str
    note: str
    data: dict


class CaseOut(Schema):
    number: str
    title: str
    description: str
    status: str
    category: str | None
    priority: str
    channel: str
    lon: float | None
    lat: float | None
    address: str
    area: list[AreaRef]
    created_at: datetime
    dispatched_at: datetime | None
    response_due_at: datetime | None
    due_at: datetime | None
    closed_at: datetime | None
    dispatch_due_at: datetime | None = Field(
        None, description="While the case waits for a dispatcher (new, accepted, returned, recalled, reopened, "
                          "unmerged): "
                          "by when it is to be sent on (DISPATCH_HOURS after it began to wait); else null")
    dispatch_overdue: bool = Field(False, description="Waiting for a dispatcher past dispatch_due_at")
    deadline_state: str
    escalation_level: int
    merged_into: str | None
    parts: list[PartOut]
    route_explanation: dict
    satisfaction: str
    generated: bool


class CaseDetailOut(CaseOut):
    timeline: list[TimelineOut]
    allowed_actions: list[str]


def area_chains(cases) -> dict[int, list]:
    """Top-down area chains for many cases with one query (from their paths)."""
    ids = {int(x) for c in cases for x in c.area_path.strip("/").split("/") if x}
    areas = {a.pk: a for a in Area.objects.select_related("level").filter(pk__in=ids)}
    return {
        c.pk: [areas[int(x)] for x in c.area_path.strip("/").split("/") if x and int(x) in areas] for c in cases
    }


def case_out(case: Case, *, detail: bool = False, user=None, chain: list | None = None) -> dict:
    if chain is None:
        chain = case.area.ancestors() if case.area_id else []
    out = {
        "number": case.number, "title": case.title, "description": case.description, "status": case.status,
        "category": case.category.code if case.category_id else None, "priority": case.priority,
        "channel": case.channel, "lon": case.lon, "lat": case.lat, "address": case.address,
        "area": [{"code": a.code, "name": a.name, "level": a.level.key} for a in chain],
        "created_at": case.created_at, "dispatched_at": case.dispatched_at,
        "response_due_at": case.response_due_at, "due_at": case.due_at, "closed_at": case.closed_at,
        "dispatch_due_at": case.dispatch_due_at, "dispatch_overdue": case.dispatch_overdue,
        "deadline_state": case.deadline_state, "escalation_level": case.escalation_level,
        "merged_into": case.merged_into.number if case.merged_into_id else None,
        "parts": [
            {"department": a.department.code, "department_name": a.department.name, "role": a.role,
             "status": a.status, "active": a.active}
            for a in case.assignments.all()  # callers prefetch assignments__department
        ],
        "route_explanation": case.route_explanation or {},
        "satisfaction": case.satisfaction, "generated": case.generated,
    }
    if detail:
        out["timeline"] = [
            {"at": t.at, "by": t.actor_name, "action": t.action, "from_status": t.from_status,
             "to_status": t.to_status, "note": t.note, "data": t.data}
            for t in case.timeline.all()
        ]
        out["allowed_actions"] = allowed_actions(user, case)
    return out


def allowed_actions(user, case: Case) -> list[str]:
    """The actions ``user`` may take on ``case`` now. "Start" and "report done"
    also depend on the user's own part: a department that has started (or
    finished) is not offered them again while another part goes on."""
    from .models import PartStatus
    from .workflow import actions_from

    names = [a.name for a in actions_from(case.status) if scope.can_act(user, case, set(a.roles))]
    if "start" in names or "report_done" in names:
        mine = scope.handler_departments(user, case)
        parts = [p.status for p in case.assignments.all() if p.active and p.department_id in mine]
        if PartStatus.DISPATCHED not in parts:
            names = [n for n in names if n != "start"]
        if not {PartStatus.DISPATCHED, PartStatus.IN_PROGRESS} & set(parts):
            names = [n for n in names if n != "report_done"]
    return names


def _case_or_404(request, number: str) -> Case:
    case = get_visible(request.user, number)
    if case is None:
        raise Http404(_("No case %(number)s, or it is outside your area.") % {"number": number})
    return case


class QueueFilter(Schema):
    status: str | None = None
    deadline: str | None = Field(None, description="on_time, near_due or overdue (the department's deadline)")
    dispatch: Literal["waiting", "late"] | None = Field(
        None, description="waiting: the cases waiting for a dispatcher, longest waiting first; late: those of them "
                          "past their dispatch time (dispatch_overdue)")
    q: str | None = None
    area: str | None = None
    category: str | None = None
    limit: int = 50
    offset: int = 0


class Page(Schema):
    count: int
    items: list[CaseOut]


@router.get("/", response=Page, summary="Cases in your scope")
def list_cases(request, f: Query[QueueFilter]):
    if f.status and f.status != "open" and f.status not in CaseStatus.values:
        raise CaseInvalid(_("Unknown status “%(value)s”: use open or one of %(values)s.")
                          % {"value": f.status, "values": ", ".join(CaseStatus.values)}, field="status")
    if f.offset < 0:
        raise CaseInvalid(_("The offset cannot be negative."), field="offset")
    if f.deadline and f.deadline not in DeadlineState.values:
        raise CaseInvalid(_("Unknown deadline state “%(value)s”: use one of %(values)s.")
                          % {"value": f.deadline, "values": ", ".join(DeadlineState.values)}, field="deadline")
    qs = queue(request.user, status=f.status, deadline=f.deadline, text=f.q, area_code=f.area, category_code=f.category)
    if f.dispatch:
        qs = waiting_for_dispatch(qs) if f.dispatch == "waiting" else past_dispatch_time(qs)
    limit = max(1, min(f.limit, 500))
    items = list(qs.prefetch_related("assignments__department")[f.offset: f.offset + limit])
    chains = area_chains(items)
    return {"count": qs.count(), "items": [case_out(c, chain=chains[c.pk]) for c in items]}


@router.get("/{number}", response=CaseDetailOut, summary="One case with its timeline")
def get_case(request, number: str):
    return case_out(_case_or_404(request, number), detail=True, user=request.user)


class CaseIn(Schema):
    title: str
    description: str = ""
    category: str | None = None
    lon: float | None = None
    lat: float | None = None
    address: str = ""
    channel: str = "hotline"
    priority: str | None = None


def _category(code: str | None) -> Category | None:
    if not code:
        return None
    cat = Category.objects.filter(code=code, active=True).first()
    if cat is None:
        raise CaseInvalid(_("Unknown category “%(code)s”.") % {"code": code}, field="category")
    return cat


@router.post("/", response={201: CaseDetailOut}, summary="Register a case (operators)")
def create(request, body: CaseIn):
    if not ({Role.OPERATOR, Role.DISPATCHER, Role.INSPECTOR, Role.ADMIN} & scope.roles_of(request.user)):
        raise CaseForbidden(_("You may not register cases."))
    case = services.create_case(
        title=body.title, description=body.description, category=_category(body.category),
        lon=body.lon, lat=body.lat, address=body.address, channel=body.channel, priority=body.priority,
        by=request.user,
    )
    return 201, case_out(case, detail=True, user=request.user)


ActionName = Literal[
    "accept", "reject", "merge", "dispatch", "return", "recall", "request_extension", "approve_extension", "deny_extension",
    "start", "report_done", "verify_ok", "verify_fail", "close", "callback", "reopen", "escalate",
    "unmerge", "self_dispose", "reclassify", "relocate",
]


class ActionIn(Schema):
    reason: str = Field("", description="The reason (required by reject, return, recall, close, reopen, "
                                        "extensions …) or a note for the timeline.")
    note: str = Field("", description="Another name for `reason` (the console calls it a note).")
    category: str | None = Field(None, description="accept, reclassify: a category code.")
    priority: str | None = Field(None, description="accept: urgent, high, normal or low.")
    into: str | None = Field(None, description="merge: the number of the case to merge into.")
    lead: str | None = Field(None, description="dispatch: the lead department's code (default: the routing rule's).")
    assisting: list[str] = Field([], description="dispatch: assisting departments' codes (with `lead`: only these; "
                                                 "without: the routing rule's).")
    department: str | None = Field(None, description="return, start, report_done, request_extension: which of "
                                                     "your departments acts (when you act for several).")
    hours: float | None = Field(None, description="request_extension: the extra hours.")
    satisfaction: str | None = Field(None, description="callback: the reporter's satisfaction.")
    resolved: bool | None = Field(None, description="callback: whether the reporter says it is solved.")
    area: str | None = Field(None, description="relocate: the code of the area the case is in (or give lon and lat).")
    lon: float | None = Field(None, description="relocate: the case's longitude (WGS84), with lat.")
    lat: float | None = Field(None, description="relocate: the case's latitude (WGS84), with lon.")


def _department(code: str | None, field: str) -> Department | None:
    if not code:
        return None
    dept = Department.objects.filter(code=code).first()
    if dept is None:
        raise CaseInvalid(_("Unknown department “%(code)s”.") % {"code": code}, field=field)
    return dept


def run_action(user, case: Case, action: str, body: ActionIn) -> Case:
    """Map one action request onto its service function (shared with the console)."""
    s = services
    note = body.reason or body.note
    match action:
        case "accept":
            return s.accept_case(case, by=user, note=note, category=_category(body.category), priority=body.priority)
        case "reject":
            return s.reject_case(case, by=user, reason=note)
        case "merge":
            into = get_visible(user, body.into or "") if body.into else None
            if into is None:
                raise CaseInvalid(_("Unknown case number “%(number)s”.") % {"number": body.into or ""}, field="into")
            return s.merge_case(case, into=into, by=user, note=note)
        case "dispatch":
            return s.dispatch_case(case, by=user, lead=_department(body.lead, "lead"),
                                   assisting=[_department(c, "assisting") for c in body.assisting], note=note)
        case "return":
            return s.return_case(case, by=user, reason=note, department=_department(body.department, "department"))
        case "recall":
            return s.recall_case(case, by=user, reason=note)
        case "request_extension":
            s.request_extension(case, by=user, hours=body.hours, reason=note,
                                department=_department(body.department, "department"))
            return case
        case "approve_extension":
            return s.approve_extension(case, by=user, note=note)
        case "deny_extension":
            return s.deny_extension(case, by=user, reason=note)
        case "start":
            return s.start_case(case, by=user, note=note, department=_department(body.department, "department"))
        case "report_done":
            return s.report_done(case, by=user, note=note, department=_department(body.department, "department"))
        case "verify_ok" | "verify_fail":
            return s.verify_case(case, by=user, ok=action == "verify_ok", note=note)
        case "close":
            return s.close_case(case, by=user, reason=note)
        case "callback":
            return s.record_callback(case, by=user, satisfaction=body.satisfaction or "", resolved=body.resolved, note=note)
        case "reopen":
            return s.reopen_case(case, by=user, reason=note)
        case "escalate":
            return s.escalate_case(case, by=user, reason=note)
        case "unmerge":
            return s.unmerge_case(case, by=user, reason=note)
        case "self_dispose":
            return s.self_dispose_case(case, by=user, note=note)
        case "reclassify":
            category = _category(body.category)
            if category is None:
                raise CaseInvalid(_("Choose a category."), field="category")
            return s.reclassify_case(case, by=user, category=category, note=note)
        case "relocate":
            area = None
            if body.area:
                area = Area.objects.filter(code=body.area).first()
                if area is None:
                    raise CaseInvalid(_("No area has the code %(code)s.") % {"code": body.area}, field="area")
            return s.relocate_case(case, by=user, area=area, lon=body.lon, lat=body.lat, note=note)
    raise CaseInvalid(_("Unknown action “%(action)s”.") % {"action": action}, field="action")


@router.post("/{number}/actions/{action}", response=CaseDetailOut, summary="Take an action on a case")
def act(request, number: str, action: ActionName, body: ActionIn):
    case = _case_or_404(request, number)
    case = run_action(request.user, case, action, body)
    fresh = get_visible(request.user, number) or Case.objects.get(pk=case.pk)
    return case_out(fresh, detail=True, user=request.user)
