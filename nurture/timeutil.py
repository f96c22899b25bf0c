"""Durations, rates, working hours and send windows: small pure helpers shared by
config, campaigns, scheduler and follow-up. No I/O; the clock is always passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.calendars import BusinessCalendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``"3d"``, ``"36h"``, ``"1d 12h"``, ``"90s"`` or ``"0"`` into a timedelta.

    Raises ValueError with a hint on anything else.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration (try 3d, 36h, 1d 12h)")
    if isinstance(text, (int, float)):
        if text == 0:
            return timedelta(0)
        raise ValueError(f"{text!r} is not a duration: give a unit (try {text}d or {text}h)")
    s = str(text).strip()
    if s == "0":
        return timedelta(0)
    pos = 0
    total = 0.0
    compact = s.replace(" ", "")
    for m in _DURATION_PART.finditer(compact):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos = m.end()
    if not compact or pos != len(compact):
        raise ValueError(f'"{s}" is not a duration (try 3d, 36h, 1d 12h)')
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """The inverse of :func:`parse_duration`, for messages: ``timedelta(hours=36)`` → ``"1d 12h"``."""
    secs = int(td.total_seconds())
    if secs == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        n, secs = divmod(secs, _UNIT_SECONDS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit: ``count`` events per ``per_seconds``."""

    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h", 86400: "d"}.get(int(self.per_seconds), f"{self.per_seconds}s")
        return f"{self.count:g}/{unit}"


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$", re.I)
_RATE_UNIT = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
              "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(text: str | int | float) -> Rate:
    """Parse ``"20/s"``, ``"1000/h"`` or a bare number (per second)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool) and text > 0:
        return Rate(float(text), 1.0)
    m = _RATE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f'"{text}" is not a rate (try 20/s, 300/m or 1000/h)')
    return Rate(float(m.group(1)), float(_RATE_UNIT[m.group(2).lower()]))


@dataclass(frozen=True, slots=True)
class Hours:
    """Daily working hours, e.g. 09:00–18:00 (end exclusive)."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # overnight shift


_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(text: str) -> Hours:
    """Parse ``"09:00-18:00"``."""
    m = _HOURS.match(str(text))
    if not m:
        raise ValueError(f'"{text}" is not a range of hours (try "09:00-18:00")')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h2 == 24 and m2 == 0:
        h2, m2 = 23, 59
    if not (0 <= h1 < 24 and 0 <= m1 < 60 and 0 <= h2 < 24 and 0 <= m2 < 60):
        raise ValueError(f'"{text}" is not a range of hours (try "09:00-18:00")')
    if (h1, m1) == (h2, m2):
        raise ValueError(f'"{text}" is an empty range of hours')
    return Hours(time(h1, m1), time(h2, m2))


def parse_weekdays(values: list[str] | tuple[str, ...]) -> frozenset[int]:
    """``["mon", "tue"]`` → ``{0, 1}`` (Monday is 0, as in :meth:`datetime.weekday`)."""
    days = set()
    for v in values:
        key = str(v).strip().lower()[:3]
        if key not in WEEKDAYS:
            raise ValueError(f'"{v}" is not a weekday (use mon, tue, wed, thu, fri, sat, sun)')
        days.add(WEEKDAYS.index(key))
    return frozenset(days)


def zone(name: str) -> ZoneInfo:
    """A ZoneInfo for an IANA name, or ValueError naming it."""
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a name too long for a file
        raise ValueError(f'"{name}" is not a time zone (use an IANA name such as Asia/Tokyo)') from None


@dataclass(frozen=True, slots=True)
class Window:
    """Days of the week plus daily hours, in some local time zone. A ``calendar`` (public
    holidays and closures, :mod:`nurture.calendars`) closes whole local days as well."""

    days: frozenset[int] = frozenset(range(7))
    hours: Hours | None = None

    def _day_of(self, local: datetime) -> date:
        if self.hours is not None and self.hours.start > self.hours.end and local.time() < self.hours.end:
            return local.date() - timedelta(days=1)  # early morning belongs to yesterday's overnight shift
        return local.date()

    def is_open(self, moment: datetime, tz: ZoneInfo, calendar: BusinessCalendar | None = None) -> bool:
        local = moment.astimezone(tz)
        day = self._day_of(local)
        if day.weekday() not in self.days or (calendar and calendar.is_closed(day)):
            return False
        return self.hours is None or self.hours.contains(local.time())

    def next_open(self, moment: datetime, tz: ZoneInfo, calendar: BusinessCalendar | None = None) -> datetime:
        """The first instant at or after ``moment`` that lies inside the window (UTC), on a
        day the ``calendar`` leaves open.

        Works in local wall-clock time, so a 09:00 window stays 09:00 across DST changes.
        """
        if not self.days:
            raise ValueError("a send window needs at least one day")
        if self.is_open(moment, tz, calendar):
            return moment.astimezone(UTC)
        local = moment.astimezone(tz)
        start = self.hours.start if self.hours else time(0, 0)
        # A week covers every weekday; closures and holidays can push further (two years at most).
        for offset in range(0, 800 if calendar else 8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days or (calendar and calendar.is_closed(day)):
                continue
            candidate = datetime.combine(day, start, tzinfo=tz)
            # Resolve nonexistent/ambiguous local times through a UTC round trip.
            candidate = candidate.astimezone(UTC).astimezone(tz)
            if candidate >= local:
                return candidate.astimezone(UTC)
        raise ValueError("send window never opens")

    def day_end(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """When the open stretch that contains ``moment`` closes (UTC); ``moment`` must be open."""
        local = moment.astimezone(tz)
        day = self._day_of(local)
        if self.hours is None:
            end = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=tz)
        else:
            end_day = day + timedelta(days=1) if self.hours.start > self.hours.end else day
            end = datetime.combine(end_day, self.hours.end, tzinfo=tz)
        return end.astimezone(UTC)

    def add_open(self, moment: datetime, duration: timedelta, tz: ZoneInfo,
                 calendar: BusinessCalendar | None = None) -> datetime:
        """``moment`` plus ``duration`` of open time (UTC): an SLA clock that runs only in
        working hours on working days. Whole days (``2d``) count working days: the same
        local time of day that many working days later."""
        whole, rest = divmod(duration, timedelta(days=1))
        at = self.next_open(moment, tz, calendar)
        if whole:
            local = at.astimezone(tz)
            day = self._day_of(local)
            for _ in range(whole):
                day += timedelta(days=1)
                for _guard in range(800):
                    if day.weekday() in self.days and not (calendar and calendar.is_closed(day)):
                        break
                    day += timedelta(days=1)
            shifted = datetime.combine(day + (local.date() - self._day_of(local)), local.time(), tzinfo=tz)
            at = self.next_open(shifted.astimezone(UTC), tz, calendar)
        left = rest
        for _ in range(2000):
            if left <= timedelta(0):
                return at
            end = self.day_end(at, tz)
            if at + left <= end:
                return at + left
            left -= end - at
            at = self.next_open(end, tz, calendar)
        raise ValueError("working time never adds up")  # pragma: no cover - bounded by the guard


def utcnow() -> datetime:
    """The real clock. Only entry points (CLI, servers) call it; everything else takes ``now``."""
    return datetime.now(UTC)


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
