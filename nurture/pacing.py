"""``pace: reps``: mail that follows the reps' day plan.

A step whose links raise call-now tasks (a ``follow_up`` rule with ``task: call_now`` that
matches a click in that step) is *paced*. Each scheduler tick, :func:`pace` lets such sends
through only while the reps have room on their next working day for the calls they are
expected to raise, and holds the rest (the enrollment waits :data:`RECHECK` and is asked
again), so they are released as capacity frees: a new working day, a rep added, tasks moved.

The expected call-now tasks per mail is the campaign's own rate (tasks over mails sent more
than :data:`SETTLE` ago, when their clicks are in, starting from a prior of :data:`PRIOR_RATE`),
or the rate over all its mail so far when that is higher; mail sent within :data:`SETTLE` is
counted against the free room at that rate, less the tasks it already raised. Runs on the
store thread, inside the tick's transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from nurture.followup import rep_day_loads
from nurture.models import Campaign, Rep
from nurture.routing import free_slots
from nurture.store import Store
from nurture.store.enrollments import Advance

#: Call-now tasks per mail assumed before a campaign has figures of its own.
PRIOR_RATE = 0.20
#: The prior counts as this many mails (later mail outweighs it quickly).
PRIOR_WEIGHT = 20
#: Clicks (and so tasks) of a mail are taken to be in after this long.
SETTLE = timedelta(days=1)
#: How soon a held enrollment is asked again (within a day room frees as the rate estimate
#: falls or tasks move; a new working day frees it all).
RECHECK = timedelta(minutes=30)
HELD = "held for the reps' capacity (pace: reps)"


def paced_steps(campaign: Campaign) -> frozenset[str]:
    """The steps of a ``pace: reps`` campaign whose clicks raise call-now tasks."""
    if campaign.pace != "reps":
        return frozenset()
    rules = [r for r in campaign.follow_up if r.task == "call_now" and not r.when.replied]
    return frozenset(s.id for s in campaign.steps if any(r.when.step in (None, s.id) for r in rules))


@dataclass(frozen=True, slots=True)
class PaceResult:
    """What pacing did in one tick, per paced campaign: (held, released)."""

    free_slots: int
    expect: Mapping[str, float]
    held: Mapping[str, int]
    released: Mapping[str, int]


def pace(store: Store, campaigns: Mapping[str, Campaign], reps: Sequence[Rep], advances: Sequence[Advance], *,
         now: datetime) -> tuple[list[Advance], PaceResult | None]:
    """Hold the queue decisions of paced steps that the reps' free room cannot take; record
    the figures per campaign (``store.record_pacing``)."""
    paced = {cid: steps for cid, c in campaigns.items() if (steps := paced_steps(c))}
    if not paced or not reps or not any(a.action == "queue" and a.step_id in paced.get(a.campaign_id, ())
                                        for a in advances):
        return list(advances), None
    loads = rep_day_loads(store, reps, now=now)
    free = free_slots(reps, loads, now=now)
    expect: dict[str, float] = {}
    budget = float(free)
    for cid, steps in paced.items():
        counts = store.pace_counts(cid, sorted(steps), since=now - SETTLE)
        settled = (counts.settled_tasks + PRIOR_RATE * PRIOR_WEIGHT) / (counts.settled_sends + PRIOR_WEIGHT)
        sent = counts.settled_sends + counts.recent_sends
        # Tasks so far over all mail is a floor: recent mail only adds clicks from here on.
        so_far = (counts.settled_tasks + counts.recent_tasks) / sent if sent else 0.0
        p = max(settled, so_far, 0.001)
        expect[cid] = p
        budget -= max(0.0, p * counts.recent_sends - counts.recent_tasks)
    held = dict.fromkeys(paced, 0)
    released = dict.fromkeys(paced, 0)
    out: list[Advance] = []
    for a in advances:
        if a.action != "queue" or a.step_id not in paced.get(a.campaign_id, frozenset()):
            out.append(a)
            continue
        cost = expect[a.campaign_id]
        if budget >= cost or math.isclose(budget, cost):
            budget -= cost
            released[a.campaign_id] += 1
            out.append(a)
        else:
            held[a.campaign_id] += 1
            out.append(replace(a, action="defer", due_at=None, next_step=None, next_wait=None,
                               next_at=now + RECHECK, reason=HELD))
    for cid in paced:
        if not (held[cid] or released[cid]):
            continue  # nothing of it was due: the last figures stand (held ones wait RECHECK)
        store.record_pacing(cid, held=held[cid], released=released[cid], free_slots=free,
                            expect=expect[cid], now=now)
    return out, PaceResult(free_slots=free, expect=expect, held=held, released=released)
