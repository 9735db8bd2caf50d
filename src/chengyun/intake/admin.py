"""Admin views of intake: read-only, because reports, duplicate decisions,
warnings and corrections change only through the pipeline's actions. The
reporter's contact is shown masked here; the full view is the audited
``reveal_contact`` action (console or API)."""

from django.contrib import admin, messages
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chengyun.audit.admin import ReadOnlyAdminMixin

from . import privacy
from .classifier import activate_version
from .models import (
    CategoryCorrection,
    ClassifierModel,
    ClusterWarning,
    DuplicateSuggestion,
    Notification,
    Report,
)


def _percent(value) -> str:
    return "—" if value is None else f"{value:.1%}"


@admin.register(Report)
class ReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["number", "title", "channel", "category", "confidence_display", "duplicate", "case",
                    "masked_contact", "received_at"]
    list_filter = ["channel", "duplicate", "category_given", "generated", "category"]
    search_fields = ["number", "title", "external_id", "case__number"]
    date_hierarchy = "received_at"
    list_select_related = ["case", "category", "contact"]
    exclude = ["contact"]
    readonly_fields = ["masked_contact"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description=_("confidence"), ordering="confidence")
    def confidence_display(self, obj: Report) -> str:
        return _percent(obj.confidence)

    @admin.display(description=_("contact (masked)"))
    def masked_contact(self, obj: Report) -> str:
        shown = privacy.masked(obj.contact)
        return " · ".join(shown[k] for k in ("name", "phone", "email", "device_id", "account_id") if shown.get(k)) or "—"


@admin.register(ClassifierModel)
class ClassifierModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["version", "active", "accuracy_display", "macro_f1_display", "n_train", "n_test",
                    "created_at", "trained_by", "data_note"]
    list_filter = ["active"]
    exclude = ["blob"]
    actions = ["activate"]

    @admin.display(description=_("accuracy"), ordering="accuracy")
    def accuracy_display(self, obj: ClassifierModel) -> str:
        return _percent(obj.accuracy)

    @admin.display(description=_("macro F1"), ordering="macro_f1")
    def macro_f1_display(self, obj: ClassifierModel) -> str:
        return _percent(obj.macro_f1)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("blob")

    def has_activate_permission(self, request) -> bool:
        return request.user.is_superuser

    @admin.action(description=_("Activate the selected version"), permissions=["activate"])
    def activate(self, request, queryset):
        chosen = list(queryset.values_list("version", flat=True)[:2])
        if len(chosen) != 1:
            self.message_user(request, gettext("Select exactly one version to activate."), messages.ERROR)
            return
        activate_version(chosen[0], by=request.user)
        self.message_user(request, gettext("Version %(version)s is now active.") % {"version": chosen[0]},
                          messages.SUCCESS)


@admin.register(DuplicateSuggestion)
class DuplicateSuggestionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "report", "case", "candidate", "score", "status", "created_at", "decided_by", "decided_at"]
    list_filter = ["status"]
    search_fields = ["report__number", "case__number", "candidate__number"]
    list_select_related = ["report", "case", "candidate", "decided_by"]


@admin.register(ClusterWarning)
class ClusterWarningAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "category", "report_count", "threshold", "radius_m", "window_minutes", "area",
                    "raised_at", "last_report_at", "case"]
    list_filter = ["category"]
    search_fields = ["case__number"]
    list_select_related = ["category", "area", "case"]


@admin.register(CategoryCorrection)
class CategoryCorrectionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["case", "from_category", "to_category", "by", "at", "classifier_version"]
    list_filter = ["to_category"]
    search_fields = ["case__number", "text"]
    list_select_related = ["case", "from_category", "to_category", "by"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Messages to reporters: whether each went out, and why not (no address is shown)."""

    list_display = ["report", "medium", "status", "attempts", "created_at", "sent_at", "next_try_at", "last_error"]
    list_filter = ["status", "medium"]
    search_fields = ["report__number"]
    date_hierarchy = "created_at"
    list_select_related = ["report"]
    exclude = ["entry"]
