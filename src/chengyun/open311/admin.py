from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chengyun.audit.admin import ReadOnlyAdminMixin

from .models import ApiKey, PartnerUpdate, ServiceAttribute
from .services import create_api_key, revoke_api_key


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made here (the key is shown once, then only its hash is kept)
    and revoked with the list action; they are never edited or deleted."""

    list_display = ["name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "contact_note"]
    actions = ["revoke"]
    readonly_fields = ["prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "contact_note"]
        return ["name", "prefix", "contact_note", *self.readonly_fields[1:]]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        key, raw = create_api_key(obj.name, by=request.user, contact_note=obj.contact_note)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at, obj.created_by = (
            key.pk, key.prefix, key.key_hash, key.created_at, key.created_by)
        obj._state.adding = False
        obj._state.db = key._state.db
        messages.warning(request, _("The API key for %(name)s is %(key)s. Copy it now: it is not stored and will "
                                    "not be shown again.") % {"name": key.name, "key": raw})

    @admin.action(description=gettext_lazy("Revoke the selected keys"))
    def revoke(self, request, queryset):
        n = 0
        for key in queryset.filter(revoked_at__isnull=True):
            revoke_api_key(key, by=request.user)
            n += 1
        messages.success(request, _("%(n)s key(s) revoked.") % {"n": n})

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        if not request.user.has_perm("open311.change_apikey"):
            actions.pop("revoke", None)
        return actions


@admin.register(ServiceAttribute)
class ServiceAttributeAdmin(admin.ModelAdmin):
    """The extra questions of a service (its Open311 service definition)."""

    list_display = ["category", "order", "code", "datatype", "required", "variable", "description"]
    list_filter = ["datatype", "required", "category"]
    search_fields = ["code", "description", "description_en", "category__code", "category__name"]
    autocomplete_fields = ["category"]
    fields = ["category", "code", "order", "datatype", "variable", "required", "description", "description_en",
              "datatype_description", "datatype_description_en", "values"]


@admin.register(PartnerUpdate)
class PartnerUpdateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["received_at", "api_key", "partner_update_id", "report", "status", "updated_at"]
    list_filter = ["status", "api_key"]
    search_fields = ["partner_update_id", "report__number"]
