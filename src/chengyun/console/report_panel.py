"""The intake part of the case page: the case's reports with the reasons
behind their category and duplicate decisions, open duplicate questions,
the cluster warning and the reclassify control.

Only reads; the changes go through the views in :mod:`.intake_views`.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _

from chengyun.areas.models import Area
from chengyun.cases.models import Case
from chengyun.cases.workflow import OPEN_STATUSES, CaseStatus
from chengyun.intake import privacy
from chengyun.intake.dedup import reason_text
from chengyun.intake.models import ClusterWarning, DuplicateOutcome, SuggestionStatus
from chengyun.intake.services import case_reports, classify, given_by
from chengyun.org import scope
from chengyun.org.models import Role
from chengyun.taxonomy.models import Category

STAFF_ROLES = {Role.OPERATOR, Role.DISPATCHER, Role.ADMIN}
RECLASSIFY_STATUSES = (CaseStatus.NEW, CaseStatus.ACCEPTED, CaseStatus.REOPENED)
SCORE_PARTS = ("text", "distance", "place", "time")


_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


MAX_CHIP = 8  # characters: a longer stretch is shown as its n-grams
MIN_CHIP_SHARE = 0.3  # a term that weighs less than this share of the heaviest is not shown


def term_chips(terms, text: str = "") -> list[str]:
    """The classifier's top terms, once each, without the bare-space feature.

    The model reads character n-grams: fine as they are for Chinese (一两个字 are
    words), but fragments of English words ("emp", "ght l") mean nothing to a
    reader; with the report's ``text``, such a fragment is shown as the word of
    the text it comes from ("emptied", "light")."""
    text = text or ""
    words = _LATIN_WORD.findall(text)
    # Only the terms that weigh: the sixth of six is often a fragment that
    # happens to lean the same way ("口那"), which reads as noise to staff.
    weights = [float(t[1]) if isinstance(t, (list, tuple)) and len(t) > 1 else None for t in terms or []]
    top = max((w for w in weights if w is not None), default=None)
    names = [(t[0] if isinstance(t, (list, tuple)) else str(t)).strip() for t, w in zip(terms or [], weights, strict=True)
             if w is None or top is None or top <= 0 or w >= MIN_CHIP_SHARE * top]
    # Chinese n-grams that overlap in the text ("路灯", "灯不", "不亮") are shown as the
    # stretch of the text they cover together ("路灯不亮"), not as fragments.
    covered = [False] * len(text)
    for term in names:
        if term and not _LATIN_WORD.search(term):
            at = text.find(term)
            while at >= 0:
                covered[at:at + len(term)] = [True] * len(term)
                at = text.find(term, at + 1)
    out: list[str] = []
    for term in names:
        if words and _LATIN_WORD.search(term):
            piece = max(term.split(), key=len).lower()
            term = next((w for w in words if piece in w.lower()), term)
        elif term and term in text:
            start = text.find(term)
            left, right = start, start + len(term)
            while left > 0 and covered[left - 1] and not text[left - 1].isspace():
                left -= 1
            while right < len(text) and covered[right] and not text[right].isspace():
                right += 1
            if right - left <= MAX_CHIP:
                term = text[left:right]
        if term and term != "␣" and term not in out:
            out.append(term)
    # A Chinese chip inside another ("路" beside "路灯") says nothing more; an English
    # word inside another ("water" in "wastewater") is a word of its own.
    return [t for t in out if _LATIN_WORD.search(t) or not any(t != o and t in o for o in out)]


def _categories_by_code(codes) -> dict[str, Category]:
    codes = {c for c in codes if c}
    return {c.code: c for c in Category.objects.filter(code__in=codes)} if codes else {}


def given_label(channel: str) -> str:
    """Who chose a category that came with the report (see ``services.given_by``)."""
    return {"operator": _("chosen by the hotline operator"), "inspector": _("chosen by the grid inspector")}.get(
        given_by(channel)) or _("chosen by the reporter")


def decided_by_label(value: str | None, channel: str = "") -> str:
    return {
        "reporter": given_label(channel),
        "classifier": _("chosen by the classifier"),
        "nobody": _("not certain enough: waits for a dispatcher"),
    }.get(value or "", value or "")


def classification_view(report) -> dict:
    """The stored explanation of a report's category, ready for a template."""
    exp = report.classification or {}
    names = _categories_by_code([exp.get("category"), *(a[0] for a in exp.get("alternatives") or [])])
    code = exp.get("category")
    return {
        "given": report.category_given,
        "given_by": given_label(report.channel),
        "category": report.category,
        "suggested": names.get(code) if code else None,
        "suggested_code": code,
        "confidence": exp.get("confidence"),
        "terms": term_chips(exp.get("terms"), f"{report.title}\n{report.description}"),
        "alternatives": [(names.get(c) or c, p) for c, p in exp.get("alternatives") or []],
        "model": exp.get("model"),
        "decided_by": decided_by_label(exp.get("decided_by"), report.channel),
        "disagrees": bool(exp.get("disagrees")),
    }


def duplicate_view(explanation: dict) -> dict:
    """Score and its parts (text, distance, time) from a duplicate explanation."""
    exp = explanation or {}
    weights = exp.get("weights") or {}  # without a text comparison, the scaled ones (dedup.scaled_weights)
    compared = exp.get("text_compared", True)
    parts = [(name, exp[name], weights.get(name)) for name in SCORE_PARTS if name in exp and exp[name] is not None]
    return {
        "score": exp.get("score"),
        "parts": parts,
        "text_not_compared": not compared,
        "distance_m": exp.get("distance_m"),
        "spread_m": exp.get("spread_m"),
        "category_factor": exp.get("category_factor"),
        "best_case": exp.get("best_case"),
        "candidates": exp.get("candidates"),
        "reason": reason_text(exp.get("reason", "")),
        "attach_at": exp.get("attach_at"),
        "ask_at": exp.get("ask_at"),
    }


