"""pace: reps: paced steps are held while the reps' next working day is full, and released as it frees."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from nurture.calendars import calendar_for
from nurture.models import Campaign, Condition, FollowUpRule, Rep, Step
from nurture.pacing import HELD, RECHECK, paced_steps
from nurture.scheduler import enroll, tick
from nurture.store import Store
from nurture.store.contacts import ContactRow
from nurture.timeutil import parse_hours

MONDAY = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
REPS = tuple(Rep(id=f"r{i}", name=f"R{i}", email=f"r{i}@x", timezone="Asia/Tokyo", hours=parse_hours("09:00-18:00"),
                 capacity=2, calendar=calendar_for("JP")) for i in range(3))


def campaign(**kw) -> Campaign:
    steps = (Step(id="offer", subject="S", template="t.html", wait=timedelta(0)),
             Step(id="webinar", subject="W", template="t.html", wait=timedelta(days=7)))
    rules = (FollowUpRule(when=Condition(clicked="pricing", step="offer"), task="call_now", due=timedelta(hours=1)),
             FollowUpRule(when=Condition(clicked="any"), task="call"),
             FollowUpRule(when=Condition(replied=True), task="call_now"))
    return Campaign(id="ec", name="EC", path="ec.yaml", timezone="Asia/Tokyo", steps=steps, follow_up=rules,
                    pace="reps", **kw)


def people(store: Store, c: Campaign, n: int) -> None:
    store.upsert_contacts([ContactRow(f"p{i}@x.example", {"timezone": "Asia/Tokyo"}) for i in range(n)], now=MONDAY)
    enroll(store, c, now=MONDAY, all_contacts=True)


def test_only_steps_whose_clicks_raise_call_now_tasks_are_paced():
    assert paced_steps(campaign()) == frozenset({"offer"})  # replies and plain calls do not count
    assert paced_steps(replace(campaign(), pace=None)) == frozenset()


def test_held_while_the_reps_are_full_and_released_as_capacity_frees(store):
    c = campaign()
    people(store, c, 100)
    r = tick(store, {c.id: c}, now=MONDAY, reps=REPS, explain=True)
    # 3 reps × 2 calls free today at 20 % call-now tasks per mail (the prior): 30 mails go.
    assert (r.queued, r.deferred) == (30, 70)
    held = [a for a in r.decisions if a.action == "defer"]
    assert {a.reason for a in held} == {HELD} and {a.next_at for a in held} == {MONDAY + RECHECK}
    status = store.pacing_status()[0]
    assert (status.campaign_id, status.held, status.released, status.free_slots) == ("ec", 70, 30, 6)
    assert status.held_since == MONDAY
    # Those 30 mails may still raise 6 calls: nothing more goes out today.
    assert tick(store, {c.id: c}, now=MONDAY + RECHECK, reps=REPS).queued == 0
    for s in store.claim_sends(owner="t", now=MONDAY, lease=timedelta(minutes=5), limit=100):
        store.mark_sent(s.id, now=MONDAY)
    # Tuesday: a day later the mail raised no task at all, so the rate falls and the rest goes.
    tuesday = MONDAY + timedelta(days=1, minutes=30)
    r = tick(store, {c.id: c}, now=tuesday, reps=REPS)
    assert (r.queued, r.deferred) == (70, 0)
    status = store.pacing_status()[0]
    assert (status.held, status.released, status.held_since) == (0, 100, None)


def test_full_day_plans_hold_everything(store):
    c = campaign()
    people(store, c, 10)
    n = 0
    for rep in REPS:
        for _ in range(rep.capacity):  # one open task per contact and campaign
            cid = store.get_contact_by_email(f"p{n}@x.example").id
            store.insert_task(contact_id=cid, campaign_id="other", rep_id=rep.id, kind="call", priority="normal",
                              due_at=MONDAY, reason="busy", context={}, now=MONDAY)
            n += 1
    r = tick(store, {c.id: c}, now=MONDAY, reps=REPS)
    assert (r.queued, r.deferred) == (0, 10)
    # Without reps (none configured) nothing is paced.
    assert tick(store, {c.id: c}, now=MONDAY + RECHECK).queued == 10
