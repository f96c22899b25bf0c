"""Call outcomes: exits and the hand-off, snoozing, and a rep kept to their own tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import NOW, seed_click

from nurture.cards import task_card, task_cards
from nurture.followup import process_clicks
from nurture.outcomes import record_outcome


def test_outcomes_exit_and_hand_off(store, campaigns, settings):
    cid, _ = seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    t = record_outcome(store, task_id=tid, outcome="qualified", rep_id="baker", now=NOW,
                       notes="Wants a demo", bant={"budget": "¥2M", "need": "Konbini payments"})
    assert (t.status, t.outcome, t.notes) == ("done", "qualified", "Wants a demo")
    enr = store.query_one("SELECT state, exit_reason FROM enrollments WHERE contact_id = ?", (cid,))
    assert (enr["state"], enr["exit_reason"]) == ("exited", "qualified")
    handoff = store.events(kind="contact.qualified")[0].payload
    assert handoff["bant"] == {"budget": "¥2M", "need": "Konbini payments"}
    done = store.events(kind="task.done")[0].payload
    assert done["outcome"] == "qualified"
    from nurture.outcomes import OutcomeError
    with pytest.raises(OutcomeError):
        record_outcome(store, task_id=tid, outcome="connected", now=NOW)

def test_snooze_hides_task_until_then(store, campaigns, settings):
    seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    until = NOW + timedelta(days=1)
    t = record_outcome(store, task_id=tid, outcome="snoozed", rep_id="baker", now=NOW,
                       snooze_until=until)
    assert t.status == "open" and t.due_at == until
    assert store.list_tasks(now=NOW, rep_id="baker", include_snoozed=False) == []
    assert [c.task.id for c in task_cards(store, campaigns, settings, now=until, rep_id="baker",
                                          include_snoozed=False)] == [tid]
    assert store.events(kind="task.done") == []

def test_rep_cannot_touch_another_reps_task(store, campaigns, settings):
    from nurture.errors import NotFound
    seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    with pytest.raises(NotFound):
        record_outcome(store, task_id=tid, outcome="connected", rep_id="aoki", now=NOW)
    with pytest.raises(NotFound):
        task_card(store, campaigns, settings, task_id=tid, rep_id="aoki", now=NOW)
    assert store.get_task(tid).status == "open"
