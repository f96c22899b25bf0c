"""nurture.store.timeshift: every stored moment moves by the same amount, durations do not."""

from __future__ import annotations

from nurture.store.contacts import ContactRow
from nurture.store.timeshift import shift_times, time_columns


def test_time_columns_are_moments_not_durations(store) -> None:
    cols = time_columns(store)
    assert {"due_at", "created_at", "snooze_until"} <= set(cols["tasks"])
    assert "next_wait" not in cols["enrollments"] and "next_at" in cols["enrollments"]
    assert "at" in cols["clicks"]


def test_shift_moves_every_moment_and_keeps_nulls(store, now) -> None:
    store.upsert_contacts([ContactRow(email="a@shop.example", fields={"first_name": "A"})], now=now)
    before = store.query_one("SELECT created_at, updated_at, score_at FROM contacts")
    moved = shift_times(store, seconds=-3600)
    after = store.query_one("SELECT created_at, updated_at, score_at FROM contacts")
    assert moved >= 10
    assert after["created_at"] == before["created_at"] - 3600
    assert after["updated_at"] == before["updated_at"] - 3600
    assert before["score_at"] is None and after["score_at"] is None
