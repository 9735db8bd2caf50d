from __future__ import annotations

from ninja import Router, Schema

from chengyun.org.models import Department

from .models import Category

router = Router(tags=["taxonomy"])


class CategoryOut(Schema):
    code: str
    name: str
    name_en: str
    parent: str | None
    kind: str
    deadline_hours: float
    deadline_kind: str
    priority: str


@router.get("/categories", response=list[CategoryOut], auth=None, summary="Categories")
def categories(request):
    return [
        {"code": c.code, "name": c.name, "name_en": c.name_en, "parent": c.parent.code if c.parent_id else None,
         "kind": c.kind, "deadline_hours": float(c.deadline_hours), "deadline_kind": c.deadline_kind, "priority": c.priority}
        for c in Category.objects.select_related("parent").filter(active=True)
    ]


class DepartmentOut(Schema):
    code: str
    name: str
    name_en: str
    kind: str
    area: str


@router.get("/departments", response=list[DepartmentOut], summary="Departments")
def departments(request):
    return [
        {"code": d.code, "name": d.name, "name_en": d.name_en, "kind": d.kind.kind, "area": d.area.code}
        for d in Department.objects.select_related("kind", "area").filter(active=True)
    ]
