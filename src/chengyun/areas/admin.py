from django.contrib import admin

from .models import Area, AreaLevel


@admin.register(AreaLevel)
class AreaLevelAdmin(admin.ModelAdmin):
    list_display = ["depth", "key", "name", "name_en"]


@admin.register(Area)
class AreaAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "level", "parent", "generated"]
    list_filter = ["level", "generated"]
    search_fields = ["code", "name", "name_en"]
    raw_id_fields = ["parent"]
    readonly_fields = ["path", "point_lon", "point_lat"]
    fields = ["code", "name", "name_en", "level", "parent", "generated", "path", "point_lon", "point_lat"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        path = obj.compute_path()
        if path != obj.path:
            old = obj.path
            Area.objects.filter(pk=obj.pk).update(path=path)
            for child in Area.objects.filter(path__startswith=old).exclude(pk=obj.pk) if old else []:
                Area.objects.filter(pk=child.pk).update(path=path + child.path[len(old):])
