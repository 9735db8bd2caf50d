"""Cases, their handling parts, timeline, extension requests."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from chengyun.taxonomy.models import Priority

from .workflow import CaseStatus


class Channel(models.TextChoices):
    WEB = "web", _("Web form")
    OPEN311 = "open311", _("Open311 app")
    HOTLINE = "hotline", _("12345 hotline")
    INSPECTOR = "inspector", _("Grid inspector")
    SENSOR = "sensor", _("Sensor alarm")
    DEPARTMENT = "department", _("Department system")
    DISCOVERY = "discovery", _("Smart discovery (智能发现)")


class DeadlineState(models.TextChoices):
    ON_TIME = "on_time", _("On time")
    NEAR_DUE = "near_due", _("Near due")
    OVERDUE = "overdue", _("Overdue")


class Satisfaction(models.TextChoices):
    SATISFIED = "satisfied", _("Satisfied")
    BASIC = "basically_satisfied", _("Basically satisfied")
    UNSATISFIED = "unsatisfied", _("Unsatisfied")
    UNREACHABLE = "unreachable", _("Could not be reached")


class Case(models.Model):
    number = models.CharField(_("case number"), max_length=32, unique=True, blank=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    # No index of its own on the category or the status: the (category,
    # created_at) and (status, due_at) indexes below serve every lookup by
    # either (their first column), and each index is pages written per batch
    # of new cases (the category's at a random place: ~60 pages of the
    # ~240 a batch of 100 wrote, measured).
    category = models.ForeignKey(
        "taxonomy.Category", null=True, blank=True, on_delete=models.PROTECT, related_name="cases", verbose_name=_("category"),
        db_index=False,
    )
    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(_("status"), max_length=24, choices=CaseStatus.choices, default=CaseStatus.NEW)
    channel = models.CharField(_("channel"), max_length=12, choices=Channel.choices, default=Channel.WEB)
    lon = models.FloatField(_("longitude"), null=True, blank=True)
    lat = models.FloatField(_("latitude"), null=True, blank=True)
    address = models.CharField(_("address"), max_length=300, blank=True)
    area = models.ForeignKey(
        "areas.Area", null=True, blank=True, on_delete=models.PROTECT, related_name="cases", verbose_name=_("area")
    )
    area_path = models.CharField(max_length=255, blank=True, db_index=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created"), db_index=True)
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    dispatched_at = models.DateTimeField(_("dispatched"), null=True, blank=True)
    responded_at = models.DateTimeField(_("responded"), null=True, blank=True)
    response_due_at = models.DateTimeField(_("response due"), null=True, blank=True)
    due_at = models.DateTimeField(_("due"), null=True, blank=True, db_index=True)
    done_at = models.DateTimeField(_("reported done"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    waiting_since = models.DateTimeField(
        _("waiting for dispatch since"), null=True, blank=True,
        help_text=_("When the case last came back to wait for a dispatcher (returned, recalled, reopened, "
                    "unmerged); empty: since it was created."))
    deadline_state = models.CharField(
        _("deadline"), max_length=10, choices=DeadlineState.choices, default=DeadlineState.ON_TIME, db_index=True
    )
    escalation_level = models.PositiveSmallIntegerField(_("escalation level"), default=0)
    escalated_to = models.ForeignKey(
        "areas.Area", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("escalated to")
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_cases", verbose_name=_("merged into")
    )
    route_rule = models.ForeignKey(
        "taxonomy.RoutingRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("routing rule")
    )
    route_explanation = models.JSONField(_("why this route"), default=dict, blank=True)
    resolved = models.BooleanField(_("confirmed solved"), null=True, blank=True)
    satisfaction = models.CharField(_("satisfaction"), max_length=20, choices=Satisfaction.choices, blank=True)
    generated = models.BooleanField(_("generated demo data"), default=False)
    version = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("case")
        verbose_name_plural = _("cases")
        indexes = [
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["area_path", "status"]),
            # duplicate candidates: recent cases of a category group
            models.Index(fields=["category", "created_at"]),
            # duplicate candidates back in the queue (reopened) since; most cases have none: not indexed
            models.Index(fields=["waiting_since"], condition=models.Q(waiting_since__isnull=False),
                         name="cases_case_waiting_since_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        from .workflow import OPEN_STATUSES

        return self.status in OPEN_STATUSES

    @property
    def response_overdue(self) -> bool:
        """Sent to a department that has not started on it by its response deadline."""
        from chengyun.clock import now

        return (self.responded_at is None and self.response_due_at is not None and self.is_open
                and now() >= self.response_due_at)

    @property
    def dispatch_due_at(self):
        """By when a dispatcher is to send the case on (派单时限): DISPATCH_HOURS after
        it began to wait (its creation, or its return to the queue); None unless waiting."""
        from .workflow import WAITING_FOR_DISPATCH

        if self.status not in WAITING_FOR_DISPATCH:
            return None
        return (self.waiting_since or self.created_at) + timedelta(hours=settings.DISPATCH_HOURS)

    @property
    def dispatch_overdue(self) -> bool:
        from chengyun.clock import now

        due = self.dispatch_due_at
        return due is not None and now() >= due

    @property
    def dispatch_late_text(self) -> str:
        """How far past its dispatch time a waiting case is, in words ("" if it is not)."""
        from django.utils.translation import gettext, ngettext

        from chengyun.clock import now

        due = self.dispatch_due_at
        if due is None or now() < due:
            return ""
        minutes = max(1, int((now() - due).total_seconds() // 60))
        if minutes < 60:
            return gettext("past dispatch time by %(n)s min") % {"n": minutes}
        hours = minutes // 60
        if hours < 48:
            return ngettext("past dispatch time by %(n)s hour", "past dispatch time by %(n)s hours", hours) % {
                "n": hours}
        return gettext("past dispatch time by %(n)s days") % {"n": hours // 24}

    @property
    def lead(self):
        for a in self.assignments.all():
            if a.role == AssignmentRole.LEAD and a.active:
                return a
        return None


class AssignmentRole(models.TextChoices):
    LEAD = "lead", _("Lead (主办)")
    ASSISTING = "assisting", _("Assisting (协办)")


class PartStatus(models.TextChoices):
    DISPATCHED = "dispatched", _("Dispatched")
    IN_PROGRESS = "in_progress", _("In progress")
    DONE = "done", _("Done")
    RETURNED = "returned", _("Returned")
    WITHDRAWN = "withdrawn", _("Withdrawn")


class CaseAssignment(models.Model):
    """One department's part in a case (joint handling, 联勤联动)."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="assignments", verbose_name=_("case"))
    department = models.ForeignKey("org.Department", on_delete=models.PROTECT, related_name="assignments", verbose_name=_("department"))
    role = models.CharField(_("role"), max_length=10, choices=AssignmentRole.choices)
    status = models.CharField(_("status"), max_length=12, choices=PartStatus.choices, default=PartStatus.DISPATCHED)
    active = models.BooleanField(_("active"), default=True)
    dispatched_at = models.DateTimeField(_("dispatched"))
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    done_at = models.DateTimeField(_("done"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        ordering = ["-active", "role", "pk"]
        verbose_name = _("handling part")
        verbose_name_plural = _("handling parts")
        indexes = [models.Index(fields=["department", "active"])]

    def __str__(self) -> str:
        return f"{self.case.number} · {self.department} · {self.get_role_display()}"


class TimelineEntry(models.Model):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="timeline", verbose_name=_("case"))
    at = models.DateTimeField(_("time"))
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(_("by"), max_length=150)
    action = models.CharField(_("action"), max_length=40)
    from_status = models.CharField(_("from"), max_length=24, blank=True)
    to_status = models.CharField(_("to"), max_length=24, blank=True)
    note = models.TextField(_("reason / note"), blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = _("timeline entry")
        verbose_name_plural = _("timeline entries")


class ExtensionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    APPROVED = "approved", _("Approved")
    DENIED = "denied", _("Denied")
    WITHDRAWN = "withdrawn", _("Withdrawn")  # the department's part ended (returned, recalled) before a decision


class ExtensionRequest(models.Model):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="extensions", verbose_name=_("case"))
    department = models.ForeignKey("org.Department", on_delete=models.PROTECT, related_name="+", verbose_name=_("department"))
    hours = models.DecimalField(_("extra hours"), max_digits=7, decimal_places=2)
    reason = models.TextField(_("reason"))
    status = models.CharField(_("status"), max_length=10, choices=ExtensionStatus.choices, default=ExtensionStatus.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField(_("requested"))
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decision_note = models.TextField(_("decision note"), blank=True)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = _("extension request")
        verbose_name_plural = _("extension requests")


class WorkingDayOverride(models.Model):
    """A local decision that a date is (or is not) a working day."""

    date = models.DateField(_("date"), unique=True)
    is_working_day = models.BooleanField(_("working day"))
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        ordering = ["date"]
        verbose_name = _("working-day override")
        verbose_name_plural = _("working-day overrides")

    def __str__(self) -> str:
        return f"{self.date} {'✓' if self.is_working_day else '✗'} {self.note}"
