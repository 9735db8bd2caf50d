"""What a user may see and do: roles over area subtrees and departments.

A case is *in scope* for a role assignment when the case's area lies in the
assignment's area subtree (no area = the whole city), or, for an assignment
with a department, when that department is one of the case's handling
departments. Staff who are superusers see everything.
"""

from __future__ import annotations

from django.db.models import Q

from .models import Role, RoleAssignment


def assignments(user) -> list[RoleAssignment]:
    if not user or not user.is_authenticated:
        return []
    cached = getattr(user, "_chengyun_roles", None)
    if cached is None:
        cached = list(RoleAssignment.objects.select_related("area", "department", "department__area").filter(user=user))
        user._chengyun_roles = cached
    return cached


def roles_of(user) -> set[str]:
    if user and user.is_authenticated and user.is_superuser:
        return {r.value for r in Role}
    return {a.role for a in assignments(user)}


def _assignment_q(a: RoleAssignment, prefix: str, active_parts: bool = False) -> Q:
    if a.department_id:
        from chengyun.cases.models import CaseAssignment

        parts = CaseAssignment.objects.filter(department_id=a.department_id)
        handled = (parts.filter(active=True) if active_parts else parts).values("case_id")
        return Q(**{f"{prefix}pk__in": handled})
    if a.area_id:
        return Q(**{f"{prefix}area_path__startswith": a.area.path})
    return Q()  # the whole city


def case_scope_q(user, roles: set[str] | None = None, prefix: str = "", *, active_parts: bool = False) -> Q | None:
    """A filter for the cases the user may see (optionally only via some roles).
    ``active_parts``: a department's cases only while it holds a part (its open work;
    a case it returned or that was recalled from it stays visible, not in that list).

    Returns None when nothing is visible.
    """
    if user and user.is_authenticated and user.is_superuser:
        return Q()
    q = None
    for a in assignments(user):
        if roles is not None and a.role not in roles:
            continue
        part = _assignment_q(a, prefix, active_parts)
        if part == Q():
            return Q()
        q = part if q is None else (q | part)
    return q


def covers_case(a: RoleAssignment, case, *, active_only: bool = False) -> bool:
    if a.department_id:
        return any(x.department_id == a.department_id and (x.active or not active_only)
                   for x in case.assignments.all())
    if a.area_id:
        return (case.area_path or "").startswith(a.area.path)
    return True


def can_act(user, case, roles: set[str]) -> bool:
    if user and user.is_authenticated and user.is_superuser:
        return True
    # A department acts on a case while it holds a part of it (not once it returned its
    # part or the case was recalled from it, though it still sees the case).
    return any(a.role in roles and covers_case(a, case, active_only=True) for a in assignments(user))


def can_act_in(user, area_path: str, roles: set[str]) -> bool:
    """Whether the user holds one of ``roles`` over the area at ``area_path`` (an
    area assignment holding it, or a city-wide one; not a department's)."""
    if user and user.is_authenticated and user.is_superuser:
        return True
    return any(a.role in roles and not a.department_id and (not a.area_id or area_path.startswith(a.area.path))
               for a in assignments(user))


def can_see(user, case) -> bool:
    if user and user.is_authenticated and user.is_superuser:
        return True
    return any(covers_case(a, case) for a in assignments(user))


def handler_departments(user, case) -> set[int]:
    """Departments of the case the user may act for as a handler."""
    case_depts = {x.department_id for x in case.assignments.all()}
    if user and user.is_authenticated and user.is_superuser:
        return case_depts
    mine = set()
    for a in assignments(user):
        if a.role not in (Role.HANDLER, Role.ADMIN):
            continue
        if a.department_id:
            mine.add(a.department_id)
        elif a.role == Role.ADMIN and (not a.area_id or (case.area_path or "").startswith(a.area.path)):
            mine |= case_depts
    return mine & case_depts
