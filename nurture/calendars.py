"""Business calendars: public holidays and company closures, and what counts as a working day.

A :class:`BusinessCalendar` is a country's public holidays (the ``holidays`` package; ``JP``,
``US``, ``DE`` …, None for none) plus company closures (inclusive date ranges such as
``2026-12-29..2027-01-03``). Send windows (:meth:`nurture.timeutil.Window.next_open`), the
reps' working days (:mod:`nurture.routing`) and the scheduler ask it whether a local date is
closed. The country defaults from an IANA time zone (``Asia/Tokyo`` → ``JP``) through the
zone table tzdata ships. Pure apart from reading that table once; no config is read here.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from holidays import HolidayBase

__all__ = ["NO_CALENDAR", "BusinessCalendar", "Closure", "calendar_for", "check_country", "country_of_zone",
           "parse_closure", "parse_closures"]

_RANGE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.\s*(\d{4}-\d{2}-\d{2}))?\s*$")
#: ``calendar: none`` switches public holidays off (closures still apply).
NONE_WORDS = frozenset({"none", "off", "no"})


@dataclass(frozen=True, slots=True)
class Closure:
    """A company closure: every day from ``start`` to ``end``, both included."""

    start: date
    end: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}" if self.end != self.start \
            else self.start.isoformat()


def parse_closure(text: object) -> Closure:
    """``"2026-12-29..2027-01-03"`` or one day ``"2027-05-01"`` (a YAML date too)."""
    if isinstance(text, date):
        return Closure(text, text)
    m = _RANGE.match(str(text))
    if not m:
        raise ValueError(f'"{text}" is not a closure (try 2026-12-29..2027-01-03 or 2027-05-01)')
    try:
        start = date.fromisoformat(m.group(1))
        end = date.fromisoformat(m.group(2)) if m.group(2) else start
    except ValueError:
        raise ValueError(f'"{text}" is not a closure: no such date') from None
    if end < start:
        raise ValueError(f'"{text}" ends before it starts')
    return Closure(start, end)


def parse_closures(items: Iterable[object]) -> tuple[Closure, ...]:
    """Each item through :func:`parse_closure`."""
    return tuple(parse_closure(i) for i in items)


def check_country(code: str) -> str:
    """The upper-cased code when the ``holidays`` package knows the country, else ValueError."""
    key = str(code).strip().upper()
    if not key.isalpha() or _holidays(key, 2026) is None:
        raise ValueError(f'"{code}" is not a country with a holiday calendar '
                         "(use an ISO 3166 code such as JP, US, DE, or none)")
    return key


@functools.lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    text = importlib.resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[2]] = parts[0]
    return out


def country_of_zone(name: str | None) -> str | None:
    """The country an IANA time zone belongs to (``Asia/Tokyo`` → ``JP``), or None (``UTC``,
    ``Etc/GMT+9``, an unknown name)."""
    if not name:
        return None
    return _zone_countries().get(str(name))


@functools.lru_cache(maxsize=512)
def _holidays(country: str, year: int) -> HolidayBase | None:
    """The country's holidays of ``year``; None for a country the package does not know."""
    import holidays  # the package is large: loaded when a calendar is first asked

    try:
        return holidays.country_holidays(country, years=year)
    except (NotImplementedError, KeyError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Public holidays of ``country`` (None: none) and company ``closures``."""

    country: str | None = None
    closures: tuple[Closure, ...] = ()

    def closed(self, day: date) -> str | None:
        """Why ``day`` (a local date) is not a working day, or None: the holiday's name
        (``"Coming of Age Day (JP)"``) or ``"closure 2026-12-29..2027-01-03"``. Weekdays are
        the window's business, not the calendar's."""
        for c in self.closures:
            if day in c:
                return f"closure {c}"
        if self.country:
            days = _holidays(self.country, day.year)
            name = days.get(day) if days is not None else None
            if name:
                return f"{name} ({self.country})"
        return None

    def is_closed(self, day: date) -> bool:
        return self.closed(day) is not None

    def next_working_day(self, day: date, weekdays: frozenset[int], *, after: bool = True,
                         limit: int = 800) -> date:
        """The first day (after ``day`` when ``after``, else from ``day``) that is one of
        ``weekdays`` (Monday 0) and not closed."""
        d = day + timedelta(days=1) if after else day
        for _ in range(limit):
            if d.weekday() in weekdays and not self.is_closed(d):
                return d
            d += timedelta(days=1)
        raise ValueError("no working day in the next two years (check the closures)")

    def __bool__(self) -> bool:
        return bool(self.country or self.closures)


NO_CALENDAR = BusinessCalendar()


def calendar_for(country: str | None, *, zone_name: str | None = None,
                 closures: tuple[Closure, ...] = ()) -> BusinessCalendar:
    """The calendar of ``country`` (``"none"`` for none; None: the country of ``zone_name``)."""
    if country is not None and str(country).strip().lower() in NONE_WORDS:
        return BusinessCalendar(None, closures)
    code = str(country).strip().upper() if country else country_of_zone(zone_name)
    return BusinessCalendar(code or None, closures)
