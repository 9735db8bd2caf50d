"""Staff intake in the console: the 12345 hotline form, the inspector's
mobile page, report photos, and the intake actions of the case page
(reveal a contact, detach a report, decide a duplicate question, reclassify).

Every write goes through one intake or case service; these views only read
the form, call it, and show the outcome.
"""

from __future__ import annotations

import io
import math
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from PIL import Image

from chengyun.areas.locator import in_city
from chengyun.areas.models import Area
from chengyun.areas.services import locate
from chengyun.cases import services as case_services
from chengyun.cases.errors import CaseError, CaseForbidden, CaseInvalid
from chengyun.cases.models import Case, Channel
from chengyun.cases.queries import get_visible, visible_cases
from chengyun.cases.workflow import OPEN_STATUSES
from chengyun.clock import now
from chengyun.intake import notify, privacy
from chengyun.intake.dedup import SAID_BY_STAFF, find_duplicate
from chengyun.intake.geo import area_from_address
from chengyun.intake.models import (
    ClusterWarning,
    DuplicateOutcome,
    DuplicateSuggestion,
    Report,
    ReportPhoto,
)
from chengyun.intake.photos import exif_position
from chengyun.intake.services import (
    KeyReused,
    ReportInput,
    classify,
    decide_suggestion,
    detach_report,
    report_text,
    submit,
)
from chengyun.org import scope
from chengyun.org.models import Role, RoleAssignment
from chengyun.taxonomy.models import Category, Priority

from .report_panel import term_chips
from .views import _case_or_404, render_case

HOTLINE_ROLES = {Role.OPERATOR, Role.ADMIN}
INSPECTOR_ROLES = {Role.INSPECTOR, Role.ADMIN}
MAX_PHOTOS = 3
RECENT_CALLS = 5
NEARBY_CASES = 5
ALTERNATIVE_FLOOR = 0.02  # an alternative less likely than this is not worth a button (a city has 100+ categories)
MAX_AREA_CHOICES = 500
HOTLINE_ORDER = ("phone", "name", "email", "description", "address", "category", "priority")  # as on the form
HOTLINE_FIELDS = set(HOTLINE_ORDER)
INSPECT_FIELDS = {"photo", "area", "category", "description", "self_dispose", "self_dispose_note"}

# Fields the intake pipeline names in its errors -> the form field they belong to.
FIELD_ALIASES = {"address_string": "address", "long": "lon", "media": "photo"}


def _require_roles(user, roles: set[str]) -> None:
    if not (roles & scope.roles_of(user)):
        raise Http404(_("Not available for your role."))


def _leaf_categories():
    return Category.objects.reportable().in_groups()


def _source(user) -> str:
    return f"user:{user.pk}"


def _new_token() -> str:
    return uuid.uuid4().hex


def _field(exc: CaseError) -> str:
    return FIELD_ALIASES.get(exc.field or "", exc.field or "form")


def _chosen_category(code: str) -> Category | None:
    return Category.objects.reportable().filter(code=code).first() if code else None


def _save(request, make_input, values, errors: dict):
    """The intake pipeline for a staff form (the hotline, the inspector's page, a new
    case): -> (what ``submit`` returned, or None; the form's values). A refusal fills
    ``errors`` under the form's field names; a reused key gives the form a new one."""
    try:
        return submit(make_input(), by=request.user), values
    except KeyReused as exc:
        return None, _key_reused(exc, values, errors)
    except CaseError as exc:
        errors[_field(exc)] = exc.message
        return None, values


def _key_reused(exc: KeyReused, values, errors: dict) -> dict:
    """Back, edit, save: the edit is a new report. Say so, and give the form a
    new token (the page makes one when the values have none)."""
    errors["form"] = _("This form was already saved, as report %(number)s. What you changed is a new report: "
                       "save again to register it (photos must be chosen again).") % {"number": exc.number}
    return {**values.dict(), "token": ""}


# --------------------------------------------------------------------------- hotline (12345)


