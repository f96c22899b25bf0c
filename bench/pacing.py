"""Pacing by the reps' capacity (issue 17, item 4): one 2,000-contact send, three reps × 16.

Plays the real scheduler, follow-up routing and day plans on a simulated clock
(nurture.teamsim) twice: without ``pace:`` (every mail goes out Monday morning) and with
``pace: reps``. Prints, per working day, mail out / held / call-now tasks raised / calls
made, and how far past its due time (its SLA, in the rep's working time) each call-now
task was called. The target: no call-now task waits more than one working day past due.

    PYTHONPATH=$PWD python bench/pacing.py [--contacts 2000] [--reps 3] [--capacity 16] [--click-rate 0.15]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from nurture.campaigns import parse_campaign
from nurture.models import Campaign
from nurture.teamsim import TeamSim, default_team, simulate_team

CAMPAIGN = """
id: bench-pace
name: Pacing bench
timezone: Asia/Tokyo
send_window: {days: [mon, tue, wed, thu, fri], hours: "09:00-18:00"}
{pace}
steps:
  - id: offer
    subject: "One checkout, every payment method"
    template: ec-payments/case_study.html
follow_up:
  - when: {clicked: pricing}
    task: call_now
    priority: high
    due: 1h
"""
#: Monday 7 December 2026, 09:00 in Tokyo (a week without public holidays in Japan).
START = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def campaign(paced: bool) -> Campaign:
    text = CAMPAIGN.replace("{pace}", "pace: reps" if paced else "")
    return parse_campaign(text, file="bench-pace.yaml")


def show(result: TeamSim, seconds: float) -> None:
    label = "pace: reps" if result.paced else "no pacing"
    print(f"\n{label}: {result.sent} of {result.contacts} mails sent, "
          f"{len(result.waits)} call-now tasks, simulated in {seconds:.1f} s")
    print(f"{'day':<12}{'sent':>7}{'held':>7}{'tasks':>7}{'calls':>7}")
    for d in result.days:
        print(f"{d.day:%a %d %b}  {d.sent:>7}{d.held:>7}{d.tasks:>7}{d.calls:>7}")
    waits = sorted(result.waits)
    p95 = waits[int(0.95 * (len(waits) - 1))] if waits else 0.0
    print(f"wait past due, working days: max {result.max_wait:.2f}, p95 {p95:.2f}; "
          f"over one working day: {result.late}; never called: {result.open_at_end}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contacts", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--capacity", type=int, default=16)
    ap.add_argument("--click-rate", type=float, default=0.15)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    reps = default_team(args.reps, capacity=args.capacity)
    print(f"{args.reps} reps × {args.capacity} calls a day, {args.contacts} contacts, "
          f"{args.click_rate:.0%} click pricing (a call-now task due in 1h), from {START:%a %d %b %Y} 09:00 JST")
    for paced in (False, True):
        t0 = time.perf_counter()
        r = simulate_team(campaign(paced), reps=reps, contacts=args.contacts, start=START,
                          click_rate=args.click_rate, days=args.days)
        show(r, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
