from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from .api import api

admin.site.site_header = "Chengyun 城运"
admin.site.site_title = "Chengyun 城运"

handler404 = "chengyun.portal.views.page_not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("open311/v2/", include("chengyun.open311.urls")),
    path("console/signs/", include("chengyun.signs.urls")),
    path("", include("chengyun.portal.urls")),
    path("", include("chengyun.console.urls")),
]
