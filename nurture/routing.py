"""Which rep gets a task, and when it is due. Pure: the facts and the clock come in as arguments.

Order: the contact's owner (when a known rep) → territory (``settings.territories`` maps a
territory or country to a rep id; a rep's own ``territory`` list also claims it) → round robin
among reps on shift now with capacity left today. A ``call_now`` task that finds nobody on shift
goes to the rep whose shift starts soonest and is due from that shift's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nurture.countries import country_code
from nurture.models import Contact, Rep
from nurture.timeutil import Window, zone


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision: ``rep_id`` (None when no rep is configured), due time, and why."""

    rep_id: str | None
    due_at: datetime
    reason: str


def on_shift(rep: Rep, now: datetime) -> bool:
    """True when ``now`` lies in the rep's working hours and days, in the rep's time zone."""
    return Window(days=rep.days, hours=rep.hours).is_open(now, zone(rep.timezone))


def shift_start(rep: Rep, now: datetime) -> datetime:
    """``now`` if the rep is on shift, else the start of their next shift (UTC)."""
    if not rep.days:
        return now + timedelta(days=3650)
    return Window(days=rep.days, hours=rep.hours).next_open(now, zone(rep.timezone))


def local_day_start(rep: Rep, now: datetime) -> datetime:
    """Midnight of the rep's current local day, in UTC: capacity counts from here."""
    tz = zone(rep.timezone)
    local = now.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    return midnight.astimezone(UTC)


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
) -> Route:
    """Pick the rep for a new task and its due time.

    ``assigned_today`` counts tasks already assigned to each rep since their local midnight;
    ``last_rep`` is the rep who got the most recent task (round robin continues after them).
    """
    if not reps:
        return Route(None, now + due, "no reps configured")
    by_id = {r.id: r for r in reps}
    if contact.owner and contact.owner in by_id:
        return _assign(by_id[contact.owner], kind, due, now, f"owner {contact.owner}")
    pool = territory_reps(contact, reps, territories)
    why = "territory"
    if len(pool) == 1:
        where = contact.territory or contact.country or contact.attributes.get("country")
        return _assign(pool[0], kind, due, now, f"territory {where}")
    if not pool:
        pool, why = list(reps), "round robin"
    available = [r for r in pool if on_shift(r, now) and assigned_today.get(r.id, 0) < r.capacity]
    if available:
        rep = _next_after(available, [r.id for r in reps], last_rep)
        return Route(rep.id, now + due, f"{why}: on shift with capacity")
    if kind == "call_now":
        # Nobody can call now: the rep whose shift starts soonest takes it, due from then.
        starts = [(_next_shift_with_capacity(r, now, assigned_today), i, r) for i, r in enumerate(pool)]
        start, _, rep = min(starts)
        return Route(rep.id, start + due, f"{why}: waits for {rep.id}'s shift")
    with_capacity = [r for r in pool if assigned_today.get(r.id, 0) < r.capacity] or list(pool)
    rep = _next_after(with_capacity, [r.id for r in reps], last_rep)
    return Route(rep.id, now + due, f"{why}: nobody on shift")


def _next_shift_with_capacity(rep: Rep, now: datetime, assigned_today: Mapping[str, int]) -> datetime:
    if assigned_today.get(rep.id, 0) < rep.capacity:
        return shift_start(rep, now)
    # Full today: capacity resets at local midnight, so the next shift from tomorrow.
    tomorrow = local_day_start(rep, now + timedelta(days=1))
    return shift_start(rep, max(tomorrow, now))


def _assign(rep: Rep, kind: str, due: timedelta, now: datetime, reason: str) -> Route:
    if kind == "call_now" and not on_shift(rep, now):
        return Route(rep.id, shift_start(rep, now) + due, f"{reason}, due from their shift start")
    return Route(rep.id, now + due, reason)


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
