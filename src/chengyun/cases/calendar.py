"""Working-hours calendar: weekends, public holidays and adjusted working days (调休).

Holidays and the weekend days that are worked instead come from the
maintained ``holidays`` library (country from ``settings.HOLIDAY_COUNTRY``);
local decisions are admin-editable :class:`~chengyun.cases.models.WorkingDayOverride`
rows, which win.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from django.conf import settings

MAX_DAYS = 3660  # never search more than ten years ahead


def _parse(hhmm: str) -> time:
    h, m = hhmm.split(":")
    return time(int(h), int(m))


@lru_cache(maxsize=8)
def _holiday_calendar(country: str, subdiv: str | None):
    return holidays.country_holidays(country, subdiv=subdiv)


class WorkingCalendar:
    def __init__(
        self,
        *,
        country: str | None = None,
        subdiv: str | None = None,
        tz: str | None = None,
        hours: list[tuple[str, str]] | None = None,
        overrides: dict[date, bool] | None = None,
    ) -> None:
        self.tz = ZoneInfo(tz or settings.TIME_ZONE)
        self.windows = [(_parse(a), _parse(b)) for a, b in (hours or settings.WORKING_HOURS)]
        self.holidays = _holiday_calendar(country or settings.HOLIDAY_COUNTRY, subdiv or settings.HOLIDAY_SUBDIVISION)
        self.overrides = overrides if overrides is not None else {}

    @classmethod
    def from_db(cls) -> WorkingCalendar:
        from .models import WorkingDayOverride

        return cls(overrides=dict(WorkingDayOverride.objects.values_list("date", "is_working_day")))

    def is_working_day(self, d: date) -> bool:
        if d in self.overrides:
            return self.overrides[d]
        return self.holidays.is_working_day(d)

    def _windows_on(self, d: date):
        for start, end in self.windows:
            yield (datetime.combine(d, start, self.tz), datetime.combine(d, end, self.tz))

    def add_working_hours(self, start: datetime, hours: float | Decimal) -> datetime:
        """The moment ``hours`` working hours after ``start``."""
        remaining = timedelta(hours=float(hours))
        local = start.astimezone(self.tz)
        day = local.date()
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                for w_start, w_end in self._windows_on(day):
                    begin = max(w_start, local)
                    if begin >= w_end:
                        continue
                    available = w_end - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("deadline is more than ten years away")

    def working_hours_between(self, a: datetime, b: datetime) -> float:
        """Working hours from ``a`` to ``b`` (negative if ``b`` is earlier)."""
        if b < a:
            return -self.working_hours_between(b, a)
        a, b = a.astimezone(self.tz), b.astimezone(self.tz)
        total = timedelta()
        day = a.date()
        while day <= b.date():
            if self.is_working_day(day):
                for w_start, w_end in self._windows_on(day):
                    lo, hi = max(w_start, a), min(w_end, b)
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds() / 3600

    def add_hours(self, start: datetime, hours, kind: str) -> datetime:
        if kind == "calendar":
            return start + timedelta(hours=float(hours))
        return self.add_working_hours(start, hours)
