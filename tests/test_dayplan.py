"""The day plan: today's calls within capacity, most urgent first; the overflow queued for the next working day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from nurture.calendars import calendar_for
from nurture.dayplan import day_plan
from nurture.models import Rep, Task
from nurture.timeutil import parse_hours

REP = Rep(id="aoki", name="Aoki", email="a@x", timezone="Asia/Tokyo", hours=parse_hours("09:00-18:00"),
          capacity=3, calendar=calendar_for("JP"))
FRIDAY = datetime(2027, 1, 8, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo; Monday the 11th is a holiday


def task(i: int, priority: str = "normal", due: datetime = FRIDAY) -> Task:
    return Task(id=i, contact_id=i, campaign_id="ec", kind="call_now", priority=priority, status="open",
                due_at=due, created_at=FRIDAY, rep_id="aoki")


def test_today_fits_capacity_with_calls_done_and_the_rest_is_queued_by_priority():
    tasks = [task(1), task(2, "low", FRIDAY - timedelta(days=1)), task(3, "urgent"), task(4, "high"),
             task(5, due=FRIDAY + timedelta(days=4))]
    plan = day_plan(REP, tasks, done_today=1, now=FRIDAY)
    assert plan.day == date(2027, 1, 8) and plan.is_today
    assert [t.id for t in plan.today] == [3, 4]          # 1 done + 2 planned = capacity 3
    assert [t.id for t in plan.queued] == [1, 2]         # the overdue low one is queued, not urgent
    assert plan.next_day == date(2027, 1, 12)            # Monday is 成人の日
    assert (plan.planned, plan.left, plan.later) == (3, 0, 1)


def test_after_the_shift_the_plan_is_for_the_next_working_day():
    evening = FRIDAY + timedelta(hours=9)  # 19:00 in Tokyo
    plan = day_plan(REP, [task(1, due=evening)], done_today=3, now=evening)
    assert plan.day == date(2027, 1, 12) and not plan.is_today
    assert plan.done == 0 and [t.id for t in plan.today] == [1]
