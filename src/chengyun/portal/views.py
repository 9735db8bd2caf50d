"""The public portal: report a problem, track a report. No login, no
JavaScript needed; the map is an extra for those who have it.

Views check the form and call one service, :func:`chengyun.intake.services.submit`.
The tracking page shows the public side of a case only: its status in plain
words and the times its status changed, never names, notes or contact data.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_safe

from chengyun.areas.models import Area
from chengyun.cases.errors import CaseInvalid
from chengyun.cases.models import Case
from chengyun.cases.workflow import CaseStatus
from chengyun.clock import now
from chengyun.intake import notify, numbers
from chengyun.intake.models import DuplicateOutcome, Report
from chengyun.intake.reporter_words import (
    STATUS_LABELS,
    STATUS_WORDS,
    step_words,
)
from chengyun.intake.services import KeyReused, ReportInput, submit, timeline_for_reporter

from .forms import ReportForm, TrackForm, new_token

SOURCE = "portal"
TEXT_COOKIE = "chengyun_text"
TEXT_SIZES = ("normal", "large")
MAX_MERGE_HOPS = 10



# --------------------------------------------------------------------------- shared


def text_size(request) -> str:
    size = request.COOKIES.get(TEXT_COOKIE)
    return size if size in TEXT_SIZES else "normal"


def page(request, template: str, context: dict | None = None, *, status: int = 200):
    """Render a portal page in the text size the visitor chose (see :func:`text`)."""
    return render(request, template, {"text_size": text_size(request), **(context or {})}, status=status)


def week_start():
    local = timezone.localtime(now())
    return (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------- pages


@require_safe  # GET and HEAD
def home(request):
    since = week_start()
    figures = {
        "received": Report.objects.filter(received_at__gte=since).count(),
        "closed": Case.objects.filter(closed_at__gte=since, status__in=(CaseStatus.CLOSED, CaseStatus.RATED)).count(),
    }
    return page(request, "portal/home.html", {"active": "home", "figures": figures, "since": since, "track_form": TrackForm()})


@require_http_methods(["GET", "HEAD", "POST"])
def report(request):
    if request.method == "POST":
        form = ReportForm(request.POST, request.FILES)
        if form.is_valid():
            d = form.cleaned_data
            digest = _content_digest(d, form.photo_bytes)
            sent = _last_sent(request)
            if sent is not None and sent[1] == digest and sent[2] != d["token"]:
                # The same report again under a new key: the browser's Back fetched the form
                # anew (a new token) and kept what was typed. One report, said so.
                return redirect(reverse("portal:received", args=[sent[0]]) + "?again=1")
            try:
                done = submit(ReportInput(
                    channel="web", source=SOURCE, idempotency_key=d["token"],
                    description=d["description"], category=d["category"] or None,
                    lon=d["lon"], lat=d["lat"], address=d["address"],
                    contact={"name": d["name"], "phone": d["phone"], "email": d["email"], "notify": d["notify"],
                             "language": get_language()},
                    photos=[form.photo_bytes] if form.photo_bytes else [],
                ))
            except KeyReused as exc:  # sent before, then changed (the browser's Back button): a new report
                form.add_error(None, _("This form was already sent, as report %(number)s. What you changed is a "
                                       "new report: press “Send the report” again to send it.") % {"number": exc.number})
                form.cleaned_data["token"] = ""
            except CaseInvalid as exc:
                form.add_intake_error(exc)
            else:
                response = redirect("portal:received", number=done.report.number)
                response.set_signed_cookie(LAST_SENT_COOKIE, f"{done.report.number}:{digest}:{d['token']}",
                                           salt=LAST_SENT_COOKIE, max_age=LAST_SENT_SECONDS, httponly=True,
                                           samesite="Lax", secure=request.is_secure())
                return response
        token = form.cleaned_data.get("token") or new_token()  # the same form keeps its key
    else:
        form = ReportForm()
        token = new_token()
    root = Area.objects.filter(parent__isnull=True).order_by("code").first()
    return page(request, "portal/report.html", {
        "active": "report", "form": form, "token": token, "root": root,
        "photo_lost": bool(form.is_bound and form.errors and request.FILES.get("photo") and "photo" not in form.errors),
    })


LAST_SENT_COOKIE = "chengyun_last_report"
LAST_SENT_SECONDS = 30 * 60


def _content_digest(d: dict, photo: bytes | None) -> str:
    """Everything a report says, its sender's details and wish for messages included
    (an email added after Back is a new report, not one thrown away), to know the
    same report sent again."""
    said = json.dumps([d["description"].strip(), str(d["category"] or ""), d["lon"], d["lat"],
                       d["address"].strip(), hashlib.sha256(photo).hexdigest() if photo else "",
                       d["name"].strip(), d["phone"].strip(), d["email"].strip(), bool(d["notify"])],
                      ensure_ascii=False)
    return hashlib.sha256(said.encode()).hexdigest()[:32]


def _last_sent(request) -> tuple[str, str, str] | None:
    """(number, content digest, form key) of the report this browser sent last, in
    the last half hour (a signed cookie: nothing is kept on the server)."""
    value = request.get_signed_cookie(LAST_SENT_COOKIE, default=None, salt=LAST_SENT_COOKIE,
                                      max_age=LAST_SENT_SECONDS)
    parts = value.split(":") if value else []
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


@require_safe  # GET and HEAD
def received(request, number: str):
    found = Report.objects.filter(number=number).select_related("case", "contact").first()
    if found is None:
        return not_found(request, number)
    return page(request, "portal/received.html", {
        "report": found, "attached": found.duplicate == DuplicateOutcome.ATTACHED,
        "again": request.GET.get("again") == "1",
        # Said without the address: anyone with the number may open this page.
        "messages_by": _messages_by(found),
    })


def _messages_by(report: Report) -> str:
    """How the reporter asked to be told ("email", "sms"), or ""."""
    contact = report.contact if report.contact_id else None
    if contact is None or not contact.notify:
        return ""
    return notify.medium_for(contact.email, contact.phone) or ""


@require_safe  # GET and HEAD
def track(request):
    if "number" in request.GET:
        form = TrackForm(request.GET)
        if form.is_valid():
            return redirect("portal:track_detail", number=form.cleaned_data["number"])
    else:
        form = TrackForm()
    return page(request, "portal/track.html", {"active": "track", "form": form})


def _status(case: Case) -> dict:
    return {"case": case, "label": STATUS_LABELS.get(case.status, case.get_status_display()),
            "words": STATUS_WORDS.get(case.status, case.get_status_display())}


def public_timeline(case: Case) -> list[dict]:
    """Times and plain labels of the case's status changes; no names, no notes."""
    statuses = dict(CaseStatus.choices)
    return [
        {"at": t.at, "label": step_words(t) or statuses.get(t.to_status, t.to_status)}
        for t in timeline_for_reporter(case)
        if t.to_status != t.from_status
    ]


