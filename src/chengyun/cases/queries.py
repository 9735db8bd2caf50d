"""Reading cases: the scoped queue and one case, as the user may see them."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce

from chengyun.clock import now
from chengyun.org import scope

from .models import Case
from .workflow import WAITING_FOR_DISPATCH


def visible_cases(user) -> QuerySet[Case]:
    q = scope.case_scope_q(user)
    if q is None:
        return Case.objects.none()
    return Case.objects.filter(q)


def waiting_for_dispatch(qs: QuerySet[Case]) -> QuerySet[Case]:
    """The cases of ``qs`` waiting for a dispatcher, longest waiting first."""
    return (qs.filter(status__in=WAITING_FOR_DISPATCH)
            .annotate(waiting_from=Coalesce("waiting_since", "created_at")).order_by("waiting_from", "pk"))


def past_dispatch_time(qs: QuerySet[Case], at=None) -> QuerySet[Case]:
    """Those of them waiting longer than ``DISPATCH_HOURS`` (派单时限) at ``at``."""
    cut = (at or now()) - timedelta(hours=settings.DISPATCH_HOURS)
    return waiting_for_dispatch(qs).filter(waiting_from__lte=cut)


def queue(user, *, status: str | None = None, deadline: str | None = None, text: str | None = None,
          area_code: str | None = None, category_code: str | None = None) -> QuerySet[Case]:
    # The open list is the work at hand: a department's cases while it holds a part.
    q = scope.case_scope_q(user, active_parts=status == "open")
    qs = (Case.objects.filter(q) if q is not None else Case.objects.none()).select_related(
        "category", "area", "area__level", "escalated_to")
    if status == "open":
        from .workflow import OPEN_STATUSES

        qs = qs.filter(status__in=OPEN_STATUSES)
    elif status:
        qs = qs.filter(status=status)
    if deadline:
        qs = qs.filter(deadline_state=deadline)
    if text:
        text = text.strip()
        # The category's names too, in both languages: a smart-discovery case's title is
        # stored in the site's language ("智能发现：…停水"), and "no water" finds it so.
        match = (Q(number__icontains=text) | Q(title__icontains=text) | Q(address__icontains=text)
                 | Q(category__name__icontains=text) | Q(category__name_en__icontains=text))
        from chengyun.intake import numbers

        number = numbers.normalise(text)
        if number is not None:
            # A report's tracking number (what a caller or a partner has), with or without
            # its R: its case, or the case it was merged into; or a case's own number.
            from chengyun.intake.models import Report

            reports = Report.objects.filter(number=number)
            match = (Q(pk__in=reports.values("case_id")) | Q(pk__in=reports.values("case__merged_into_id"))
                     | Q(number=text))
        qs = qs.filter(match)
    if area_code:
        from chengyun.areas.models import Area

        area = Area.objects.filter(code=area_code).first()
        qs = qs.filter(area_path__startswith=area.path) if area else qs.none()
    if category_code:
        qs = qs.filter(Q(category__code=category_code) | Q(category__parent__code=category_code))
    return qs


def get_visible(user, number: str) -> Case | None:
    """The case, or None if it does not exist *or* the user may not see it."""
    return (
        visible_cases(user)
        .select_related("category", "area", "area__level", "merged_into", "route_rule", "escalated_to")
        .prefetch_related("assignments__department")
        .filter(number=number)
        .first()
    )