@login_required
def hotline(request):
    """One call, one form: caller, what and where, submit; then the next call."""
    _require_roles(request.user, HOTLINE_ROLES)
    errors: dict[str, str] = {}
    values = {}
    if request.method == "POST":
        values = request.POST
        priority = values.get("priority") or None
        done, values = _save(request, lambda: ReportInput(
            channel=Channel.HOTLINE, source=_source(request.user),
            idempotency_key=values.get("token", "")[:120],
            contact={"phone": values.get("phone", ""), "name": values.get("name", ""),
                     "notify": bool(values.get("notify")) and notify.sms_enabled()},
            description=values.get("description", ""), address=values.get("address", "").strip(),
            category=values.get("category") or None, priority=priority,
            same_as=values.get("same_as", ""),
        ), values, errors)
        if done is not None:
            report = done.report
            said = (report.duplicate_explanation or {}).get("reason") == SAID_BY_STAFF
            messages.success(request, (
                _("Call registered: tracking number %(report)s, added to case %(case)s (the same problem).") if said
                else _("Call registered: tracking number %(report)s, case %(case)s.")) % {
                "report": report.number, "case": report.case.number if report.case else "—",
            })
            return redirect("console:hotline")
    recent = (Report.objects.filter(source=_source(request.user), channel=Channel.HOTLINE)
              .select_related("case", "category").order_by("-received_at", "-pk")[:RECENT_CALLS])
    return render(request, "console/hotline.html", {
        "errors": errors, "values": values,
        "other_errors": [m for k, m in errors.items() if k not in HOTLINE_FIELDS],
        # A failed attempt keeps its token: nothing was stored, and a retry must not count twice.
        "token": values.get("token") or _new_token(),
        "categories": _leaf_categories(), "priorities": Priority.choices, "recent": recent,
        "sms": notify.sms_enabled(),
        "suggestions": _suggestions(request.user, values) if errors and values.get("description") else None,
        # The caller's number first; after a refusal, the first field to correct.
        "focus": next((f for f in HOTLINE_ORDER if f in errors), "phone"),
    }, status=400 if errors else 200)


def _area_model(address: str) -> Area | None:
    info = area_from_address(address)
    return Area.objects.filter(pk=info.id).first() if info else None


@login_required
@require_POST
def hotline_suggest(request):
    """The side panel while the operator types: category, area, possible duplicates."""
    _require_roles(request.user, HOTLINE_ROLES)
    return render(request, "console/_hotline_suggest.html", {"sg": _suggestions(request.user, request.POST)})


def _suggestions(user, values) -> dict:
    """What the side panel shows for the call typed so far (also rendered with
    the form when saving failed, so the operator keeps it, JavaScript or not)."""
    text = (values.get("description") or "").strip()
    address = (values.get("address") or "").strip()
    # The text saving classifies (the title, from the first line, then the description):
    # the confidence shown is the one the case will have.
    _decided, suggestion, confidence, version, explanation, certain = classify(
        report_text(text), None) if text else (None, None, None, None, {}, False)
    area = _area_model(address)
    # The operator's own pick, if any, is what saving will use (else the classifier's).
    picked = _chosen_category((values.get("category") or "").strip())
    category = picked or suggestion
    match = None
    nearby = []
    if category is not None and text and (area is not None or address):
        # The check saving makes for a call without a point (by address and area), on the text it compares.
        found = find_duplicate(category=category, lon=None, lat=None, at=now(), text=report_text(text),
                               area=area, address=address)
        if found.case is not None and scope.can_see(user, found.case):
            match = found
    if category is not None and area is not None:
        nearby = list(
            visible_cases(user)
            .filter(status__in=OPEN_STATUSES, category=category, area_path__startswith=area.path)
            .select_related("category").order_by("-created_at")[:NEARBY_CASES]
        )
    # Not certain: the next likeliest categories too, each a click away (an operator
    # choosing among three beats one guess; the classifier may know little of the words).
    others = []
    if suggestion is not None and not certain:
        codes = [c for c, _p in explanation.get("alternatives") or []]
        found_cats = {c.code: c for c in Category.objects.reportable().filter(code__in=codes)}
        others = [(found_cats[c], round(p * 100)) for c, p in explanation.get("alternatives") or []
                  if c in found_cats and p >= ALTERNATIVE_FLOOR]
    # Certain, but routed only where a rule finds a department for the place (a rule at
    # street level and an address naming only the district: a dispatcher sends it on).
    from chengyun.taxonomy.services import route

    no_rule = bool(category is not None and area is not None and (certain or picked) and match is None
                   and route(category, area).lead is None)
    return {
        "no_rule": no_rule,
        "text": text, "suggestion": suggestion, "confidence": confidence,
        "percent": round(confidence * 100) if confidence is not None else None, "model": version, "certain": certain,
        "terms": term_chips(explanation.get("terms"), text), "alternatives": others,
        "area": area, "chain": area.ancestors() if area else [], "address": address,
        "category": category, "match": match, "nearby": nearby, "picked": picked,
        # As saving decides (services.classify): the operator's pick routes, unless the
        # classifier is sure of another category; then a dispatcher checks.
        "disagrees": bool(picked and suggestion and suggestion.pk != picked.pk and certain),
    }


