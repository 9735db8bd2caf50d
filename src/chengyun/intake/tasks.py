"""Background work of intake (django-tasks; run by ``chengyun worker``):
sending the messages reporters asked for (:mod:`.notify`)."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.utils import timezone
from django_tasks import task

log = logging.getLogger(__name__)


RUN_SECONDS = 60  # then the run makes way for the worker's other jobs (sweeps, vital signs) and queues itself again


@task()
def send_notifications_task() -> dict:
    """Send what is due, for at most :data:`RUN_SECONDS`; queue the next run
    for what is left or the first retry still waiting."""
    from .notify import next_due, send_due

    totals: dict = {}
    started = time.monotonic()
    while time.monotonic() - started < RUN_SECONDS:
        counts = send_due()
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        if not (counts["sent"] or counts["stopped"] or counts["failed"]):
            break  # nothing more, or only failures: the retries are scheduled
    if totals.get("sent") or totals.get("failed") or totals.get("retry"):
        log.info("notifications: %s", totals)
    later = next_due()
    if later is not None:
        schedule_notifications(at=later)
    return totals


def schedule_notifications(at: datetime | None = None) -> bool:
    """Queue a sending run at ``at`` (now by default), unless one is already
    waiting that runs no later; True if queued."""
    from django_tasks_db.models import DBTaskResult

    at = max(at or timezone.now(), timezone.now())
    waiting = DBTaskResult.objects.filter(task_path=send_notifications_task.module_path, status="READY")
    if waiting.filter(run_after__lte=at).exists() or waiting.filter(run_after__isnull=True).exists():
        return False
    send_notifications_task.using(run_after=at).enqueue()
    return True