def _surviving(case: Case) -> Case:
    """The case a merged case now lives on in (merges may chain)."""
    seen = 0
    while case.status == CaseStatus.MERGED and case.merged_into_id and seen < MAX_MERGE_HOPS:
        case = Case.objects.select_related("category", "area").get(pk=case.merged_into_id)
        seen += 1
    return case


@require_safe  # GET and HEAD
def track_detail(request, number: str):
    number = numbers.normalise(number) or number.strip().upper()
    found = Report.objects.filter(number=number).select_related("case", "category", "area").first()
    if found is not None and found.case is None and found.duplicate == DuplicateOutcome.PENDING:
        return _received_not_processed(request, found)
    if found is None or found.case is None:
        return not_found(request, number)
    own = found.case
    case = _surviving(own)  # the case whose status the reporter follows
    merged = found.duplicate == DuplicateOutcome.ATTACHED or case.pk != own.pk
    area = case.area if case.area_id else found.area
    timeline = public_timeline(case)
    own_timeline = public_timeline(own) if case.pk != own.pk else []
    first_reported = None
    if merged:
        # Others reported it first: when, and the steps from this report's arrival on.
        first = min(own.created_at, case.created_at)
        first_reported = first if first < found.received_at else None
        if found.duplicate == DuplicateOutcome.ATTACHED:
            # Its case is an earlier reporter's: from its own arrival, not from theirs.
            arrived = {"at": found.received_at, "label": _("Your report received: handled with this case")}
            if case.pk == own.pk:
                timeline = _since(timeline, arrived)
            else:
                own_timeline = _since(own_timeline, arrived)
        if case.pk != own.pk:
            timeline = [s for s in timeline if s["at"] >= found.received_at] or timeline[-1:]
    return page(request, "portal/track_detail.html", {
        "active": "track", "report": found,
        "category": case.category if case.category_id else found.category,
        "chain": area.ancestors() if area is not None else [],
        "status": _status(case),
        "merged": merged,
        "first_reported": first_reported,
        "timeline": timeline,
        "own_timeline": own_timeline,
    })