# --------------------------------------------------------------------------- a case registered by staff

# The doors a person at a desk registers a case for (a call written down, an
# inspector's word); machines' doors are not chosen by hand, and the web form is
# the citizens' own (counted apart in the figures by channel).
STAFF_CHANNELS = (Channel.HOTLINE, Channel.INSPECTOR)
NEW_CASE_ROLES = {Role.OPERATOR, Role.DISPATCHER, Role.INSPECTOR, Role.ADMIN}


@login_required
@require_http_methods(["GET", "POST"])
def new_case(request):
    """Register a case by hand. It goes through the intake pipeline as a report, as
    every door does: placed by its point or address, classified when no category is
    chosen, checked for duplicates, routed when certain (it used to be stored as
    given, unplaced and unclassified)."""
    if not (NEW_CASE_ROLES & scope.roles_of(request.user)) and not request.user.is_superuser:
        raise Http404(_("Not available for your role."))
    errors: dict[str, str] = {}
    values = {}
    if request.method == "POST":
        values = request.POST
        channel = values.get("channel") or Channel.HOTLINE
        try:
            lon = float(values["lon"]) if values.get("lon") else None
            lat = float(values["lat"]) if values.get("lat") else None
        except ValueError:
            errors["lon"] = _("Longitude and latitude must be numbers.")
        if channel not in STAFF_CHANNELS:
            errors["channel"] = _("Choose one of the channels listed.")
        if not errors:
            done, values = _save(request, lambda: ReportInput(
                channel=channel, source=_source(request.user), idempotency_key=values.get("token", "")[:120],
                title=values.get("title", ""), description=values.get("description", ""),
                category=values.get("category") or None, lon=lon, lat=lat,
                address=values.get("address", "").strip(),
            ), values, errors)
            if done is not None:
                report, case = done.report, done.report.case
                attached = report.duplicate == DuplicateOutcome.ATTACHED
                messages.success(request, (
                    _("Report %(report)s registered and added to case %(number)s: the same problem was already "
                      "reported.") if attached
                    else _("Case %(number)s registered (report %(report)s).")) % {
                    "number": case.number, "report": report.number})
                if get_visible(request.user, case.number) is None:  # joined a case outside one's area
                    return redirect("console:new_case")
                return redirect("console:case", number=case.number)
    return render(request, "console/new_case.html", {
        "errors": errors, "values": values, "token": values.get("token") or _new_token(),
        "other_errors": [m for k, m in errors.items() if k not in ("title", "description", "address", "lon", "lat")],
        "channels": [(c, label) for c, label in Channel.choices if c in STAFF_CHANNELS],
        "categories": Category.objects.reportable().in_groups(),
    }, status=400 if errors else 200)


# --------------------------------------------------------------------------- inspector (网格员)


def _inspector_areas(user):
    """The areas an inspector patrols (their assignments' subtrees), for the grid picker."""
    everything = Area.objects.select_related("level").order_by("path")
    if user.is_superuser:
        return everything
    paths = []
    for a in RoleAssignment.objects.filter(user=user, role__in=INSPECTOR_ROLES).select_related("area"):
        if a.department_id:
            continue
        if a.area_id is None:
            return everything
        paths.append(a.area.path)
    if not paths:
        return Area.objects.none()
    q = Q()
    for p in paths:
        q |= Q(path__startswith=p)
    return everything.filter(q)


