"""Routing: category x location -> lead department (+ assisting), explained.

:func:`route` reads the rules, departments and areas a decision needs with a
handful of queries (about 3 ms). A caller that routes thousands of cases while
nothing in the routing tables changes (the demo's history generator, a replay
of old cases) opens :func:`routing_snapshot`: inside it, :func:`route` answers
from tables read once, through the same decision code, so decisions and
explanations are the same as without it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db.models import Q

from .models import Category, RoutingRule

# The routing rules' related rows, loaded with every rule (both paths).
_RULE_RELATED = ("category", "area", "level", "lead_department", "lead_kind")
_RULE_PREFETCH = ("assisting_departments", "assisting_kinds")
# The area fields a decision reads; the geometry stays in the database.
_AREA_FIELDS = ("id", "code", "level_id", "path")


@dataclass
class RouteDecision:
    rule: RoutingRule | None
    lead: object | None  # org.Department
    assisting: list = field(default_factory=list)
    explanation: dict = field(default_factory=dict)


# (kind id, area chain, level id or None) -> the department of that kind, or None
FindKind = Callable[[int, list, "int | None"], object | None]


def _path_ids(area) -> list[int]:
    return [int(x) for x in area.path.strip("/").split("/") if x]


def _find_kind(kind_id: int, chain: list, level_id: int | None):
    """The active department of a kind serving the chain's area at a level
    (or, with no level, the nearest one going up)."""
    from chengyun.org.models import Department

    candidates = chain if level_id is None else [a for a in chain if a.level_id == level_id]
    if not candidates:
        return None
    found = {
        d.area_id: d
        for d in Department.objects.filter(kind_id=kind_id, active=True, area_id__in=[a.pk for a in candidates]).order_by("code")
    }
    for area in reversed(candidates):  # deepest first
        if area.pk in found:
            return found[area.pk]
    return None


def route(category: Category | None, area) -> RouteDecision:
    """Pick the most specific rule that yields a department, and say why."""
    if category is None:
        return RouteDecision(None, None, [], {"outcome": "no_category"})
    tables = _snapshot.get()
    if tables is not None and tables.knows(category, area):
        return tables.route(category, area)
    if area is not None:  # area.ancestors(), without reading every polygon of the chain
        ids = _path_ids(area)
        by_id = {a.pk: a for a in area.__class__.objects.only(*_AREA_FIELDS).filter(pk__in=ids)}
        chain = [by_id[i] for i in ids if i in by_id]
    else:
        chain = []
    lineage = category.lineage()
    rules = list(
        RoutingRule.objects.filter(active=True, category__in=lineage)
        .filter(Q(area__isnull=True) | Q(area_id__in=[a.pk for a in chain]))
        .select_related(*_RULE_RELATED)
        .prefetch_related(*_RULE_PREFETCH)
    )
    return _decide(category, lineage, chain, rules, _find_kind)


def _decide(category: Category, lineage: list[Category], chain: list, rules: list[RoutingRule],
            find_kind: FindKind) -> RouteDecision:
    """The decision over the rules of the category's lineage that apply
    within the area chain (top first); both routing paths end here."""
    depth_of = {a.pk: i for i, a in enumerate(chain)}
    spec = {c.pk: i for i, c in enumerate(lineage)}
    rules = sorted(rules, key=lambda r: (spec[r.category_id], -(depth_of.get(r.area_id, -1)), r.order, r.pk))
    skipped = []
    for rule in rules:
        lead = rule.lead_department if rule.lead_department_id else None
        if lead is None and rule.lead_kind_id:
            lead = find_kind(rule.lead_kind_id, chain, rule.level_id)
        if lead is None or not lead.active:
            skipped.append(
                {
                    "rule": rule.pk,
                    "kind": rule.lead_kind.kind if rule.lead_kind_id else None,
                    "level": rule.level.key if rule.level_id else None,
                    "reason": "no_department",
                }
            )
            continue
        assisting = [d for d in rule.assisting_departments.all() if d.active and d.pk != lead.pk]
        for kind in rule.assisting_kinds.all():
            d = find_kind(kind.pk, chain, rule.level_id) or find_kind(kind.pk, chain, None)
            if d is not None and d.pk != lead.pk and d not in assisting:
                assisting.append(d)
        explanation = {
            "outcome": "routed",
            "rule": rule.pk,
            "rule_category": rule.category.code,
            "category": category.code,
            "inherited": rule.category_id != category.pk,
            "rule_area": rule.area.code if rule.area_id else None,
            "level": rule.level.key if rule.level_id else None,
            "lead_kind": rule.lead_kind.kind if rule.lead_kind_id else None,
            "located_in": chain[-1].code if chain else None,
            "lead": lead.code,
            "assisting": [d.code for d in assisting],
            "skipped": skipped,
        }
        return RouteDecision(rule, lead, assisting, explanation)
    return RouteDecision(
        None, None, [], {"outcome": "no_rule", "category": category.code, "located_in": chain[-1].code if chain else None,
                         "skipped": skipped}
    )


# --------------------------------------------------------------------------- the snapshot


class RoutingTables:
    """Categories, areas (without geometry), active rules and active
    departments, read once. :meth:`route` builds the same inputs as
    :func:`route` reads from the database and hands them to the same
    :func:`_decide`."""

    def __init__(self) -> None:
        from chengyun.areas.models import Area
        from chengyun.org.models import Department

        self.categories = {c.pk: c for c in Category.objects.all()}
        self.areas = {a.pk: a for a in Area.objects.only(*_AREA_FIELDS)}
        self.rules: dict[int, list[RoutingRule]] = {}
        for rule in (RoutingRule.objects.filter(active=True).select_related(*_RULE_RELATED)
                     .prefetch_related(*_RULE_PREFETCH)):
            self.rules.setdefault(rule.category_id, []).append(rule)
        # In code order, so that (as in _find_kind) the largest code of a kind in an area wins.
        self.departments: dict[tuple[int, int], object] = {
            (d.kind_id, d.area_id): d for d in Department.objects.filter(active=True).order_by("code")
        }

    def knows(self, category: Category, area) -> bool:
        """Whether the snapshot holds the category and area (a row made after
        it was read is routed from the database instead)."""
        return category.pk in self.categories and (area is None or area.pk in self.areas)

    def _find_kind(self, kind_id: int, chain: list, level_id: int | None):
        candidates = chain if level_id is None else [a for a in chain if a.level_id == level_id]
        for area in reversed(candidates):  # deepest first
            found = self.departments.get((kind_id, area.pk))
            if found is not None:
                return found
        return None

    def route(self, category: Category, area) -> RouteDecision:
        chain = [self.areas[i] for i in _path_ids(area) if i in self.areas] if area is not None else []
        lineage, node = [category], self.categories.get(category.parent_id)
        while node is not None:
            lineage.append(node)
            node = self.categories.get(node.parent_id)
        in_chain = {a.pk for a in chain}
        rules = [r for c in lineage for r in self.rules.get(c.pk, ()) if r.area_id is None or r.area_id in in_chain]
        return _decide(category, lineage, chain, rules, self._find_kind)


_snapshot: contextvars.ContextVar[RoutingTables | None] = contextvars.ContextVar("chengyun_routing", default=None)


@contextlib.contextmanager
def routing_snapshot(tables: RoutingTables | None = None) -> Iterator[RoutingTables]:
    """Route from tables read once, for a batch of work during which routing
    rules, departments, categories and areas do not change (the caller's
    promise: a change made inside is not seen until the block ends).
    ``tables``: ones the caller read earlier and keeps (the intake worker,
    which rebuilds its routing state every ``INTAKE_PIPELINE_REFRESH_SECONDS``)."""
    token = _snapshot.set(tables if tables is not None else RoutingTables())
    try:
        yield _snapshot.get()
    finally:
        _snapshot.reset(token)
