"""Which rep gets a task, and when it is due. Pure: the facts and the clock come in as arguments.

Order: the contact's owner (when a known rep) → territory (``settings.territories`` maps a
territory or country to a rep id; a rep's own ``territory`` list also claims it) → round robin
among reps on shift now with capacity left today. A ``call_now`` task that finds nobody on shift
goes to the rep whose shift starts soonest and is due from that shift's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from nurture.countries import country_code
from nurture.models import Contact, Rep, TaskLoad
from nurture.timeutil import Window, zone


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision: ``rep_id`` (None when no rep is configured), due time, and why."""

    rep_id: str | None
    due_at: datetime
    reason: str
    #: When the rule's SLA (counted in working time) falls due, before a full day moved ``due_at``.
    sla_at: datetime | None = None


def window(rep: Rep) -> Window:
    """The rep's working hours and days (their calendar closes holidays and closures on top)."""
    return Window(days=rep.days, hours=rep.hours)


def on_shift(rep: Rep, now: datetime) -> bool:
    """True when ``now`` lies in the rep's working hours and days, in the rep's time zone,
    and their calendar does not close the day (a public holiday, a company closure)."""
    return window(rep).is_open(now, zone(rep.timezone), rep.calendar)


def shift_start(rep: Rep, now: datetime) -> datetime:
    """``now`` if the rep is on shift, else the start of their next shift (UTC)."""
    if not rep.days:
        return now + timedelta(days=3650)
    return window(rep).next_open(now, zone(rep.timezone), rep.calendar)


def working_due(rep: Rep, now: datetime, due: timedelta) -> datetime:
    """``now + due`` counted in the rep's working time (the SLA clock stops off shift, on
    weekends and holidays; whole days count working days)."""
    if not rep.days:
        return now + timedelta(days=3650)
    return window(rep).add_open(now, due, zone(rep.timezone), rep.calendar)


def local_day_start(rep: Rep, now: datetime) -> datetime:
    """Midnight of the rep's current local day, in UTC: capacity counts from here."""
    tz = zone(rep.timezone)
    local = now.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    return midnight.astimezone(UTC)


def local_day(rep: Rep, moment: datetime) -> date:
    """The rep's local date of ``moment``."""
    return moment.astimezone(zone(rep.timezone)).date()


# -- the day plan: calls done + open calls due on a day stay within the rep's capacity ----------

DayLoads = Mapping[str, Mapping[date, int]]


def day_loads(reps: Sequence[Rep], rows: Sequence[TaskLoad], *, now: datetime) -> dict[str, dict[date, int]]:
    """Per rep and local date: calls done that day plus open calls due that day (open ones
    already overdue count today, the day they will be worked)."""
    by_id = {r.id: r for r in reps}
    out: dict[str, dict[date, int]] = {r.id: {} for r in reps}
    today = {r.id: local_day(r, now) for r in reps}
    for row in rows:
        rep = by_id.get(row.rep_id)
        if rep is None:
            continue
        day = local_day(rep, row.done_at) if row.done_at else max(local_day(rep, row.due_at), today[rep.id])
        out[rep.id][day] = out[rep.id].get(day, 0) + 1
    return out


def loads_from_counts(reps: Sequence[Rep], counts: Mapping[str, tuple[Mapping[int, int], Mapping[int, int]]], *,
                      now: datetime) -> dict[str, dict[date, int]]:
    """:func:`day_loads` from per-rep (open, done) counts by day number since each rep's local
    midnight (``Store.task_day_counts``): day 0 is the rep's today."""
    out: dict[str, dict[date, int]] = {}
    for rep in reps:
        today = local_day(rep, now)
        days: dict[date, int] = {}
        for part in counts.get(rep.id, ({}, {})):
            for n, k in part.items():
                day = today + timedelta(days=max(0, n))
                days[day] = days.get(day, 0) + k
        out[rep.id] = days
    return out


def room(rep: Rep, day: date, loads: DayLoads) -> int:
    """Calls the rep can still take on local ``day``."""
    return max(0, rep.capacity - loads.get(rep.id, {}).get(day, 0))


def first_slot(rep: Rep, start: datetime, loads: DayLoads, *, horizon: int = 60) -> datetime:
    """The first working instant at or after ``start`` on a day the rep still has room."""
    t = shift_start(rep, start)
    tz = zone(rep.timezone)
    for _ in range(horizon):
        day = local_day(rep, t)
        if room(rep, day, loads) > 0:
            return t
        midnight = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=tz).astimezone(UTC)
        t = shift_start(rep, midnight)
    return t


def next_working_day(rep: Rep, now: datetime) -> date:
    """The day a call raised now lands on: today while the rep's shift is on or still to
    come today, else their next working day."""
    return local_day(rep, shift_start(rep, now))


