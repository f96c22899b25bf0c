"""Store: the counts pace: reps decides by, and its record of held mail."""

from __future__ import annotations

from datetime import timedelta

from support import NOW, add_contact, add_send


def test_pace_counts_split_mail_and_its_tasks_at_the_settle_point(store):
    old = [add_contact(store, f"o{i}@x.example") for i in range(3)]
    new = [add_contact(store, f"n{i}@x.example") for i in range(2)]
    for c in old:
        add_send(store, c, "ec", "offer", sent_at=NOW - timedelta(days=2))
    for c in new:
        add_send(store, c, "ec", "offer", sent_at=NOW - timedelta(hours=1))
    add_send(store, old[0], "ec", "webinar", sent_at=NOW - timedelta(hours=1))  # not a paced step
    for c, kind in ((old[0], "call_now"), (old[1], "call"), (new[0], "call_now")):
        store.insert_task(contact_id=c, campaign_id="ec", rep_id="r", kind=kind, priority="high",
                          due_at=NOW, reason="", context={}, now=NOW)
    counts = store.pace_counts("ec", ["offer"], since=NOW - timedelta(days=1))
    assert (counts.settled_sends, counts.settled_tasks, counts.recent_sends, counts.recent_tasks) == (3, 1, 2, 1)
    assert store.pace_counts("ec", [], since=NOW).settled_sends == 0


def test_record_pacing_keeps_the_latest_hold_and_adds_up_releases(store):
    store.record_pacing("ec", held=40, released=60, free_slots=6, expect=0.1, now=NOW)
    store.record_pacing("ec", held=30, released=10, free_slots=1, expect=0.12, now=NOW + timedelta(minutes=30))
    (p,) = store.pacing_status()
    assert (p.campaign_id, p.held, p.released, p.free_slots) == ("ec", 30, 70, 1)
    assert p.expect == 0.12 and p.held_since == NOW and p.updated_at == NOW + timedelta(minutes=30)
    store.record_pacing("ec", held=0, released=30, free_slots=0, expect=0.12, now=NOW + timedelta(hours=1))
    (p,) = store.pacing_status()
    assert (p.held, p.released, p.held_since) == (0, 100, None)
