"""TasksMixin against a real SQLite file: ordering, dedupe index, tokens, sessions, webhook queue."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from support import NOW, add_click, add_contact, add_link, add_send

from nurture.config import Webhook
from nurture.errors import NotFound
from nurture.webhooks import fan_out


def task(store, contact, *, priority="normal", due=timedelta(hours=1), rep="baker", campaign="c1"):
    return store.insert_task(contact_id=contact, campaign_id=campaign, rep_id=rep, kind="call",
                             priority=priority, due_at=NOW + due, reason="why", context={}, now=NOW)


def test_list_order_overdue_then_priority_then_due(store):
    cs = [add_contact(store, f"c{i}@x.example") for i in range(4)]
    low_late = task(store, cs[0], priority="low", due=-timedelta(minutes=5))
    urgent_later = task(store, cs[1], priority="urgent", due=timedelta(hours=3))
    urgent_soon = task(store, cs[2], priority="urgent", due=timedelta(hours=1))
    normal = task(store, cs[3], priority="normal", due=timedelta(minutes=1), rep="aoki")
    assert [t.id for t in store.list_tasks(now=NOW)] == [low_late, urgent_soon, urgent_later, normal]
    assert [t.id for t in store.list_tasks(now=NOW, rep_id="aoki")] == [normal]
    assert [t.id for t in store.list_tasks(now=NOW, status="overdue")] == [low_late]
    with pytest.raises(ValueError):
        store.list_tasks(now=NOW, status="bogus")


def test_one_open_task_per_contact_and_campaign_is_enforced(store):
    c = add_contact(store, "a@x.example")
    t1 = task(store, c)
    with pytest.raises(sqlite3.IntegrityError):
        task(store, c)
    task(store, c, campaign="c2")  # another campaign is fine
    store.complete_task(t1, outcome="connected", notes=None, now=NOW)
    task(store, c)  # and a new one once the first is done
    assert store.open_task_for(c, "c1").id != t1


def test_snooze_and_done(store):
    c = add_contact(store, "a@x.example")
    t = task(store, c)
    until = NOW + timedelta(days=2)
    store.complete_task(t, outcome="snoozed", notes="after the holidays", now=NOW, snooze_until=until)
    got = store.get_task(t)
    assert (got.status, got.due_at, got.snooze_until, got.notes) == ("open", until, until, "after the holidays")
    assert store.list_tasks(now=NOW, include_snoozed=False) == []
    assert len(store.list_tasks(now=until, include_snoozed=False)) == 1
    store.complete_task(t, outcome="no_answer", notes=None, now=until)
    got = store.get_task(t)
    assert (got.status, got.outcome, got.notes) == ("done", "no_answer", "after the holidays")
    assert [x.id for x in store.list_tasks(now=until, status="done")] == [t]
    with pytest.raises(NotFound):
        store.get_task(9999)


def test_escalation_marks_once(store):
    c = add_contact(store, "a@x.example")
    t = task(store, c, due=-timedelta(minutes=1))
    assert [x.id for x in store.overdue_unescalated(now=NOW)] == [t]
    assert store.mark_escalated(t, now=NOW) is True
    assert store.mark_escalated(t, now=NOW) is False
    assert store.overdue_unescalated(now=NOW) == []


def test_counts_for_capacity_round_robin_and_manager(store):
    cs = [add_contact(store, f"c{i}@x.example") for i in range(3)]
    task(store, cs[0], rep="baker", due=-timedelta(hours=1))
    task(store, cs[1], rep="baker")
    last = task(store, cs[2], rep="aoki")
    store.complete_task(last, outcome="connected", notes=None, now=NOW)
    assert store.assigned_since({"baker": NOW - timedelta(hours=1), "aoki": NOW + timedelta(seconds=1)}) \
        == {"baker": 2, "aoki": 0}
    assert store.last_assigned_rep() == "aoki"
    counts = store.queue_counts(now=NOW, since=NOW - timedelta(days=1))
    assert counts["baker"] == {"open": 2, "overdue": 1, "snoozed": 0, "done": 0}
    assert counts["aoki"]["done"] == 1


def test_contact_blocked_by_status_or_suppression(store):
    a = add_contact(store, "Ok@X.example")
    b = add_contact(store, "bounced@x.example", status="bounced")
    c = add_contact(store, "Supp@X.example")
    store.conn.execute("INSERT INTO suppressions VALUES ('supp@x.example', 'manual', 0)")
    assert [store.contact_blocked(i) for i in (a, b, c, 999)] == [False, True, True, True]


@pytest.mark.sqlite_only("EXPLAIN QUERY PLAN is SQLite's")
def test_unhandled_human_clicks_use_the_index(store):
    plan = store.query("EXPLAIN QUERY PLAN SELECT c.id FROM clicks c WHERE c.handled = 0 "
                       "AND c.verdict = 'human' AND c.kind = 'click' ORDER BY c.id LIMIT 10")
    assert any("clicks_unhandled" in r["detail"] for r in plan), plan
    c = add_contact(store, "a@x.example")
    s = add_send(store, c)
    link = add_link(store, "pricing")
    human = add_click(store, s, link)
    add_click(store, s, link, verdict="scanner")
    rows = store.unhandled_human_clicks()
    assert [(r.click_id, r.link_name, r.contact_id, r.honeypot) for r in rows] == [(human, "pricing", c, False)]
    assert (rows[0].at, rows[0].sent_at) == (NOW - timedelta(minutes=4), NOW - timedelta(hours=2))
    store.mark_clicks_handled([human])
    assert store.unhandled_human_clicks() == []
    assert store.human_click_count(c, since=NOW - timedelta(days=7)) == 1


def test_contact_history_is_typed_rows_newest_first(store):
    c = add_contact(store, "a@x.example")
    first = add_send(store, c, sent_at=NOW - timedelta(days=7))
    second = add_send(store, c, step_id="service-page")
    pricing, docs = add_link(store, "pricing"), add_link(store, "docs", step_id="service-page")
    add_click(store, first, pricing, at=NOW - timedelta(days=6))
    add_click(store, second, docs, at=NOW - timedelta(minutes=1))
    add_click(store, second, docs, verdict="scanner")
    sends = store.contact_sends(c)
    assert [(s.id, s.step_id, s.status, s.sent_at) for s in sends] == [
        (second, "service-page", "sent", NOW - timedelta(hours=2)),
        (first, "case-study", "sent", NOW - timedelta(days=7))]
    assert sends[0].queued_at == NOW - timedelta(hours=2)
    clicks = store.contact_clicks(c)
    assert [(k.link, k.step_id, k.at) for k in clicks] == [
        ("docs", "service-page", NOW - timedelta(minutes=1)), ("pricing", "case-study", NOW - timedelta(days=6))]
    assert clicks[1].url == "https://acme.example/pricing"
    assert store.contact_sends(c, limit=1)[0].id == second


def test_tokens_and_sessions(store):
    store.add_rep_token(token_hash="h1", rep_id="baker", now=NOW)
    assert store.rep_for_token("h1") == "baker" and store.rep_for_token("nope") is None
    store.add_session(session_hash="s1", rep_id="baker", csrf="x", now=NOW,
                      expires_at=NOW + timedelta(hours=1))
    assert store.get_session("s1", now=NOW) == ("baker", "x")
    assert store.get_session("s1", now=NOW + timedelta(hours=2)) is None  # expired
    assert store.rep_token_counts() == {"baker": 1}
    assert store.revoke_rep_tokens("baker", now=NOW) == 1
    assert store.rep_for_token("h1") is None and store.get_session("s1", now=NOW) is None


def test_webhook_fan_out_moves_a_cursor_per_url(store):
    hooks = (Webhook(url="http://a/hook", events=("task.created",)),
             Webhook(url="http://b/hook", events=("task.done", "task.created")))
    e1 = store.append_event("task.created", {"task_id": 1}, now=NOW)
    e2 = store.append_event("task.done", {"task_id": 1}, now=NOW)
    store.append_event("contact.qualified", {"task_id": 1}, now=NOW)
    old = store.append_event("task.created", {"task_id": 0}, now=NOW - timedelta(days=3))
    assert fan_out(store, hooks, now=NOW) == 3
    assert fan_out(store, hooks, now=NOW) == 0  # cursors moved: nothing twice
    rows = store.deliveries()
    assert {(r["event_id"], r["url"]) for r in rows} == {(e1, "http://a/hook"), (e1, "http://b/hook"),
                                                         (e2, "http://b/hook")}
    assert old not in {r["event_id"] for r in rows}  # stale backlog is not sent
    assert [d.event_id for d in store.due_deliveries(now=NOW)] == [e1, e1, e2]
    store.mark_delivery(event_id=e1, url="http://a/hook", status="delivered", attempts=1, next_at=NOW)
    assert store.next_delivery_at() == NOW
    assert len(store.due_deliveries(now=NOW)) == 2


def test_task_loads_are_open_tasks_and_those_done_since(store):
    cs = [add_contact(store, f"l{i}@x.example") for i in range(4)]
    open_one = task(store, cs[0], priority="high")
    done_early = task(store, cs[1])
    done_late = task(store, cs[2])
    task(store, cs[3], rep="aoki")
    store.complete_task(done_early, outcome="connected", notes=None, now=NOW - timedelta(days=1))
    store.complete_task(done_late, outcome="connected", notes=None, now=NOW + timedelta(minutes=5))
    loads = store.task_loads(["baker"], since=NOW)
    assert sorted(((t.due_at, t.done_at, t.priority) for t in loads), key=lambda x: x[2]) == [
        (NOW + timedelta(hours=1), None, "high"),
        (NOW + timedelta(hours=1), NOW + timedelta(minutes=5), "normal")]
    assert store.task_loads([], since=NOW) == []
    assert open_one


def test_task_day_counts_bucket_open_tasks_by_due_day_and_done_ones_by_day_done(store):
    cs = [add_contact(store, f"d{i}@x.example") for i in range(5)]
    midnight = NOW - timedelta(hours=3)
    task(store, cs[0], due=-timedelta(days=2))            # overdue: today
    task(store, cs[1], due=timedelta(hours=1))            # today
    task(store, cs[2], due=timedelta(days=1, hours=1))    # tomorrow
    done = task(store, cs[3])
    store.complete_task(done, outcome="connected", notes=None, now=NOW)
    task(store, cs[4], rep="aoki")
    counts = store.task_day_counts({"baker": midnight, "nobody": midnight})
    assert dict(counts["baker"].open) == {0: 2, 1: 1} and dict(counts["baker"].done) == {0: 1}
    assert not counts["nobody"].open and not counts["nobody"].done
