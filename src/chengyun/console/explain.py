"""Turn a stored routing explanation into a sentence in the user's language."""

from __future__ import annotations

from django.utils.translation import gettext as _

from chengyun.areas.models import Area, AreaLevel
from chengyun.i18n import prefers_chinese
from chengyun.org.models import Department, DepartmentKind
from chengyun.taxonomy.models import Category


def _named(model, value, **lookup) -> str:
    """The display name of the row a stored code points at, or the code itself."""
    row = model.objects.filter(**lookup).first()
    return str(row) if row else value


def _dept(code):
    return _named(Department, code, code=code)


def _area(code):
    return _named(Area, code, code=code)


def _kind(kind):
    return _named(DepartmentKind, kind, kind=kind)


def _level(key):
    return _named(AreaLevel, key, key=key)


def explain_route(exp: dict) -> str:
    outcome = exp.get("outcome")
    if outcome == "no_category":
        return _("No category yet, so no routing rule applies.")
    if outcome == "no_rule":
        return _("No routing rule found a department for this category here; a dispatcher must choose.")
    if outcome != "routed":
        return ""
    cat = Category.objects.filter(code=exp.get("rule_category")).first()
    parts = [
        _("Rule #%(rule)s for category “%(category)s”%(inherited)s") % {
            "rule": exp.get("rule"), "category": cat or exp.get("rule_category"),
            "inherited": _(" (inherited from the parent category)") if exp.get("inherited") else "",
        },
        _("applies within %(area)s") % {"area": _area(exp["rule_area"])} if exp.get("rule_area") else _("applies city-wide"),
    ]
    if exp.get("lead_kind"):
        parts.append(
            _("the lead is the “%(kind)s” department at %(level)s level for %(where)s: %(lead)s") % {
                "kind": _kind(exp["lead_kind"]), "level": _level(exp["level"]) if exp.get("level") else _("the nearest"),
                "where": _area(exp.get("located_in")) if exp.get("located_in") else _("the case"),
                "lead": _dept(exp.get("lead")),
            }
        )
    else:
        parts.append(_("the lead is %(lead)s") % {"lead": _dept(exp.get("lead"))})
    if exp.get("assisting"):
        parts.append(_("assisting: %(list)s") % {"list": "、".join(_dept(c) for c in exp["assisting"])})
    zh = prefers_chinese()
    text = ("；" if zh else "; ").join(parts) + ("。" if zh else ".")
    if exp.get("overridden"):
        text += ("" if zh else " ") + _("A dispatcher overrode this and chose %(lead)s.") % {"lead": _dept(exp.get("chosen_lead"))}
    return text
