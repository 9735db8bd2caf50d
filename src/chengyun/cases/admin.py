from django.contrib import admin

from chengyun.audit.admin import ReadOnlyAdminMixin

from .models import Case, CaseAssignment, ExtensionRequest, TimelineEntry, WorkingDayOverride


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False


class PartInline(ReadOnlyInline):
    model = CaseAssignment
    fields = ["department", "role", "status", "active", "dispatched_at", "started_at", "done_at"]


class TimelineInline(ReadOnlyInline):
    model = TimelineEntry
    fields = ["at", "actor_name", "action", "from_status", "to_status", "note"]


@admin.register(Case)
class CaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: cases change only through their actions (console or API)."""

    list_display = ["number", "title", "status", "category", "area", "deadline_state", "created_at", "generated"]
    list_filter = ["status", "deadline_state", "channel", "generated"]
    search_fields = ["number", "title", "address"]
    inlines = [PartInline, TimelineInline]


@admin.register(ExtensionRequest)
class ExtensionRequestAdmin(admin.ModelAdmin):
    list_display = ["case", "department", "hours", "status", "requested_at", "decided_at"]
    list_filter = ["status"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WorkingDayOverride)
class WorkingDayOverrideAdmin(admin.ModelAdmin):
    list_display = ["date", "is_working_day", "note"]
