"""Routing: category x location -> lead department (+ assisting), explained."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q

from .models import Category, RoutingRule


@dataclass
class RouteDecision:
    rule: RoutingRule | None
    lead: object | None  # org.Department
    assisting: list = field(default_factory=list)
    explanation: dict = field(default_factory=dict)


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
    chain = area.ancestors() if area is not None else []
    chain_ids = [a.pk for a in chain]
    depth_of = {a.pk: i for i, a in enumerate(chain)}
    lineage = category.lineage()
    spec = {c.pk: i for i, c in enumerate(lineage)}
    rules = list(
        RoutingRule.objects.filter(active=True, category__in=lineage)
        .filter(Q(area__isnull=True) | Q(area_id__in=chain_ids))
        .select_related("category", "area", "level", "lead_department", "lead_kind")
        .prefetch_related("assisting_departments", "assisting_kinds")
    )
    rules.sort(key=lambda r: (spec[r.category_id], -(depth_of.get(r.area_id, -1)), r.order, r.pk))
    skipped = []
    for rule in rules:
        lead = rule.lead_department if rule.lead_department_id else None
        if lead is None and rule.lead_kind_id:
            lead = _find_kind(rule.lead_kind_id, chain, rule.level_id)
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
            d = _find_kind(kind.pk, chain, rule.level_id) or _find_kind(kind.pk, chain, None)
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
