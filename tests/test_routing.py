"""Routing: owner → territory → round robin among reps on shift with capacity; off-shift waits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nurture.models import Contact, Rep
from nurture.routing import local_day_start, on_shift, route, shift_start
from nurture.timeutil import parse_hours

# Tuesday 2026-11-24 10:00 UTC = 19:00 Tokyo (off), 10:00 London (on), 05:00 New York (off).
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

AOKI = Rep(id="aoki", name="Aoki", email="a@x", timezone="Asia/Tokyo",
           hours=parse_hours("09:00-18:00"), territory=("JP",))
BAKER = Rep(id="baker", name="Baker", email="b@x", timezone="Europe/London",
            hours=parse_hours("09:00-17:30"), territory=("GB",))
CLARK = Rep(id="clark", name="Clark", email="c@x", timezone="Europe/London",
            hours=parse_hours("09:00-17:30"), capacity=2)
GARCIA = Rep(id="garcia", name="Garcia", email="g@x", timezone="America/New_York",
             hours=parse_hours("08:30-17:00"), territory=("US",))
REPS = (AOKI, BAKER, CLARK, GARCIA)


def contact(**kw) -> Contact:
    return Contact(id=1, email="x@shop.example", **kw)


def go(c: Contact, *, kind="call", due=timedelta(hours=1), assigned=None, last=None,
       now=NOW, reps=REPS, territories=None):
    return route(contact=c, reps=reps, territories=territories or {}, kind=kind, due=due,
                 assigned_today=assigned or {}, last_rep=last, now=now)


def test_shift_helpers():
    assert on_shift(BAKER, NOW) and not on_shift(AOKI, NOW) and not on_shift(GARCIA, NOW)
    # Aoki's next shift: Wednesday 09:00 Tokyo = 00:00 UTC.
    assert shift_start(AOKI, NOW) == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    assert shift_start(BAKER, NOW) == NOW
    assert local_day_start(AOKI, NOW) == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    # Weekend: Saturday noon London is off for a mon-fri rep; next shift is Monday 09:00.
    sat = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert not on_shift(BAKER, sat)
    assert shift_start(BAKER, sat) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_owner_wins_even_over_territory():
    r = go(contact(owner="garcia", territory="GB"))
    # Garcia is off shift (05:00 New York): the SLA clock starts at 08:30 there.
    assert r.rep_id == "garcia" and r.due_at == datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
    assert "owner" in r.reason
    r = go(contact(owner="baker"))
    assert r.rep_id == "baker" and r.due_at == NOW + timedelta(hours=1)


def test_owner_off_shift_call_now_is_due_from_shift_start():
    r = go(contact(owner="aoki"), kind="call_now")
    assert r.rep_id == "aoki"
    assert r.due_at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def test_unknown_owner_falls_through_to_territory():
    r = go(contact(owner="nobody", territory="JP"))
    assert r.rep_id == "aoki" and r.reason.startswith("territory")


def test_territory_from_settings_map_and_country_attribute():
    r = go(contact(attributes={"country": "us"}))
    assert r.rep_id == "garcia"
    r = go(contact(territory="AU"), territories={"AU": "clark"})
    assert r.rep_id == "clark"


def test_round_robin_among_reps_on_shift():
    # On shift at 10:00 UTC: baker and clark (London). Aoki and Garcia are off.
    picks = []
    last = None
    for _ in range(4):
        r = go(contact(), last=last)
        picks.append(r.rep_id)
        last = r.rep_id
    assert picks == ["baker", "clark", "baker", "clark"]


def test_capacity_left_today_is_respected():
    r = go(contact(), assigned={"clark": 2}, last="baker")
    assert r.rep_id == "baker"  # clark (capacity 2) is full, so baker again
    r = go(contact(), assigned={"clark": 2, "baker": 16}, kind="call")
    # Everyone on shift is full: a plain call still goes to someone with capacity.
    assert r.rep_id in {"aoki", "garcia"} and "nobody on shift" in r.reason


def test_call_now_outside_every_shift_waits_for_the_first_shift():
    # Tuesday 23:00 UTC: Tokyo 08:00 (starts 09:00 = 00:00 UTC), London 23:00, New York 18:00.
    late = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    assert not any(on_shift(r, late) for r in REPS)
    r = go(contact(), kind="call_now", now=late, due=timedelta(minutes=30))
    assert r.rep_id == "aoki"
    assert r.due_at == datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
    assert "waits" in r.reason


def test_no_reps_means_unassigned():
    r = go(contact(), reps=())
    assert r.rep_id is None and r.due_at == NOW + timedelta(hours=1)


ZONES = ["Asia/Tokyo", "Europe/London", "America/New_York", "Australia/Sydney", "UTC"]
HOURS = ["09:00-18:00", "08:30-17:00", "22:00-06:00", "00:00-23:59"]


@st.composite
def teams(draw):
    n = draw(st.integers(1, 4))
    reps = tuple(Rep(id=f"r{i}", name=f"R{i}", email=f"r{i}@x", timezone=draw(st.sampled_from(ZONES)),
                     hours=parse_hours(draw(st.sampled_from(HOURS))),
                     days=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
                     capacity=draw(st.integers(0, 3))) for i in range(n))
    assigned = {r.id: draw(st.integers(0, 4)) for r in reps}
    return reps, assigned


@hsettings(max_examples=150, deadline=None)
@given(teams(), st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
       st.sampled_from(["call_now", "call"]), st.integers(1, 600))
def test_routing_invariants(team, naive_now, kind, due_minutes):
    reps, assigned = team
    now = naive_now.replace(tzinfo=UTC)
    due = timedelta(minutes=due_minutes)
    r = route(contact=contact(), reps=reps, territories={}, kind=kind, due=due,
              assigned_today=assigned, last_rep=None, now=now)
    chosen = next(p for p in reps if p.id == r.rep_id)
    assert r.due_at >= now + due
    free = [p for p in reps if on_shift(p, now) and assigned[p.id] < p.capacity]
    if free:
        assert chosen in free
        if on_shift(chosen, now + due) and now + due - now < timedelta(hours=1):
            assert r.due_at == now + due
    # Due inside (or at the very end of) a working stretch of the chosen rep: the SLA counts working time.
    if chosen.capacity and any(chosen.days):
        assert on_shift(chosen, r.due_at - timedelta(seconds=1)) or on_shift(chosen, r.due_at)
        assert all(shift_start(p, now) >= now for p in reps)


# -- the day plan and business calendars --------------------------------------------------------

def test_a_full_day_queues_the_call_for_the_next_working_day_with_room():
    from nurture.models import TaskLoad
    from nurture.routing import day_loads

    rows = [TaskLoad("clark", due_at=NOW - timedelta(days=3)), TaskLoad("clark", due_at=NOW, done_at=NOW)]
    loads = day_loads(REPS, rows, now=NOW)
    assert loads["clark"] == {NOW.date(): 2}  # an overdue open call counts today, with today's done one
    r = route(contact=contact(owner="clark"), reps=REPS, territories={}, kind="call", due=timedelta(hours=1),
              assigned_today={}, last_rep=None, now=NOW, loads=loads)
    # Clark (capacity 2) is full today: Wednesday 09:00 London.
    assert r.due_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert r.sla_at == NOW + timedelta(hours=1) and "is full, queued for Wed 25 Nov" in r.reason
    now_task = route(contact=contact(owner="clark"), reps=REPS, territories={}, kind="call_now",
                     due=timedelta(hours=1), assigned_today={}, last_rep=None, now=NOW, loads=loads)
    assert now_task.due_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # an hour into Wednesday's plan


def test_no_task_falls_due_on_a_reps_holiday_and_the_sla_counts_working_time():
    from nurture.calendars import calendar_for
    from nurture.routing import working_due

    aoki = replace(AOKI, calendar=calendar_for("JP"))
    friday = datetime(2027, 1, 8, 8, 30, tzinfo=UTC)  # 17:30 in Tokyo; Monday the 11th is 成人の日
    r = go(contact(owner="aoki"), kind="call", now=friday, reps=(aoki,))
    assert r.due_at == datetime(2027, 1, 12, 0, 30, tzinfo=UTC)  # 30 min on Friday + 30 min on Tuesday
    assert working_due(aoki, friday, timedelta(days=1)) == datetime(2027, 1, 12, 8, 30, tzinfo=UTC)
    assert not on_shift(aoki, datetime(2027, 1, 11, 1, 0, tzinfo=UTC))
