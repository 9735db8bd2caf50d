"""The staff console: queue, case page with timeline and map, actions.

Views only validate input and call one service function; see
``chengyun.cases.services``.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render, resolve_url
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop, pgettext
from django.views.decorators.http import require_POST

from chengyun.areas.models import Area
from chengyun.cases import services
from chengyun.cases.api import ActionIn, allowed_actions, run_action
from chengyun.cases.errors import CaseError
from chengyun.cases.models import Channel, DeadlineState, Satisfaction
from chengyun.cases.queries import get_visible, past_dispatch_time, queue, waiting_for_dispatch
from chengyun.cases.workflow import ACTIONS, CaseStatus
from chengyun.org import scope
from chengyun.org.models import Department, Role, User
from chengyun.taxonomy.models import Category, Priority

from .explain import explain_route
from .report_panel import case_intake_context


def landing(user) -> str:
    """Where a person starts: a grid inspector (and nothing more) on the patrol
    page built for a phone, everyone else at the queue."""
    roles = scope.roles_of(user)
    return "console:inspect" if roles and roles <= {Role.INSPECTOR} and not user.is_superuser else "console:queue"


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        from chengyun.demo.loader import DEMO_PASSWORD

        return {**super().get_context_data(**kwargs), "demo_logins": demo_logins(), "demo_password": DEMO_PASSWORD}

    def get_default_redirect_url(self):
        return resolve_url(landing(self.request.user))


@lru_cache(maxsize=64)
def _is_demo_password(encoded: str) -> bool:
    """Whether a stored hash is the demo's published password (checked once per
    hash and process: hashing is slow by design; the demo's logins share one hash,
    and the cache holds more hashes than there are demo logins)."""
    from django.contrib.auth.hashers import check_password

    from chengyun.demo.loader import DEMO_PASSWORD

    return check_password(DEMO_PASSWORD, encoded)


def demo_logins() -> list[dict]:
    """The demo's logins that still have its published password, for the login
    page, where ``SHOW_DEMO_LOGINS`` is on (``make demo``): none otherwise, and none
    that were changed."""
    from chengyun.demo.loader import DEMO_USERS

    if not settings.SHOW_DEMO_LOGINS:
        return []
    roles = dict(Role.choices)
    users = {u.username: u for u in User.objects.filter(username__in=[d[0] for d in DEMO_USERS], is_active=True)}
    return [{"username": name, "name": users[name].display_name, "role": roles.get(role, role)}
            for name, _display, role, _area, _dept in DEMO_USERS
            if name in users and users[name].has_usable_password() and _is_demo_password(users[name].password)]


class LogoutView(auth_views.LogoutView):
    pass


def home(request):
    if request.user.is_authenticated:
        return redirect(landing(request.user))
    return redirect("console:login")


@login_required
def queue_view(request):
    status = request.GET.get("status", "open")
    deadline = request.GET.get("deadline") or None
    text = (request.GET.get("q") or "").strip() or None
    view = request.GET.get("view", "")
    district = request.GET.get("area") or None
    category = request.GET.get("category") or None
    qs = queue(request.user, status=status or None, deadline=deadline, text=text, area_code=district,
               category_code=category)
    # The intake work lists are for the desks that take cases in; a department's
    # handlers and the inspectors work from their own cases.
    tabs = queue_tabs() if INTAKE_DESK & scope.roles_of(request.user) or request.user.is_superuser else {}
    if view in tabs:
        qs = tabs[view]["filter"](qs)
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)  # titles are set on these objects
    platform_texts(page.object_list)
    _name_districts(page.object_list)
    if view == "duplicates" and view in tabs:
        _name_candidates(request.user, page.object_list)
    counts = {
        "overdue": queue(request.user, status="open", deadline=DeadlineState.OVERDUE).count(),
        "near_due": queue(request.user, status="open", deadline=DeadlineState.NEAR_DUE).count(),
    }
    return render(request, "console/queue.html", {
        "page": page, "status": status, "deadline": deadline or "", "q": text or "", "view": view if view in tabs else "",
        "area": district or "", "category": category or "", "districts": _districts(request.user),
        "categories": Category.objects.reportable().in_groups(),
        # Counted as listed: open cases, in the district and category filtered on.
        "tabs": [{"key": k, "label": t["label"],
                  "count": t["filter"](queue(request.user, status="open", area_code=district,
                                             category_code=category)).count()}
                 for k, t in tabs.items()],
        "statuses": [("open", _("All open"))] + list(CaseStatus.choices) + [("", _("All"))],
        "deadlines": DeadlineState.choices, "counts": counts,
        "roles": sorted({a.get_role_display() for a in scope.assignments(request.user)}),
        "misread": not page.paginator.count and _misread(text),
    })


def _name_candidates(user, cases) -> None:
    """``case.may_repeat``: the cases each listed case may duplicate (its open
    questions), so that the list says which, as the case page does."""
    from chengyun.intake.models import DuplicateSuggestion, SuggestionStatus

    by_case: dict[int, list] = {}
    for s in (DuplicateSuggestion.objects.filter(case__in=cases, status=SuggestionStatus.PENDING)
              .select_related("candidate").prefetch_related("candidate__assignments").order_by("-score", "pk")):
        if all(c.pk != s.candidate_id for c in by_case.get(s.case_id, ())):
            by_case.setdefault(s.case_id, []).append(s.candidate)
    candidates = [c for found in by_case.values() for c in found]
    platform_texts(candidates)
    for c in candidates:
        c.visible = scope.can_see(user, c)
    for case in cases:
        case.may_repeat = by_case.get(case.pk, [])


def _name_districts(cases) -> None:
    """``case.district``: the district a case's area lies in, shown beside the area
    (a grid's name alone does not say where in the city it is)."""
    from chengyun.areas.locator import get_locator

    loc = get_locator()
    for c in cases:
        info = loc.by_id.get(c.area_id) if c.area_id else None
        chain = loc.chain(info) if info is not None else ()
        district = next((a for a in chain if a.depth == 1 and a.id != c.area_id), None)
        c.district = district.display_name if district is not None else None


def _districts(user) -> list:
    """The districts (the level under the city) the user's cases can be in, for the
    queue's filter: those of their areas (a street inspector: their district), all
    for a city-wide role (a department's: its area's)."""
    from chengyun.areas.locator import get_locator

    loc = get_locator()
    areas = [a for a in loc.areas if a.depth == 1]
    if not user.is_superuser:
        held = [a.area_id or (a.department.area_id if a.department_id else None) for a in scope.assignments(user)]
        mine = set()
        for area_id in held:
            info = loc.by_id.get(area_id) if area_id is not None else None
            if info is None or info.depth == 0:
                mine = None  # the whole city
                break
            mine |= {x.id for x in loc.chain(info) if x.depth == 1}
        if mine is not None:
            areas = [a for a in areas if a.id in mine]
    return sorted((a.code, a.display_name) for a in areas)


def _misread(text: str | None) -> bool:
    """Whether the search looks like a tracking number but cannot be one (a digit
    misheard on the phone): said, instead of only "no cases"."""
    from chengyun.intake import numbers

    return numbers.misread(text or "")


INTAKE_DESK = {Role.OPERATOR, Role.DISPATCHER, Role.SUPERVISOR, Role.LEADER, Role.ADMIN}


def queue_tabs() -> dict:
    """Work lists for intake: every case still waiting for a dispatcher (not
    routed automatically: no category, an uncertain or disputed one, no area,
    no routing rule, or registered by hand; accepted but not sent on; returned
    by a department; reopened), longest waiting first, and those of them past
    the dispatch time (派单时限); those no one has classified, and open
    duplicate questions."""
    return {
        "to_dispatch": {
            "label": _("Waiting for dispatch"),
            "filter": waiting_for_dispatch,
        },
        "past_dispatch": {
            "label": _("Past dispatch time (%(hours)s h)") % {"hours": floatformat(settings.DISPATCH_HOURS)},
            "filter": past_dispatch_time,
        },
        "unclassified": {
            "label": _("Needs classification"),
            "filter": lambda qs: qs.filter(status=CaseStatus.NEW, category__isnull=True),
        },
        "duplicates": {
            "label": _("Possible duplicates"),
            "filter": lambda qs: qs.filter(duplicate_suggestions__status="pending").distinct(),
        },
    }


def _case_or_404(request, number):
    case = get_visible(request.user, number)
    if case is None:
        raise Http404(_("No such case in your area."))
    return case


@login_required
def case_detail(request, number):
    return render_case(request, _case_or_404(request, number))


def platform_texts(cases) -> None:
    """Cases the platform raised itself get their title and description in the reader's
    language, with the figures of now (the stored ones are in the site's language, with
    the figures of when the case was raised): smart discovery (智能发现) from its cluster
    warning, a sensor alarm from its warning."""
    from chengyun.intake.cluster import warning_title
    from chengyun.intake.models import ClusterWarning
    from chengyun.signs.models import Warning
    from chengyun.signs.rules import alarm_text

    texts = {}
    found = [c.pk for c in cases if c.channel == Channel.DISCOVERY]
    if found:
        for w in ClusterWarning.objects.filter(case_id__in=found).select_related("category", "area"):
            texts[w.case_id] = (warning_title(w)[:200], _("Raised automatically from %(n)s reports; see the linked "
                                                          "reports.") % {"n": w.report_count})
    found = [c.pk for c in cases if c.channel == Channel.SENSOR]
    if found:
        for w in (Warning.objects.filter(case_id__in=found)
                  .select_related("indicator", "indicator__sensor", "indicator__sensor__kind").order_by("pk")):
            texts.setdefault(w.case_id, alarm_text(w))
    for c in cases:
        c.title, c.description = texts.get(c.pk, (c.title, c.description))


def render_case(request, case, *, revealed: dict | None = None, status: int = 200, extra: dict | None = None):
    """The case page; ``revealed`` maps report ids to contact details shown in full this once;
    ``extra``: more for the template (a form's refusal, shown where it was filled in)."""
    intake = case_intake_context(request.user, case, revealed=revealed)  # on the stored texts (the classifier's hint)
    platform_texts([case])
    names = allowed_actions(request.user, case)
    suggestion = services.suggest_route(case) if "dispatch" in names else None
    dept_choices = []
    if "dispatch" in names:
        # Departments serving the case's area or any area above it.
        chain_ids = [a.pk for a in case.area.ancestors()] if case.area_id else []
        dept_choices = list(
            Department.objects.filter(active=True, area_id__in=chain_ids).select_related("kind", "area")
            .order_by("area__level__depth", "code")
        ) or list(Department.objects.filter(active=True, area__parent__isnull=True).order_by("code"))
    pending_ext = case.extensions.filter(status="pending").first()
    return render(request, "console/case.html", {
        "case": case,
        "chain": case.area.ancestors() if case.area_id else [],
        "timeline": timeline_rows(case),
        "parts": case.assignments.select_related("department").all(),
        "actions": [ACTIONS[n] for n in names],
        # the accept form says that dispatch follows, to those who will then dispatch
        "may_dispatch": scope.can_act(request.user, case, set(ACTIONS["dispatch"].roles)),
        "route": explain_route(case.route_explanation) if case.route_explanation else None,
        "suggestion": suggestion,
        "suggestion_text": explain_route(suggestion.explanation) if suggestion else None,
        "departments": dept_choices,
        "categories": Category.objects.reportable().in_groups(),
        "priorities": Priority.choices,
        "satisfactions": Satisfaction.choices,
        "pending_extension": pending_ext,
        "merged": case.merged_cases.all(),
        **intake,
        **(extra or {}),
    }, status=status)


EXTRA_ACTION_LABELS = {
    "create": gettext_lazy("Registered"),
    "merged_in": gettext_lazy("Another case merged into this one"),
    "start_part": gettext_lazy("Assisting department started"),
    "report_done_part": gettext_lazy("Assisting department reported done"),
    "return_part": gettext_lazy("Assisting department returned its part"),
    "merge_undone": gettext_lazy("A merged case was split off again"),
    "reclassify": gettext_lazy("Reclassified"),
    "report_attached": gettext_lazy("Another report attached (duplicate)"),
    "report_detached": gettext_lazy("Report detached: not the same problem"),
    "duplicate_kept": gettext_lazy("Kept apart: not the same problem"),
    "relocate": gettext_lazy("Moved"),
}


# Actors that are the platform itself, as the timeline names them.
MACHINE_ACTORS = {
    "system": gettext_lazy("the platform"),
    "intake": gettext_lazy("the intake pipeline"),
    "system:deadlines": gettext_lazy("the deadline sweep"),
}


# What the platform writes as the note of its own acts. It is written in the language
# the worker runs in; each reader sees it in theirs.
MACHINE_NOTES = (
    gettext_noop("Taken in by the intake pipeline."),
    gettext_noop("Accepted automatically: the category is certain enough."),
    gettext_noop("Accepted automatically: the reporter chose the category."),
    gettext_noop("Accepted automatically: the hotline operator chose the category."),
    gettext_noop("Accepted automatically: the grid inspector chose the category."),
    gettext_noop("Dispatched automatically by the routing rules."),
    gettext_noop("Near its deadline"),
    gettext_noop("Overdue"),
    gettext_noop("Overdue by more than its allowed time"),
    gettext_noop("Past its dispatch time"),
    gettext_noop("Waiting for dispatch twice as long as allowed"),
)


@lru_cache(maxsize=1)
def _machine_note_ids() -> dict[str, str]:
    """Each machine note as any of the site's languages writes it -> its message id."""
    ids = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            ids.update({_(msgid): msgid for msgid in MACHINE_NOTES})
    return ids


def _note(entry) -> str:
    if entry.actor_id is not None or not entry.note:
        return entry.note
    msgid = _machine_note_ids().get(entry.note)
    return _(msgid) if msgid else entry.note


def _by(entry) -> str:
    if entry.actor:
        return str(entry.actor)
    name = entry.actor_name
    if name.startswith("open311:"):
        return _("Open311 partner %(name)s") % {"name": name.split(":", 1)[1]}
    return str(MACHINE_ACTORS.get(name, name))


# The action forms' fields, as their labels say them (an error names the one to correct).
ACTION_FIELD_LABELS = {
    "reason": gettext_lazy("Reason"), "category": gettext_lazy("Category"), "priority": gettext_lazy("Priority"),
    "into": gettext_lazy("Merge into case number"), "lead": gettext_lazy("Lead department"),
    "assisting": gettext_lazy("Assisting departments"), "hours": gettext_lazy("Extra hours"),
    "satisfaction": gettext_lazy("Satisfaction"), "department": gettext_lazy("Department"),
}


def timeline_rows(case):
    statuses = dict(CaseStatus.choices)
    rows = []
    entries = list(case.timeline.select_related("actor").all())
    codes = {t.data.get(k) for t in entries if t.action == "reclassify" for k in ("from", "to")} - {None}
    names = {c.code: c for c in Category.objects.filter(code__in=codes)}
    # Departments by name, not by code (310101-WATER means little to a reader).
    dept_codes = {t.data.get("department") or t.data.get("lead") for t in entries} - {None, ""}
    departments = {d.code: d for d in Department.objects.filter(code__in=dept_codes)}
    priorities = dict(Priority.choices)
    moved = {t.data.get(k) for t in entries if t.action == "relocate" for k in ("from", "to")} - {None}
    areas = {a.code: a.display_name for a in Area.objects.filter(code__in=moved)} if moved else {}
    for t in entries:
        label = ACTIONS[t.action].label if t.action in ACTIONS else EXTRA_ACTION_LABELS.get(t.action, t.action)
        if t.action == "reclassify":
            def named(code):
                return f"{code} {names[code]}" if code in names else (code or _("no category"))

            label = _("Reclassified: %(old)s → %(new)s") % {"old": named(t.data.get("from")),
                                                            "new": named(t.data.get("to"))}
            if t.data.get("priority_to"):
                old, new = t.data.get("priority_from"), t.data["priority_to"]
                label = _("Reclassified: %(old)s → %(new)s; priority %(p_old)s → %(p_new)s (the new category's)") % {
                    "old": named(t.data.get("from")), "new": named(t.data.get("to")),
                    "p_old": priorities.get(old, old), "p_new": priorities.get(new, new)}
        if t.action == "relocate":
            label = _("Moved: %(old)s → %(new)s") % {"old": areas.get(t.data.get("from")) or _("no area"),
                                                     "new": areas.get(t.data.get("to")) or t.data.get("to")}
        if t.action == "duplicate_kept" and t.data.get("case"):
            label = _("Kept apart from %(case)s: not the same problem") % {"case": t.data["case"]}
        dept = t.data.get("department") or t.data.get("lead") or ""
        rows.append({
            "at": t.at, "by": _by(t), "label": label, "note": _note(t),
            "to": statuses.get(t.to_status, t.to_status) if t.to_status and t.to_status != t.from_status else "",
            "department": str(departments[dept]) if dept in departments else dept,
            "report": t.data.get("report", "") if t.action.startswith("report_") else "",
        })
    return rows


@login_required
@require_POST
def case_action(request, number, action):
    case = _case_or_404(request, number)
    if action not in ACTIONS:
        raise Http404(_("No such action."))
    p = request.POST
    body = ActionIn(
        reason=p.get("reason", ""), category=p.get("category") or None, priority=p.get("priority") or None,
        into=p.get("into") or None, lead=p.get("lead") or None, assisting=[c for c in p.getlist("assisting") if c],
        department=p.get("department") or None, hours=p.get("hours") or None,
        satisfaction=p.get("satisfaction") or None,
        resolved={"yes": True, "no": False}.get(p.get("resolved", "")),
    )
    try:
        run_action(request.user, case, action, body)
    except CaseError as exc:
        label = ACTION_FIELD_LABELS.get(exc.field or "")
        messages.error(request, f"{label}{pgettext('label separator', ': ')}{exc.message}" if label else exc.message)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("“%(action)s”: done.") % {"action": ACTIONS[action].label})
    if get_visible(request.user, number) is None:
        return redirect("console:queue")
    return redirect(reverse("console:case", args=[number]))

