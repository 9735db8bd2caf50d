"""Every change made in the Django admin is written to the audit chain.

Single changes arrive as a saved ``LogEntry`` (post_save). Admin actions on
several objects (for example "delete selected") are logged by Django with one
``bulk_create``, which sends no signal, so ``log_actions`` is wrapped too.
"""

from django.contrib.admin.models import LogEntry, LogEntryManager
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import record

_ACTIONS = {1: "admin.add", 2: "admin.change", 3: "admin.delete"}


def _audit(entry: LogEntry) -> None:
    model = entry.content_type.model_class() if entry.content_type_id else None
    record(
        _ACTIONS.get(entry.action_flag, "admin.action"),
        actor=entry.user,
        object_type=model._meta.label_lower if model else "",
        object_id=entry.object_id or "",
        data={"repr": entry.object_repr, "message": entry.get_change_message()},
        at=entry.action_time,
    )


@receiver(post_save, sender=LogEntry, dispatch_uid="audit_admin_log_entry")
def audit_admin_change(sender, instance: LogEntry, created: bool, **kwargs):
    if created and not kwargs.get("raw"):
        _audit(instance)


_original_log_actions = LogEntryManager.log_actions


def _log_actions(self, *args, **kwargs):
    result = _original_log_actions(self, *args, **kwargs)
    if isinstance(result, list) and len(result) > 1:  # the bulk path: no post_save was sent
        for entry in result:
            _audit(entry)
    return result


if not getattr(LogEntryManager.log_actions, "_chengyun_audited", False):
    _log_actions._chengyun_audited = True
    LogEntryManager.log_actions = _log_actions
