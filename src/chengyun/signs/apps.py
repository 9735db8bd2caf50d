from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SignsConfig(AppConfig):
    name = "chengyun.signs"
    verbose_name = _("City vital signs")