def _read_photos(request) -> list[bytes]:
    files = [f for f in request.FILES.getlist("photo") if f.size]
    if len(files) > MAX_PHOTOS:
        raise CaseInvalid(_("At most %(n)s photos.") % {"n": MAX_PHOTOS}, field="photo")
    return [f.read() for f in files]


def _inspection_input(request) -> ReportInput:
    p = request.POST
    category = _chosen_category(p.get("category", ""))
    note = (p.get("self_dispose_note") or "").strip()
    fixed = p.get("self_dispose") == "on"
    if fixed:
        if category is None or not category.self_dispose:
            raise CaseInvalid(_("This category cannot be closed on the spot; it must be dispatched."),
                                    field="self_dispose")
        if not note:
            raise CaseInvalid(_("Say what you did to fix it."), field="self_dispose_note")
    area = None
    if p.get("area"):
        # Used when neither the device nor the photo gives a position.
        area = _inspector_areas(request.user).filter(code=p["area"]).first()
        if area is None:
            raise CaseInvalid(_("Choose one of your areas."), field="area")
    photos = _read_photos(request)
    lon, lat = p.get("lon") or None, p.get("lat") or None
    kept = {}
    if fixed and lon and lat:
        lon, lat, kept = _patrol_position(request.user, lon, lat, area)
    if not (lon and lat) and area is None and not any(_placed(b) for b in photos):
        # Without a place the report could reach no grid and no department: say so now.
        raise CaseInvalid(_("Say where: let the page use the device's position, take the photo with its location, "
                            "or choose the grid."), field="area")
    return ReportInput(
        channel=Channel.INSPECTOR, source=_source(request.user), idempotency_key=p.get("token", "")[:120],
        description=p.get("description", ""), category=category or (p.get("category") or None),
        lon=lon, lat=lat, area=area, attributes=kept,
        photos=photos, self_dispose_note=note if fixed else "",
    )


PATROL_TOLERANCE_M = 300  # how far outside the chosen grid a device's position may read


def _patrol_position(user, lon: str, lat: str, area: Area | None) -> tuple[str | None, str | None, dict]:
    """An inspector closes on the spot only in the areas they patrol. A device's
    position just outside (GPS near a boundary, or indoors) would refuse them: the
    grid they chose is used instead when the position is within
    ``PATROL_TOLERANCE_M`` of it, and the position is kept with the report
    (``attributes.device_position``). Farther off, or with no grid chosen, they are
    told where the position fell and what to do. -> (lon, lat, attributes)."""
    try:
        x, y = float(lon), float(lat)
        chain = locate(x, y)
    except ValueError:
        return lon, lat, {}  # the pipeline names the bad coordinate
    if not chain or _inspector_areas(user).filter(pk=chain[-1].id).exists():
        return lon, lat, {}
    names = [a.display_name for a in chain[1:] or chain]
    place = " › ".join(names)
    if area is None:
        raise CaseInvalid(_("The device puts you in %(place)s, outside the areas you patrol. Choose your grid: it "
                            "is then used instead of the device's position, if that is within %(m)s m of it.")
                          % {"place": place, "m": PATROL_TOLERANCE_M}, field="area")
    off = _metres_outside(area, x, y)
    if off > PATROL_TOLERANCE_M:
        raise CaseInvalid(_("The device puts you in %(place)s, %(off)s m from the grid you chose: closing on the "
                            "spot is for where you are. Report it without closing it on the spot: it is then handled as any "
                            "report is.")
                          % {"place": place, "off": f"{off:,.0f}"}, field="area")
    return None, None, {"device_position": [round(x, 6), round(y, 6)], "device_area": chain[-1].code,
                        "device_place": place, "metres_outside_grid": round(off)}


def _metres_outside(area: Area, lon: float, lat: float) -> float:
    """Roughly how far (m) a point lies outside an area's polygon (0 inside)."""
    import numpy as np
    import shapely

    # Degrees of longitude shrink with latitude: scaled, both axes count the same.
    squeeze = np.array([math.cos(math.radians(lat)), 1.0])
    geometry = shapely.transform(area.geometry, lambda xy: xy * squeeze)
    return float(shapely.distance(geometry, shapely.Point(lon * squeeze[0], lat))) * 111_320


