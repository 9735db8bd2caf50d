from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class Open311Config(AppConfig):
    name = "chengyun.open311"
    verbose_name = _("Open311 GeoReport v2")

    def ready(self) -> None:
        from . import signals  # noqa: F401 - registers the receivers
