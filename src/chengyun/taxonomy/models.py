"""Categories (GB/T 30428.2 components and events, hotline matters) and routing rules."""

from __future__ import annotations

from collections import Counter

from django.db import models
from django.utils.translation import gettext_lazy as _

from chengyun.i18n import BilingualName


class Priority(models.TextChoices):
    URGENT = "urgent", _("Urgent")
    HIGH = "high", _("High")
    NORMAL = "normal", _("Normal")
    LOW = "low", _("Low")


# A case's allowed time, relative to one of normal priority.
PRIORITY_DEADLINE_FACTOR = {
    Priority.URGENT: 0.25,
    Priority.HIGH: 0.5,
    Priority.NORMAL: 1.0,
    Priority.LOW: 1.5,
}


def deadline_factor(priority: str, default: str) -> float:
    """The share of a category's deadline hours that a case of ``priority`` gets.
    The hours are the category's deadline at its own (default) priority: a water
    main burst set to 4 urgent hours gets 4 hours, not a quarter of them. A case
    raised above the category's priority gets less time, one lowered gets more."""
    return PRIORITY_DEADLINE_FACTOR.get(priority, 1.0) / PRIORITY_DEADLINE_FACTOR.get(default, 1.0)


class DeadlineKind(models.TextChoices):
    WORKING = "working", _("Working hours")
    CALENDAR = "calendar", _("Calendar hours")


class CategoryKind(models.TextChoices):
    COMPONENT = "component", _("Component (部件)")
    EVENT = "event", _("Event (事件)")
    HOTLINE = "hotline", _("Hotline matter")


class CategoryQuerySet(models.QuerySet):
    def reportable(self) -> CategoryQuerySet:
        """The categories a report may be given, the same on every channel
        (Open311's services, the portal's picker, the hotline, inspector and
        case pages): active, without an active sub-category (a group is not a
        problem one can report), and under no inactive group."""
        return (self.filter(active=True).exclude(children__active=True)
                .exclude(parent__active=False).exclude(parent__parent__active=False))

    def in_groups(self) -> list[Category]:
        """The categories in the order of a picker's groups (``<optgroup>``, one
        per parent; categories without a parent together, last), by code within."""
        cats = sorted(self.select_related("parent"),
                      key=lambda c: (c.parent_id is None, c.parent.code if c.parent_id else "", c.code))
        # Two groups of one name (the standard's 市容环境 is a class of components and
        # one of events) are told apart by their kind: ``parent.picker_label``.
        names = Counter(str(p) for p in {c.parent_id: c.parent for c in cats if c.parent_id}.values())
        for c in cats:
            if c.parent_id:
                name = str(c.parent)
                c.parent.picker_label = f"{name} · {c.parent.get_kind_display()}" if names[name] > 1 else name
        return cats


class Category(BilingualName, models.Model):
    code = models.CharField(_("code"), max_length=20, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=80)
    name_en = models.CharField(_("name (English)"), max_length=120)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children", verbose_name=_("parent")
    )
    kind = models.CharField(_("kind"), max_length=12, choices=CategoryKind.choices, default=CategoryKind.EVENT)
    keywords_zh = models.JSONField(_("keywords (Chinese)"), default=list, blank=True)
    keywords_en = models.JSONField(_("keywords (English)"), default=list, blank=True)
    deadline_hours = models.DecimalField(
        _("deadline (hours)"), max_digits=7, decimal_places=2, default=40,
        help_text=_("At the category's default priority. A case given a higher priority gets less time (urgent: a "
                    "quarter of a normal case's, high: half), a lower one more (low: one and a half times)."))
    deadline_kind = models.CharField(
        _("deadline counted in"), max_length=10, choices=DeadlineKind.choices, default=DeadlineKind.WORKING
    )
    response_hours = models.DecimalField(_("response deadline (hours)"), max_digits=6, decimal_places=2, default=2)
    priority = models.CharField(_("default priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    active = models.BooleanField(_("active"), default=True)
    # Intake: duplicates, cluster warnings, on-the-spot handling.
    duplicate_radius_m = models.PositiveIntegerField(
        _("duplicate radius (m)"), default=150, help_text=_("reports this close may be the same problem")
    )
    duplicate_window_hours = models.PositiveIntegerField(
        _("duplicate window (hours)"), default=72, help_text=_("… if the open case is at most this old")
    )
    cluster_reports = models.PositiveIntegerField(
        _("cluster warning: reports"), default=0,
        help_text=_("this many reports within the radius and window raise a warning; 0 = never"),
    )
    cluster_radius_m = models.PositiveIntegerField(_("cluster warning: radius (m)"), default=500)
    cluster_window_minutes = models.PositiveIntegerField(_("cluster warning: window (minutes)"), default=60)
    self_dispose = models.BooleanField(
        _("inspectors may close on the spot (自行处置)"), default=False,
        help_text=_("a grid inspector who fixed it while on patrol may report it already closed"),
    )
    # When the category (or, see open311.signals, one of its Open311 attributes) last
    # changed: the Open311 discovery document's changeset, which clients cache by.
    updated_at = models.DateTimeField(_("changed"), auto_now=True)

    objects = CategoryQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    @property
    def is_leaf(self) -> bool:
        return not self.children.exists()

    def lineage(self) -> list[Category]:
        """This category and its ancestors, most specific first."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out


class RoutingRule(models.Model):
    """category x area (level) -> lead department (+ assisting).

    The lead is either a named department, or a department *kind* found at the
    given area level above the case's location (for example "the water
    authority of the case's district"). The most specific rule wins: a rule for
    the case's own category beats one for its parent category, and a rule
    limited to an area beats a city-wide one (the deeper the area, the
    stronger); ``order`` breaks remaining ties (lower first).
    """

    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="rules", verbose_name=_("category"))
    area = models.ForeignKey(
        "areas.Area", null=True, blank=True, on_delete=models.CASCADE, related_name="+", verbose_name=_("only within area"),
        help_text=_("empty: everywhere"),
    )
    level = models.ForeignKey(
        "areas.AreaLevel", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("department level"), help_text=_("find the lead/assisting kinds at this level above the case"),
    )
    lead_department = models.ForeignKey(
        "org.Department", null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("lead department")
    )
    lead_kind = models.ForeignKey(
        "org.DepartmentKind", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("lead department kind"),
    )
    assisting_departments = models.ManyToManyField(
        "org.Department", blank=True, related_name="+", verbose_name=_("assisting departments")
    )
    assisting_kinds = models.ManyToManyField(
        "org.DepartmentKind", blank=True, related_name="+", verbose_name=_("assisting department kinds")
    )
    order = models.PositiveIntegerField(_("order"), default=100)
    active = models.BooleanField(_("active"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        ordering = ["category__code", "order", "pk"]
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")

    def __str__(self) -> str:
        lead = self.lead_department or self.lead_kind
        where = self.area or _("everywhere")
        return f"#{self.pk} {self.category.code} @ {where} → {lead}"