def part_labels() -> dict[str, str]:
    return {"text": _("text"), "distance": _("distance"), "place": _("place"), "time": _("time")}


def report_rows(user, case: Case, *, revealed: dict | None = None) -> list[dict]:
    """One row per report of the case (and of cases merged into it)."""
    revealed = revealed or {}
    staff = scope.can_act(user, case, STAFF_ROLES)
    reports = (case_reports(case).select_related("suggested_category", "area", "case", "case__merged_into")
               # the case's parts: who may reveal a contact is asked for every row
               .prefetch_related("photos", "notifications__entry", "case__assignments", "suggestions__candidate",
                                 "suggestions__decided_by")
               .order_by("received_at", "pk"))
    rows = []
    for r in reports:
        decided = next((s for s in sorted(r.suggestions.all(), key=lambda s: s.created_at, reverse=True)
                        if s.status != SuggestionStatus.PENDING), None) if r.duplicate == "ask" else None
        rows.append({
            "report": r,
            "classification": classification_view(r),
            "duplicate": duplicate_view(r.duplicate_explanation),
            # A grey-zone question once answered: what was decided, not "a dispatcher decides";
            # merged elsewhere (into a cluster warning's case), where to.
            "decided": decided,
            "merged_elsewhere": (r.case.merged_into.number if decided is not None and r.case is not None
                                 and r.case.merged_into_id not in (None, decided.candidate_id) else None),
            "photos": list(r.photos.all()),
            "contact": privacy.masked(r.contact) if r.contact_id else {},
            "full_contact": revealed.get(r.pk),
            "can_reveal": r.contact_id is not None and privacy.can_reveal(user, r),
            "can_detach": staff and r.case_id == case.pk and r.duplicate == DuplicateOutcome.ATTACHED,
            "other_case": r.case if r.case_id != case.pk else None,
            # The reporter asked to be told: what was sent (staff see that the reporter was informed).
            "wants_messages": bool(r.contact_id and r.contact.notify),
            "messages": [{"n": n, "about": CaseStatus(n.entry.to_status).label}
                         for n in sorted(r.notifications.all(), key=lambda n: (n.created_at, n.pk))],
        })
    return rows


def pending_suggestions(user, case: Case) -> list[dict]:
    rows = []
    for s in (case.duplicate_suggestions.filter(status=SuggestionStatus.PENDING)
              .select_related("candidate", "candidate__category", "report")):
        rows.append({
            "suggestion": s,
            "candidate": s.candidate,
            "candidate_visible": scope.can_see(user, s.candidate),
            "duplicate": duplicate_view({**s.explanation, "score": s.score}),
        })
    return rows


def reclassify_hint(case: Case) -> dict | None:
    """The classifier's opinion of the case's own text (for the reclassify control)."""
    _decided, suggestion, confidence, version, explanation, _certain = classify(
        f"{case.title}\n{case.description}", None
    )
    if suggestion is None:
        return None
    return {"category": suggestion, "confidence": confidence, "model": version,
            "terms": term_chips(explanation.get("terms"), f"{case.title}\n{case.description}")}


def relocate_choices(user, case: Case) -> list[tuple[str, str]]:
    """The areas a case may be moved to from the console's list: the streets of its
    district (a case an address placed only in its district, or in the wrong street),
    or the districts when it has no area; those in the user's own area; (code, name),
    the current one left out."""
    from chengyun.areas.locator import get_locator
    from chengyun.cases.services import RELOCATE_ROLES

    loc = get_locator()
    info = loc.by_id.get(case.area_id) if case.area_id else None
    district = next((a for a in loc.chain(info) if a.depth == 1), None) if info is not None else None
    wanted = (lambda a: a.depth == 2 and a.parent_id == district.id) if district else (lambda a: a.depth == 1)
    ids = [a.id for a in loc.areas if wanted(a) and a.id != case.area_id]
    paths = dict(Area.objects.filter(pk__in=ids).values_list("pk", "path"))
    return [(loc.by_id[pk].code, loc.by_id[pk].display_name) for pk in ids
            if pk in paths and scope.can_act_in(user, paths[pk], RELOCATE_ROLES)]


def case_intake_context(user, case: Case, *, revealed: dict | None = None) -> dict:
    from chengyun.cases.services import RELOCATE_ROLES

    can_reclassify = case.status in RECLASSIFY_STATUSES and scope.can_act(user, case, STAFF_ROLES)
    can_relocate = case.status in RECLASSIFY_STATUSES and scope.can_act(user, case, RELOCATE_ROLES)
    warning = ClusterWarning.objects.filter(case=case).select_related("category", "area").first()
    return {
        "reports": report_rows(user, case, revealed=revealed),
        "dup_suggestions": pending_suggestions(user, case),
        "can_decide": scope.can_act(user, case, STAFF_ROLES),
        "can_reclassify": can_reclassify,
        "reclassify_hint": reclassify_hint(case) if can_reclassify else None,
        "relocate_areas": relocate_choices(user, case) if can_relocate else None,
        "cluster": warning,
        "cluster_reports": list(warning.reports.select_related("case").order_by("received_at")) if warning else [],
        "can_merge_cluster": bool(warning) and case.status in OPEN_STATUSES and scope.can_act(user, case, STAFF_ROLES),
        "part_labels": part_labels(),
    }
