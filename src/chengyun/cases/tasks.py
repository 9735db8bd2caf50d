"""Background work (django-tasks, database backend; run by `chengyun worker`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

log = logging.getLogger(__name__)


@task()
def sweep_deadlines_task(reschedule: bool = True) -> dict:
    """Flag near-due/overdue cases and escalate them; then queue the next sweep."""
    from .services import sweep_deadlines

    counts = sweep_deadlines()
    log.info("deadline sweep: %s", counts)
    if reschedule:
        schedule_sweep(delay=settings.DEADLINE_SWEEP_SECONDS)
    return counts


def schedule_sweep(delay: int = 0) -> None:
    """Queue a sweep unless one is already waiting."""
    from django_tasks_db.models import DBTaskResult

    if DBTaskResult.objects.filter(task_path=sweep_deadlines_task.module_path, status="READY").exists():
        return
    sweep_deadlines_task.using(run_after=timezone.now() + timedelta(seconds=delay)).enqueue()
