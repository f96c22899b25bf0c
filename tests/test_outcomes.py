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
    # The webhook carries what an export does (nurture.exports.export_fields).
    assert (done["notes"], done["bant"]["need"], done["rep"]) == (
        "Wants a demo", "Konbini payments", {"id": "baker", "name": None, "email": None})
    assert done["done_at"] == NOW.isoformat() and done["raised_by"]["link"] == "pricing"
    assert done["score"] == 35 and done["attempts"] == 0
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


def test_voicemail_and_no_answer_follow_the_cadence_then_unreachable(store, campaigns, settings):
    seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    t = record_outcome(store, task_id=tid, outcome="voicemail", rep_id="baker", now=NOW,
                       notes="left a message", settings=settings)
    assert (t.status, t.attempts, t.max_attempts) == ("open", 1, 3)
    assert t.due_at == NOW + timedelta(hours=2) and t.snooze_until == t.due_at  # back at 12:00
    assert t.notes == "left a message" and t.attempt_log[0]["outcome"] == "voicemail"
    assert store.list_tasks(now=NOW, rep_id="baker", include_snoozed=False) == []
    [ev] = store.events(kind="task.attempt")
    assert (ev.payload["attempt"], ev.payload["attempts"]) == (1, 3)
    assert store.events(kind="task.done") == []
    # Second try at 12:00: no answer → the next day 10:00 in the contact's zone (Tokyo: the
    # campaign's), 01:00 UTC, which is before Baker's London shift: 09:00 London.
    later = NOW + timedelta(hours=2)
    t = record_outcome(store, task_id=tid, outcome="no_answer", rep_id="baker", now=later, settings=settings)
    assert (t.status, t.attempts) == ("open", 2)
    assert t.due_at.isoformat() == "2026-11-25T09:00:00+00:00"
    t = record_outcome(store, task_id=tid, outcome="no_answer", rep_id="baker", now=t.due_at, settings=settings)
    assert (t.status, t.outcome, t.attempts) == ("done", "unreachable", 3)
    assert [a["outcome"] for a in t.attempt_log] == ["voicemail", "no_answer", "no_answer"]
    [done] = store.events(kind="task.done")
    assert done.payload["outcome"] == "unreachable" and done.payload["last_call"] == "no_answer"


def test_connected_closes_at_once_and_unreachable_fallback_step(store, settings):
    from dataclasses import replace

    from support import make_campaign

    from nurture.models import Condition, FollowUpRule
    rule = FollowUpRule(when=Condition("pricing"), task="call_now", priority="high",
                        due=timedelta(hours=1), attempts=1, unreachable={"step": "webinar"})
    campaigns = {"ec-payments": replace(make_campaign(), follow_up=(rule,))}
    cid, _ = seed_click(store, territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    store.conn.execute("UPDATE enrollments SET state = 'completed' WHERE contact_id = ?", (cid,))
    t = record_outcome(store, task_id=tid, outcome="voicemail", rep_id="baker", now=NOW,
                       settings=settings, campaigns=campaigns)
    assert (t.status, t.outcome) == ("done", "unreachable")
    enr = store.query_one("SELECT state, next_step, next_at FROM enrollments WHERE contact_id = ?", (cid,))
    assert (enr["state"], enr["next_step"]) == ("active", "webinar")
    seed_click(store, email="other@shop.example", territory="GB")
    [t2] = process_clicks(store, campaigns, settings, now=NOW)
    assert record_outcome(store, task_id=t2, outcome="connected", rep_id="baker", now=NOW).status == "done"
