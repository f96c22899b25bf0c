"""The measurement of issue 17 item 4: 3 reps × 16 and a 2,000-contact send on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture.campaigns import parse_campaign
from nurture.models import Campaign
from nurture.teamsim import default_team, simulate_team, working_days_between

#: Monday 7 December 2026, 09:00 in Tokyo.
START = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
YAML = """
id: big-send
name: Big send
timezone: Asia/Tokyo
send_window: {days: [mon, tue, wed, thu, fri], hours: "09:00-18:00"}
%s
steps:
  - id: offer
    subject: "One checkout"
    template: t.html
follow_up:
  - when: {clicked: pricing}
    task: call_now
    priority: high
    due: 1h
"""


def campaign(pace: bool) -> Campaign:
    return parse_campaign(YAML % ("pace: reps" if pace else ""), file="big-send.yaml")


def test_working_days_count_only_shifts():
    rep = default_team(1)[0]
    friday_17 = datetime(2026, 12, 11, 8, 0, tzinfo=UTC)  # 17:00 in Tokyo
    monday_10 = friday_17 + timedelta(days=2, hours=17)
    assert working_days_between(rep, friday_17, monday_10) == pytest.approx(2 / 9)  # 1 h on Friday, 1 h on Monday
    assert working_days_between(rep, START, START + timedelta(days=1)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def unpaced():
    return simulate_team(campaign(False), reps=default_team(3, capacity=16), contacts=2000, start=START)


@pytest.fixture(scope="module")
def paced():
    return simulate_team(campaign(True), reps=default_team(3, capacity=16), contacts=2000, start=START)


def test_without_pacing_a_big_send_leaves_calls_waiting_for_days(unpaced):
    assert unpaced.sent == 2000 and unpaced.days[0].sent == 2000
    assert unpaced.max_wait > 3.0 and unpaced.late > 100


def test_pace_reps_keeps_every_call_now_task_within_a_working_day_of_due(paced, unpaced):
    assert paced.sent == 2000 and paced.open_at_end == 0
    assert len(paced.waits) == len(unpaced.waits) > 200  # the same people click
    assert paced.late == 0 and paced.max_wait <= 1.0
    first = paced.days[0]
    assert first.sent < 1000 and first.held > 1000  # Monday: held, released day by day
    assert all(d.calls <= 48 for d in paced.days)
    assert sum(d.sent for d in paced.days) == 2000
