from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntakeConfig(AppConfig):
    name = "chengyun.intake"
    verbose_name = _("Intake")

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from chengyun.cases.models import TimelineEntry

        from .notify import on_timeline_entry

        post_save.connect(on_timeline_entry, sender=TimelineEntry, dispatch_uid="chengyun.intake.notify")
