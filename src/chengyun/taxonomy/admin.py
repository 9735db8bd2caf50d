from django.contrib import admin

from .models import Category, RoutingRule


class RuleInline(admin.TabularInline):
    model = RoutingRule
    extra = 0
    raw_id_fields = ["area", "lead_department"]
    filter_horizontal = []


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "parent", "kind", "deadline_hours", "deadline_kind", "priority", "active"]
    list_filter = ["kind", "deadline_kind", "priority", "active"]
    search_fields = ["code", "name", "name_en"]
    inlines = [RuleInline]


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["pk", "category", "area", "level", "lead_department", "lead_kind", "order", "active"]
    list_filter = ["level", "lead_kind", "active"]
    raw_id_fields = ["category", "area", "lead_department"]
    filter_horizontal = ["assisting_kinds", "assisting_departments"]
