from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AreasConfig(AppConfig):
    name = "chengyun.areas"
    label = "areas"
    verbose_name = _("Areas")

    def ready(self) -> None:
        from . import signals  # noqa: F401