def _since(steps: list[dict], arrived: dict) -> list[dict]:
    """A case's steps as a reporter who joined it sees them: where it stood when the
    report came (its last step before, unless that was the first report's arrival),
    the report's arrival, the steps since."""
    before = [s for s in steps[1:] if s["at"] < arrived["at"]]
    return before[-1:] + [arrived] + [s for s in steps if s["at"] >= arrived["at"]]


def _received_not_processed(request, report: Report):
    """A report a partner system sent a moment ago: stored, not yet through the
    intake pipeline (the worker does that within seconds)."""
    return page(request, "portal/track_detail.html", {
        "active": "track", "report": report, "category": report.category,
        "chain": report.area.ancestors() if report.area_id else [],
        "status": {"case": None, "label": _("Received"),
                   "words": _("Your report has been received and is being sent to the responsible department. "
                              "This takes a moment: reload this page.")},
        "merged": False, "timeline": [{"at": report.received_at, "label": _("Received")}], "own_timeline": [],
    })


def not_found(request, number: str):
    form = TrackForm(initial={"number": number})
    return page(request, "portal/not_found.html", {
        "active": "track", "number": number, "form": form, "misread": numbers.misread(number),
    }, status=404)


@require_safe  # GET and HEAD
def text(request):
    """The "larger text" switch: a plain link ``?text=large&next=/report/`` that
    keeps the choice in a cookie and goes back, so it works without JavaScript."""
    target = request.GET.get("next") or reverse("portal:home")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = reverse("portal:home")
    response = redirect(target)
    size = request.GET.get("text")
    if size in TEXT_SIZES:
        response.set_cookie(TEXT_COOKIE, size, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


@require_http_methods(["GET", "HEAD", "POST"])
def stop_messages(request, token: str):
    """The link in every message: stop the messages about one report. A GET
    only asks (mail scanners follow links); the button stops them."""
    report_id = notify.report_of_stop_token(token)
    report = Report.objects.filter(pk=report_id).first() if report_id is not None else None
    if report is None:
        return page(request, "portal/stop_messages.html", {"invalid": True}, status=404)
    if request.method == "POST":
        notify.stop(report.pk)
    # Opened again after stopping (or for a report that asked for none): say so, ask nothing.
    stopped = request.method == "POST" or report.contact is None or not report.contact.notify
    return page(request, "portal/stop_messages.html", {"report": report, "stopped": stopped})


# --------------------------------------------------------------------------- errors


STAFF_PATHS = ("/console/", "/login/", "/logout/", "/admin/")  # staff see the console's page


def page_not_found(request, exception=None):
    """404 for any address no page answers: the portal's own page in the visitor's
    language (the JSON API answers in JSON, Open311 in its error list, the console
    with its own page)."""
    if request.path.startswith("/api/"):
        from django.http import JsonResponse

        return JsonResponse({"detail": str(_("Not found.")), "code": "not_found", "field": None}, status=404)
    if request.path.startswith(STAFF_PATHS):
        return render(request, "console/error.html", {
            "title": _("Page not found"), "message": _("There is no such page, or it is not open to your role.")},
            status=404)
    return page(request, "portal/page_not_found.html", status=404)


def csrf_failure(request, reason: str = ""):
    """A form that failed its cross-site check. Sent without its security cookie
    (cookies blocked, a page left open too long), the citizen is told so and gets
    back what they wrote; a form posted from another site gets no echo of its text."""
    from django.middleware.csrf import REASON_NO_CSRF_COOKIE

    no_cookie = reason == REASON_NO_CSRF_COOKIE
    origin = request.META.get("HTTP_ORIGIN")
    ours = origin is None or origin == f"{request.scheme}://{request.get_host()}"
    if request.path.startswith(STAFF_PATHS):
        return render(request, "console/error.html", {
            "title": _("The form could not be sent"),
            "message": _("Your browser did not send the security cookie: allow cookies for this site, then reload "
                         "the page and try again.") if no_cookie else
            _("The form could not be checked (it was open for a long time, or came from another site): reload the "
              "page and try again.")}, status=403)
    description = request.POST.get("description", "") if request.method == "POST" and no_cookie and ours else ""
    return page(request, "portal/csrf_failure.html", {"description": description[:4000], "no_cookie": no_cookie},
                status=403)
