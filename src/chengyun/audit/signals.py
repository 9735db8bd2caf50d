"""Every change made in the Django admin is written to the audit chain."""

from django.contrib.admin.models import LogEntry
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import record

_ACTIONS = {1: "admin.add", 2: "admin.change", 3: "admin.delete"}


@receiver(post_save, sender=LogEntry, dispatch_uid="audit_admin_log_entry")
def audit_admin_change(sender, instance: LogEntry, created: bool, **kwargs):
    if not created:
        return
    record(
        _ACTIONS.get(instance.action_flag, "admin.action"),
        actor=instance.user,
        object_type=instance.content_type.model_class()._meta.label_lower if instance.content_type else "",
        object_id=instance.object_id or "",
        data={"repr": instance.object_repr, "message": instance.get_change_message()},
        at=instance.action_time,
    )
