"""nurture/store/metrics.py: the database figures behind /metrics, on both backends."""

from __future__ import annotations

from datetime import timedelta

from support import add_contact, seed_click

from nurture.store import Store


def test_tasks_open_and_overdue_by_rep(store, now):
    cid = add_contact(store, "k@shop.example")
    for i, (rep, due) in enumerate((("baker", now - timedelta(hours=1)), ("baker", now + timedelta(hours=1)),
                                    (None, now))):
        store.conn.execute(
            """INSERT INTO tasks (contact_id, campaign_id, rep_id, kind, priority, status, due_at, created_at,
                                  updated_at) VALUES (?, ?, ?, 'call', 2, 'open', ?, ?, ?)""",
            (cid, f"campaign-{i}", rep, due.timestamp(), now.timestamp(), now.timestamp()))
    f = Store.metrics_figures(store, now=now)
    assert f.tasks_open == {"baker": 2, "": 1} and f.tasks_overdue == {"baker": 1, "": 0}


def test_sends_clicks_outbox_and_retries(store, now):
    cid, _ = seed_click(store, verdict="human")
    seed_click(store, "blog", email="yui@tea.example", verdict="scanner")
    store.conn.execute("UPDATE sends SET status = 'retry', attempts = 2, next_attempt_at = ? WHERE contact_id = ?",
                       (now.timestamp() - 1, cid))
    f = Store.metrics_figures(store, now=now)
    assert f.sends == {"retry": 1, "sent": 1}
    assert f.retries == 2  # both attempts of the row waiting for its third ended in a transient failure
    assert (f.outbox_depth, f.outbox_due) == (1, 1)
    assert f.clicks == {("click", "human"): 1, ("click", "scanner"): 1}
    assert not f.rate_slowed and f.tasks_open == {}


def test_inbound_by_kind_once_the_table_exists(store, now):
    if Store.metrics_figures(store, now=now).inbound is None:
        # A database from before the inbound migration: no series; then the table, as it adds it.
        store.conn.execute("CREATE TABLE inbound (received_at REAL NOT NULL, source TEXT NOT NULL, "
                           "dedupe_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL)")
    for i, kind in enumerate(("hard_bounce", "hard_bounce", "auto_reply")):
        store.conn.execute("INSERT INTO inbound (received_at, source, dedupe_key, kind) VALUES (?, 'pipe', ?, ?)",
                           (now.timestamp(), f"<m{i}@x>", kind))
    assert Store.metrics_figures(store, now=now).inbound == {"hard_bounce": 2, "auto_reply": 1}
