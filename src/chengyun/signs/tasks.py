"""Vital-signs background work (django-tasks, database backend; run by
``chengyun worker``). Each task does its job, then queues its own next run,
like the deadline sweep:

* every minute (``SIGNS_SWEEP_SECONDS``): compute the computed indicators,
  then look for silent sensors (in that order, so a computed series is not
  called silent just before its value is written);
* daily at ``SIGNS_BASELINE_AT`` city time ("03:15"): learn the anomaly
  baselines;
* daily at ``SIGNS_PRUNE_AT`` ("03:45"): drop readings and rollups past their
  keeping periods.

A daily job that has not run for a day (a new install, a worker that was
down) runs as soon as the worker starts, then at its time of day.
``chengyun signs-sweep`` runs the same jobs once, now.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django_tasks import task

log = logging.getLogger(__name__)


def _setting(name: str, default):
    return getattr(settings, name, default)


def minute_jobs() -> dict:
    from .compute import compute_indicators
    from .rules import sweep_missing

    computed = compute_indicators(settle_s=_setting("SIGNS_COMPUTE_SETTLE_SECONDS", 20))
    missing = sweep_missing()
    return {"computed": computed, "missing": missing}


@task()
def signs_minute_task(reschedule: bool = True) -> dict:
    """Computed indicators and silent sensors; then queue the next run."""
    counts = minute_jobs()
    log.info("signs minute jobs: %s", counts)
    if reschedule:
        _schedule(signs_minute_task, delay=_setting("SIGNS_SWEEP_SECONDS", 60))
    return counts


@task()
def signs_baselines_task(reschedule: bool = True) -> dict:
    """Learn the anomaly baselines; then queue tomorrow's run."""
    from .rules import compute_baselines

    counts = {"indicators": compute_baselines()}
    log.info("signs baselines: %s", counts)
    if reschedule:
        _schedule(signs_baselines_task, at=next_daily(_setting("SIGNS_BASELINE_AT", "03:15")))
    return counts


@task()
def signs_prune_task(reschedule: bool = True) -> dict:
    """Drop old readings and rollups; then queue tomorrow's run."""
    from .rules import prune

    counts = prune()
    log.info("signs prune: %s", counts)
    if reschedule:
        _schedule(signs_prune_task, at=next_daily(_setting("SIGNS_PRUNE_AT", "03:45")))
    return counts


def next_daily(hhmm: str, after: datetime | None = None) -> datetime:
    """The next time of day ``hhmm`` in city time after ``after`` (default now)."""
    tz = ZoneInfo(settings.TIME_ZONE)
    after = (after or timezone.now()).astimezone(tz)
    hour, minute = (int(x) for x in hhmm.split(":"))
    at = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > after else at + timedelta(days=1)


def _waiting(t) -> bool:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(task_path=t.module_path, status="READY").exists()


def _schedule(t, *, delay: int = 0, at: datetime | None = None) -> bool:
    """Queue ``t`` unless a run is already waiting; True if queued."""
    if _waiting(t):
        return False
    t.using(run_after=at or timezone.now() + timedelta(seconds=delay)).enqueue()
    return True


def _ran_lately(t, within: timedelta) -> bool:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(task_path=t.module_path, status="SUCCESSFUL",
                                       finished_at__gte=timezone.now() - within).exists()


def schedule_signs() -> list[str]:
    """Queue each vital-signs job unless one is waiting (called by ``chengyun
    worker`` at start); returns the names of the jobs queued."""
    queued = []
    if _schedule(signs_minute_task):
        queued.append("minute")
    day = timedelta(days=1)
    for name, t, setting, default in (("baselines", signs_baselines_task, "SIGNS_BASELINE_AT", "03:15"),
                                      ("prune", signs_prune_task, "SIGNS_PRUNE_AT", "03:45")):
        at = next_daily(_setting(setting, default)) if _ran_lately(t, day) else timezone.now()
        if _schedule(t, at=at):
            queued.append(name)
    return queued