def free_slots(reps: Sequence[Rep], loads: DayLoads, *, now: datetime) -> int:
    """Calls the reps can still take on their next working day (see :func:`next_working_day`)."""
    return sum(room(r, next_working_day(r, now), loads) for r in reps if r.days)


def territory_reps(contact: Contact, reps: Sequence[Rep], territories: Mapping[str, str]) -> list[Rep]:
    """Reps that own the contact's territory (or its country, as written or as its ISO code), config order."""
    keys = [k for k in (contact.territory, contact.country, country_code(contact.country),
                        contact.attributes.get("country")) if k]
    if not keys:
        return []
    wanted = {str(k).casefold() for k in keys}
    by_map = {v for k, v in territories.items() if str(k).casefold() in wanted}
    return [r for r in reps
            if r.id in by_map or any(t.casefold() in wanted for t in r.territory)]


def route(
    *,
    contact: Contact,
    reps: Sequence[Rep],
    territories: Mapping[str, str],
    kind: str,
    due: timedelta,
    assigned_today: Mapping[str, int],
    last_rep: str | None,
    now: datetime,
    loads: DayLoads | None = None,
) -> Route:
    """Pick the rep for a new task and its due time.

    The due time counts ``due`` in the rep's working time; a day that is full (calls done +
    open calls due that day reach ``capacity``) passes the task to the rep's next working day
    with room. ``loads`` gives those counts per rep and local date (:func:`day_loads`);
    without it, ``assigned_today`` (tasks assigned since each rep's local midnight) stands for
    today's. ``last_rep`` is the rep who got the most recent task (round robin continues after them).
    """
    if not reps:
        return Route(None, now + due, "no reps configured")
    if loads is None:
        loads = {r.id: {local_day(r, now): assigned_today.get(r.id, 0)} for r in reps}
    by_id = {r.id: r for r in reps}
    if contact.owner and contact.owner in by_id:
        return _assign(by_id[contact.owner], kind, due, now, f"owner {contact.owner}", loads)
    pool = territory_reps(contact, reps, territories)
    why = "territory"
    if len(pool) == 1:
        where = contact.territory or contact.country or contact.attributes.get("country")
        return _assign(pool[0], kind, due, now, f"territory {where}", loads)
    if not pool:
        pool, why = list(reps), "round robin"
    available = [r for r in pool if on_shift(r, now) and room(r, local_day(r, now), loads) > 0]
    order = [r.id for r in reps]
    if available:
        rep = _next_after(available, order, last_rep)
        return _assign(rep, kind, due, now, f"{why}: on shift with capacity", loads)
    if kind == "call_now":
        # Nobody can call now: the rep with the soonest shift that has room takes it, due from then.
        slots = [(first_slot(r, now, loads), r) for r in pool]
        soonest = min(t for t, _ in slots)
        rep = _next_after([r for t, r in slots if t == soonest], order, last_rep)
        return _assign(rep, kind, due, now, f"{why}: waits for {rep.id}'s shift", loads)
    with_capacity = [r for r in pool if room(r, local_day(r, now), loads) > 0] or list(pool)
    rep = _next_after(with_capacity, order, last_rep)
    return _assign(rep, kind, due, now, f"{why}: nobody on shift", loads)


def _assign(rep: Rep, kind: str, due: timedelta, now: datetime, reason: str, loads: DayLoads) -> Route:
    sla = working_due(rep, now, due)
    if kind == "call_now":
        # A call-now task is due ``due`` after the rep can first take it: now when on shift
        # with room, else the start of their next shift on a day with room.
        start = first_slot(rep, now, loads)
        if not on_shift(rep, now) and "waits" not in reason:
            reason = f"{reason}, due from their shift start"
        first_day = local_day(rep, shift_start(rep, now))
        if local_day(rep, start) != first_day:
            reason = f"{reason}; {first_day:%a %d %b} is full, queued for {local_day(rep, start):%a %d %b}"
        return Route(rep.id, working_due(rep, start, due), reason, sla_at=sla)
    day = local_day(rep, sla)
    if room(rep, day, loads) > 0:
        return Route(rep.id, sla, reason, sla_at=sla)
    # The day plan is full: the call is queued for the rep's next working day with room.
    slot = first_slot(rep, sla, loads)
    queued = f"{reason}; {day:%a %d %b} is full, queued for {local_day(rep, slot):%a %d %b}"
    return Route(rep.id, max(slot, sla), queued, sla_at=sla)


def _next_after(candidates: Sequence[Rep], order: Sequence[str], last: str | None) -> Rep:
    """Round robin: the first candidate after ``last`` in config order, wrapping around."""
    if last not in order:
        return candidates[0]
    start = order.index(last)
    ids = {r.id: r for r in candidates}
    for step in range(1, len(order) + 1):
        rid = order[(start + step) % len(order)]
        if rid in ids:
            return ids[rid]
    return candidates[0]
