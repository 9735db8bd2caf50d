"""The one place services ask for the time.

Services call :func:`now` instead of ``timezone.now()`` so that history can be
replayed (demo generation, migration of old cases) with the original times:
``with simulated(dt): ...`` makes every action inside happen at ``dt``.
"""

from __future__ import annotations

import contextlib
import contextvars
from datetime import datetime

from django.utils import timezone

_override: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("chengyun_now", default=None)


def now() -> datetime:
    return _override.get() or timezone.now()


@contextlib.contextmanager
def simulated(at: datetime):
    if timezone.is_naive(at):
        raise ValueError("simulated time must be timezone-aware")
    token = _override.set(at)
    try:
        yield
    finally:
        _override.reset(token)
