"""A rep's day plan: today's calls within their capacity, the overflow queued by priority.

Capacity counts calls done today plus open calls due today (:func:`nurture.routing.day_loads`
counts the same way when routing). :func:`day_plan` takes the rep's open tasks and splits
those due by the end of today (overdue ones included) into *today* (the most urgent first,
as many as ``capacity`` minus calls done) and *queued* for the rep's next working day (the
rest, still by priority), with the calls due on later days counted apart. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from nurture.models import PRIORITIES, Rep, Task
from nurture.routing import local_day, next_working_day


@dataclass(frozen=True, slots=True)
class DayPlan:
    """``day``: the rep's plan day (today while their shift is on or to come, else their next
    working day); ``today`` fits ``capacity`` with ``done``; ``queued`` goes to ``next_day``."""

    rep_id: str
    day: date
    next_day: date
    capacity: int
    done: int
    today: tuple[Task, ...]
    queued: tuple[Task, ...]
    later: int
    #: ``day`` is the rep's today (not a later working day).
    is_today: bool = True

    @property
    def planned(self) -> int:
        """Calls done plus calls planned for the day (at most ``capacity``)."""
        return self.done + len(self.today)

    @property
    def left(self) -> int:
        return max(0, self.capacity - self.planned)


def _due(task: Task) -> datetime:
    return max(task.due_at, task.snooze_until) if task.snooze_until else task.due_at


def day_plan(rep: Rep, tasks: Sequence[Task], *, done_today: int, now: datetime) -> DayPlan:
    """The plan for ``rep`` from their open ``tasks`` and the calls they finished today."""
    day = next_working_day(rep, now)
    after = rep.calendar.next_working_day(day, rep.days or frozenset(range(5)))
    done = done_today if day == local_day(rep, now) else 0
    mine = [t for t in tasks if t.status == "open"]
    due = sorted((t for t in mine if local_day(rep, _due(t)) <= day),
                 key=lambda t: (PRIORITIES.index(t.priority), _due(t), t.id))
    room = max(0, rep.capacity - done)
    return DayPlan(rep_id=rep.id, day=day, next_day=after, capacity=rep.capacity, done=done,
                   today=tuple(due[:room]), queued=tuple(due[room:]), later=len(mine) - len(due),
                   is_today=day == local_day(rep, now))