def _placed(data: bytes) -> bool:
    """Whether a photo says where it was taken, inside the city: its EXIF block
    only, not the pixels (the pipeline checks and re-encodes the photo once; one
    that is not an image passes here, and the pipeline refuses it, naming the field)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            lon, lat = exif_position(img)
    except (OSError, ValueError, Image.DecompressionBombError):
        return True
    return lon is not None and in_city(lon, lat)


@login_required
def inspect(request):
    """The inspector's phone page: photo, position, what it is, fixed or not."""
    _require_roles(request.user, INSPECTOR_ROLES)
    errors: dict[str, str] = {}
    values = {}
    if request.method == "POST":
        values = request.POST
        done, values = _save(request, lambda: _inspection_input(request), values, errors)
        if done is not None:
            return redirect(f"{request.path}?done={done.report.number}")
        if errors and "photo" not in errors and any(f.size for f in request.FILES.getlist("photo")):
            # A browser cannot be handed a file back: say so where the photo goes.
            errors["photo"] = _("Nothing was saved: choose the photo again.")
    done = None
    if request.GET.get("done"):
        done = (Report.objects.filter(number=request.GET["done"], created_by=request.user)
                .select_related("case", "category").first())
    return render(request, "console/inspect.html", {
        "errors": errors, "values": values, "done": done,
        "other_errors": [m for k, m in errors.items() if k not in INSPECT_FIELDS],
        "token": values.get("token") or _new_token(),
        "categories": _leaf_categories(), "areas": _inspector_areas(request.user)[:MAX_AREA_CHOICES],
    }, status=400 if errors else 200)


# --------------------------------------------------------------------------- photos


@login_required
def photo(request, pk: int):
    """A report photo for staff who may see its case; never from the public media URL."""
    item = get_object_or_404(ReportPhoto.objects.select_related("report__case"), pk=pk)
    case = item.report.case
    if case is None or not scope.can_see(request.user, case):
        raise Http404(_("No such photo in your area."))
    response = FileResponse(item.file.open("rb"), content_type=item.content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Disposition"] = "inline"
    return response


# --------------------------------------------------------------------------- case page actions


def _report_of(case: Case, report_number: str) -> Report:
    return get_object_or_404(
        Report.objects.select_related("contact", "case").filter(Q(case=case) | Q(case__merged_into=case)),
        number=report_number,
    )


@login_required
@require_POST
def reveal_contact(request, number, report_number):
    """Show a reporter's full contact once, in this response only; audited."""
    case = _case_or_404(request, number)
    report = _report_of(case, report_number)
    try:
        contact = privacy.reveal_contact(report, by=request.user, reason=request.POST.get("reason", ""))
    except CaseForbidden as exc:
        messages.error(request, exc.message)
        return render_case(request, case, status=403)
    except CaseError as exc:
        messages.error(request, exc.message)
        return render_case(request, case, status=400)
    response = render_case(request, case, revealed={report.pk: contact})
    response["Cache-Control"] = "no-store"
    return response


def _done(request, case: Case, call, success: str):
    try:
        result = call()
    except CaseError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success if isinstance(success, str) else success(result))
    if get_visible(request.user, case.number) is None:
        return redirect("console:queue")
    return redirect("console:case", number=case.number)


@login_required
@require_POST
def detach(request, number, report_number):
    case = _case_or_404(request, number)
    report = _report_of(case, report_number)
    return _done(
        request, case, lambda: detach_report(report, by=request.user, reason=request.POST.get("reason", "")),
        lambda new: _("Report %(report)s now has its own case %(case)s.") % {"report": report.number, "case": new.number},
    )


@login_required
@require_POST
def decide(request, number, pk: int):
    case = _case_or_404(request, number)
    suggestion = get_object_or_404(DuplicateSuggestion.objects.select_related("case", "candidate"), pk=pk, case=case)
    decision = request.POST.get("decision")
    if decision not in ("merge", "keep"):
        messages.error(request, _("Choose: merge or keep apart."))
        return redirect("console:case", number=case.number)
    merge = decision == "merge"
    return _done(
        request, case,
        lambda: decide_suggestion(suggestion, merge=merge, by=request.user, note=request.POST.get("note", "").strip()),
        _("Merged into case %(case)s.") % {"case": suggestion.candidate.number} if merge
        else lambda s: (_("Kept apart from case %(case)s; dispatched by the routing rules.")
                        if Case.objects.filter(pk=s.case_id, dispatched_at__isnull=False).exists()
                        else _("Kept apart from case %(case)s.")) % {"case": suggestion.candidate.number},
    )


