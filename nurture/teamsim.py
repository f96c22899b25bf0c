"""A team on a simulated clock: one big send, the reps' day plans, and how long calls wait.

:func:`simulate_team` enrolls ``contacts`` people in a campaign on a throwaway in-memory
store and plays the real parts on a simulated clock: the scheduler tick (with ``pace: reps``
when the campaign sets it), delivery (``mark_sent`` at once), human clicks on ``link`` by a
share ``click_rate`` of the recipients some hours after delivery, the follow-up round that
raises call-now tasks with day-plan routing, and reps who work their plan (one call every
``shift / capacity``, most urgent first, at most ``capacity`` a day). It reports per working
day what went out, what was held, the tasks raised and the calls made, and how far past its
due time (its SLA in the rep's working time) each call-now task was called, in working days.
``nurture simulate --team`` prints it; bench/pacing.py measures a 3 × 16 team with 2,000 contacts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from nurture.config import Settings
from nurture.dayplan import day_plan
from nurture.followup import process_clicks
from nurture.models import Campaign, Rep
from nurture.outcomes import record_outcome
from nurture.routing import local_day, on_shift, window
from nurture.scheduler import tick
from nurture.store import Store
from nurture.store.contacts import ContactRow
from nurture.timeutil import parse_hours, zone


@dataclass(slots=True)
class SimDay:
    """One local working day of the first rep: mail out, mail held at its end, tasks, calls."""

    day: date
    sent: int = 0
    held: int = 0
    tasks: int = 0
    calls: int = 0


@dataclass(frozen=True, slots=True)
class TeamSim:
    """What :func:`simulate_team` saw. ``waits`` are working days past each call-now task's
    due time (0 when called in time); ``open_at_end`` counts tasks never called."""

    paced: bool
    days: tuple[SimDay, ...]
    waits: tuple[float, ...]
    open_at_end: int
    sent: int
    contacts: int
    finished: datetime
    holidays: tuple[str, ...] = field(default=())

    @property
    def max_wait(self) -> float:
        return max(self.waits, default=0.0)

    @property
    def late(self) -> int:
        """Call-now tasks called more than one working day after their due time."""
        return sum(1 for w in self.waits if w > 1.0)


def working_days_between(rep: Rep, start: datetime, end: datetime) -> float:
    """Open time of the rep between ``start`` and ``end``, in working days (one shift = 1)."""
    if end <= start:
        return 0.0
    w = window(rep)
    tz = zone(rep.timezone)
    per_day = _shift_seconds(rep)
    total = 0.0
    t = w.next_open(start, tz, rep.calendar)
    for _ in range(10_000):
        if t >= end:
            break
        stop = min(w.day_end(t, tz), end)
        total += (stop - t).total_seconds()
        t = w.next_open(stop, tz, rep.calendar) if stop < end else end
    return total / per_day


def _shift_seconds(rep: Rep) -> float:
    if rep.hours is None:
        return 86400.0
    a = rep.hours.start.hour * 3600 + rep.hours.start.minute * 60
    b = rep.hours.end.hour * 3600 + rep.hours.end.minute * 60
    return float((b - a) % 86400 or 86400)


def default_team(n: int = 3, *, capacity: int = 16, timezone: str = "Asia/Tokyo") -> tuple[Rep, ...]:
    """``n`` reps on 09:00-18:00, Monday to Friday, with ``capacity`` calls a day."""
    from nurture.calendars import calendar_for

    return tuple(Rep(id=f"rep{i + 1}", name=f"Rep {i + 1}", email=f"rep{i + 1}@example.com", timezone=timezone,
                     hours=parse_hours("09:00-18:00"), capacity=capacity,
                     calendar=calendar_for(None, zone_name=timezone)) for i in range(n))


def simulate_team(campaign: Campaign, *, reps: Sequence[Rep], contacts: int, start: datetime,
                  click_rate: float = 0.15, link: str = "pricing", step: str | None = None,
                  mean_delay: timedelta = timedelta(hours=3), seed: int = 17, days: int = 30,
                  tick_every: timedelta = timedelta(minutes=5), timezone: str | None = None) -> TeamSim:
    """Play one send of ``campaign`` (its first step, or ``step``) to ``contacts`` people."""
    rng = random.Random(seed)
    tz_name = timezone or (reps[0].timezone if reps else campaign.timezone)
    first = campaign.steps[0] if step is None else campaign.step(step)
    one_step = replace(campaign, steps=(replace(first, wait=timedelta(0)),), content_hash="", source="")
    campaigns = {one_step.id: one_step}
    settings = replace(Settings(), reps=tuple(reps))
    store = Store(":memory:")
    try:
        store.upsert_contacts([ContactRow(f"c{i}@sim.example", {"first_name": f"C{i}", "timezone": tz_name}, {})
                               for i in range(contacts)], now=start)
        from nurture.scheduler import enroll

        enroll(store, one_step, now=start, all_contacts=True)
        return _play(store, one_step, campaigns, settings, reps, rng, start=start, days=days,
                     click_rate=click_rate, link=link, mean_delay=mean_delay, tick_every=tick_every,
                     contacts=contacts)
    finally:
        store.close()


def _play(store: Store, campaign: Campaign, campaigns: dict[str, Campaign], settings: Settings,
          reps: Sequence[Rep], rng: random.Random, *, start: datetime, days: int, click_rate: float, link: str,
          mean_delay: timedelta, tick_every: timedelta, contacts: int) -> TeamSim:
    per_call = {r.id: timedelta(seconds=_shift_seconds(r) / max(1, r.capacity)) for r in reps}
    next_call = {r.id: start for r in reps}
    calls_on: dict[tuple[str, date], int] = {}
    clicks: list[tuple[datetime, int]] = []
    by_day: dict[date, SimDay] = {}
    holidays: list[str] = []
    lead = reps[0] if reps else None
    sent_total = 0
    t = start
    end = start + timedelta(days=days)
    finished = start
    while t < end:
        result = tick(store, campaigns, now=t, reps=reps, explain=True)
        for a in result.decisions:
            if a.action == "defer" and a.reason and a.reason.startswith("holiday") and a.reason not in holidays:
                holidays.append(a.reason)
        today = local_day(lead, t) if lead else t.date()
        sim_day = by_day.setdefault(today, SimDay(today))
        claimed = store.claim_sends(owner="sim", now=t, lease=timedelta(minutes=5), limit=100_000)
        for s in claimed:
            if s.status != "sending":
                continue
            store.mark_sent(s.id, now=t)
            sent_total += 1
            sim_day.sent += 1
            if rng.random() < click_rate:
                clicks.append((t + timedelta(seconds=rng.expovariate(1 / mean_delay.total_seconds())), s.id))
        due_clicks = [c for c in clicks if c[0] <= t]
        if due_clicks:
            clicks = [c for c in clicks if c[0] > t]
            for at, send_id in sorted(due_clicks):
                store.click_simulated(send_id, link=link, at=at)
            sim_day.tasks += len(process_clicks(store, campaigns, settings, now=t, limit=100_000))
        for rep in reps:
            if not on_shift(rep, t) or t < next_call[rep.id]:
                continue
            key = (rep.id, local_day(rep, t))
            if calls_on.get(key, 0) >= rep.capacity:
                continue
            plan = day_plan(rep, store.list_tasks(now=t, rep_id=rep.id, limit=100_000),
                            done_today=calls_on.get(key, 0), now=t)
            if not plan.today:
                continue
            record_outcome(store, task_id=plan.today[0].id, outcome="connected", now=t, rep_id=rep.id)
            calls_on[key] = calls_on.get(key, 0) + 1
            next_call[rep.id] = t + per_call[rep.id]
            sim_day.calls += 1
            finished = t
        sim_day.held = _held(store, campaign.id)
        if not clicks and sent_total + _ended(store, campaign.id) >= contacts and _open_tasks(store, t) == 0:
            break
        t += tick_every
    waits = _waits(store, reps, t)
    return TeamSim(paced=campaign.pace == "reps", days=tuple(d for _, d in sorted(by_day.items())
                                                             if d.sent or d.tasks or d.calls or d.held),
                   waits=tuple(waits), open_at_end=_open_tasks(store, t), sent=sent_total, contacts=contacts,
                   finished=finished, holidays=tuple(holidays))


def _held(store: Store, campaign_id: str) -> int:
    return sum(p.held for p in store.pacing_status() if p.campaign_id == campaign_id)


def _ended(store: Store, campaign_id: str) -> int:
    states = store.enrollment_counts(campaign_id).get(campaign_id, {})
    return states.get("exited", 0)


def _open_tasks(store: Store, now: datetime) -> int:
    return sum(n.get("open", 0) for n in store.queue_counts(now=now, since=now).values())


def _waits(store: Store, reps: Sequence[Rep], now: datetime) -> list[float]:
    by_id = {r.id: r for r in reps}
    out: list[float] = []
    for task in store.list_tasks(now=now, status="all", limit=1_000_000):
        rep = by_id.get(task.rep_id or "")
        if rep is None or task.kind != "call_now":
            continue
        sla = task.context.get("sla_due")
        due = datetime.fromisoformat(sla) if sla else task.due_at
        out.append(working_days_between(rep, due, task.done_at or now))
    return out
