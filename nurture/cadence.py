"""Call attempts: when to try a contact again after a voicemail or no answer.

A follow-up rule's cadence (``attempts: 3``, ``retry: [2h, next_day 10:00]``) says how many
times a rep calls before the task ends ``unreachable`` and how long to wait between tries. A
retry entry is a duration (``2h``, ``30m``, ``1d``) or ``next_day HH:MM`` (the contact's next
weekday at that local time). Either way the time is then moved into the rep's working hours.
Pure: the clock, the rep and the contact's time zone come in as arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from nurture.models import Rep
from nurture.timeutil import Window, parse_duration, zone

#: The cadence of a rule that sets none: three calls, two hours apart, then the next morning.
DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY = ("2h", "next_day 10:00")
#: Outcomes that count as an attempt and keep the task open while attempts are left.
ATTEMPT_OUTCOMES = frozenset({"voicemail", "no_answer"})
_NEXT_DAY = re.compile(r"^next_day\s+(\d{1,2}):(\d{2})$")
_WORKDAYS = frozenset(range(5))


@dataclass(frozen=True, slots=True)
class Cadence:
    """How a task is retried: ``attempts`` calls in all, ``retry[i]`` after the (i+1)-th
    (the last entry repeats), and an optional fallback after the last one
    (``{"step": id}`` or ``{"enroll": campaign id}``)."""

    attempts: int = DEFAULT_ATTEMPTS
    retry: tuple[str, ...] = DEFAULT_RETRY
    unreachable: Mapping[str, str] | None = None
    #: The contact's time zone when the task was raised (``next_day`` times are theirs).
    timezone: str = "UTC"

    def as_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "retry": list(self.retry),
                "unreachable": dict(self.unreachable) if self.unreachable else None,
                "timezone": self.timezone}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cadence:
        if not data:
            return cls()
        return cls(attempts=int(data.get("attempts") or DEFAULT_ATTEMPTS),
                   retry=tuple(data.get("retry") or DEFAULT_RETRY),
                   unreachable=data.get("unreachable") or None,
                   timezone=str(data.get("timezone") or "UTC"))


def check_retry(entry: str) -> None:
    """Raise ValueError unless ``entry`` is a duration or ``next_day HH:MM``."""
    m = _NEXT_DAY.match(str(entry).strip())
    if m:
        if not (0 <= int(m.group(1)) < 24 and 0 <= int(m.group(2)) < 60):
            raise ValueError(f'"{entry}" is not a time of day (try next_day 10:00)')
        return
    try:
        if parse_duration(entry) <= timedelta(0):
            raise ValueError
    except ValueError:
        raise ValueError(f'"{entry}" is not a retry delay (use a duration such as 2h, '
                         "or next_day 10:00)") from None


def retry_entry(retry: Sequence[str], attempt: int) -> str:
    """The wait after attempt number ``attempt`` (1-based); the last entry repeats."""
    seq = list(retry) or list(DEFAULT_RETRY)
    return seq[min(attempt, len(seq)) - 1]


def next_attempt_at(entry: str, *, now: datetime, contact_tz: str, rep: Rep | None) -> datetime:
    """When to call again: ``entry`` applied to ``now``, then inside the rep's working hours."""
    text = str(entry).strip()
    m = _NEXT_DAY.match(text)
    if m:
        tz = _tz(contact_tz)
        local = now.astimezone(tz)
        day = local.date() + timedelta(days=1)
        while day.weekday() not in _WORKDAYS:
            day += timedelta(days=1)
        at = datetime.combine(day, time(int(m.group(1)), int(m.group(2))), tzinfo=tz)
        candidate = at.astimezone(now.tzinfo)
    else:
        candidate = now + parse_duration(text)
    if rep is None:
        return candidate
    return Window(days=rep.days or _WORKDAYS, hours=rep.hours).next_open(candidate, _tz(rep.timezone), rep.calendar)


def _tz(name: str) -> Any:
    try:
        return zone(name)
    except ValueError:
        return zone("UTC")


#: Snooze buttons on the task page: an hour, tomorrow 09:00 their time, next Monday 09:00 theirs.
SNOOZE_PRESETS = ("1h", "tomorrow", "next_week")


def snooze_preset(name: str, *, now: datetime, contact_tz: str) -> datetime:
    """The time a snooze preset stands for (ValueError for an unknown one)."""
    if name == "1h":
        return now + timedelta(hours=1)
    tz = _tz(contact_tz)
    local = now.astimezone(tz)
    if name == "tomorrow":
        day = local.date() + timedelta(days=1)
    elif name == "next_week":
        day = local.date() + timedelta(days=7 - local.weekday())
    else:
        raise ValueError(f'"{name}" is not a snooze preset (use {", ".join(SNOOZE_PRESETS)})')
    return datetime.combine(day, time(9, 0), tzinfo=tz).astimezone(now.tzinfo)