@login_required
@require_POST
def reclassify(request, number):
    case = _case_or_404(request, number)
    category = _chosen_category(request.POST.get("category", ""))
    return _done(
        request, case,
        lambda: case_services.reclassify_case(case, by=request.user, category=category,
                                              note=request.POST.get("note", "").strip()),
        lambda c: _("Category changed to %(category)s.") % {"category": c.category},
    )


@login_required
@require_POST
def relocate(request, number):
    """Correct where a case is (an area from the list, or a point), before dispatch.
    A refusal is shown in the card, with what was typed."""
    from chengyun.cases.api import ActionIn, run_action

    from .views import render_case

    case = _case_or_404(request, number)
    try:
        lon, lat = (_coordinate(request.POST, name) for name in ("lon", "lat"))
        body = ActionIn(area=request.POST.get("area", "").strip() or None, lon=lon, lat=lat,
                        note=request.POST.get("note", "").strip())
        version = case.version
        moved = run_action(request.user, case, "relocate", body)
        if moved.version == version:  # nothing moved: say so where the choice was made
            raise CaseInvalid(_("The case is already there (%(area)s).") % {"area": moved.area.display_name},
                              field="lon" if lon is not None else "area")
    except CaseInvalid as exc:  # a field to correct: said in the card
        return render_case(request, case, status=400, extra={
            "relocate_error": exc.message, "relocate_field": _field(exc), "relocate_values": request.POST})
    except CaseError as exc:  # not theirs to move, or not any more
        messages.error(request, exc.message)
        return redirect("console:case", number=case.number)
    messages.success(request, _("The case is now in %(area)s.") % {"area": " › ".join(
        a.display_name for a in moved.area.ancestors()[1:]) or moved.area.display_name})
    if get_visible(request.user, case.number) is None:
        return redirect("console:queue")
    return redirect("console:case", number=case.number)


def _coordinate(data, name: str) -> float | None:
    raw = (data.get(name) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        label = _("Longitude") if name == "lon" else _("Latitude")
        raise CaseInvalid(_("%(field)s: “%(value)s” is not a number.") % {"field": label, "value": raw},
                          field=name) from None


# --------------------------------------------------------------------------- one incident, one case


@login_required
@require_POST
def merge_cluster(request, number):
    """A cluster warning's case takes in the cases of its reports: one incident (a
    main burst) handled as one case, not as the warning and a case per call. Each
    is merged as a dispatcher would merge it by hand (recorded, undoable); one that
    cannot be (dispatched already: recall it first; or not one's own) is named."""
    case = get_visible(request.user, number)
    if case is None:
        raise Http404(_("No such case."))
    warning = ClusterWarning.objects.filter(case=case).first()
    if warning is None:
        raise Http404(_("This case is not a cluster warning."))
    merged, kept = [], []
    members = {r.case for r in warning.reports.select_related("case") if r.case_id and r.case_id != case.pk}
    for member in sorted(members, key=lambda c: c.number):
        if member.category_id is not None and member.category_id != case.category_id:
            # Reclassified since (a burst main among street-light calls): not this incident
            # for sure; a dispatcher merges it by hand if it is.
            kept.append(f"{member.number} ({_('now of another category: %(category)s') % {'category': member.category}})")
            continue
        try:
            case_services.merge_case(member, into=case, by=request.user,
                                     note=_("One incident: merged into the cluster warning's case."))
        except CaseError as exc:
            kept.append(f"{member.number} ({str(exc.message).rstrip('。.')})")
        else:
            merged.append(member.number)
    if merged:
        messages.success(request, _("Merged into this case: %(numbers)s.") % {"numbers": ", ".join(merged)})
    if kept:
        messages.warning(request, _("Not merged: %(cases)s.") % {"cases": "; ".join(kept)})
    if not merged and not kept:
        messages.info(request, _("The reports have no other cases to merge."))
    return redirect("console:case", number=case.number)
