from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import ApiToken, Department, DepartmentKind, RoleAssignment, User


class RoleInline(admin.TabularInline):
    model = RoleAssignment
    extra = 1
    raw_id_fields = ["area", "department"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [RoleInline]
    list_display = ["username", "display_name", "email", "is_staff", "is_active"]
    fieldsets = BaseUserAdmin.fieldsets + ((_("Chengyun"), {"fields": ["display_name", "phone"]}),)


@admin.register(DepartmentKind)
class DepartmentKindAdmin(admin.ModelAdmin):
    list_display = ["kind", "name", "name_en"]


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "kind", "area", "active"]
    list_filter = ["kind", "active", "area__level"]
    search_fields = ["code", "name", "name_en"]
    raw_id_fields = ["area"]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    list_display = ["user", "role", "area", "department"]
    list_filter = ["role"]
    raw_id_fields = ["user", "area", "department"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at"]
    fields = ["name", "user", "prefix", "created_at", "revoked_at"]

    def has_add_permission(self, request):
        return False  # tokens are created with `chengyun create-token`, which shows the key once
