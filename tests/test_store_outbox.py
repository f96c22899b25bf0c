"""The outbox: claiming with leases, suppression at claim time, marking, links."""

from __future__ import annotations

import threading
from datetime import timedelta

from nurture.store import open_store
from tests._send_worker import seed

LEASE = timedelta(minutes=5)


def test_claim_takes_due_rows_oldest_first_with_a_lease(store, now):
    ids = seed(store, n=5, now=now)
    move = "UPDATE sends SET next_attempt_at = ? WHERE id = ?"
    store.conn.execute(move, ((now + timedelta(hours=1)).timestamp(), ids[0]))
    store.conn.execute(move, ((now - timedelta(hours=1)).timestamp(), ids[4]))
    got = store.claim_sends(owner="a", now=now, lease=LEASE, limit=3)
    assert [s.id for s in got] == [ids[4], ids[1], ids[2]]
    assert {s.status for s in got} == {"sending"}
    row = store.query_one("SELECT lease_owner, lease_until FROM sends WHERE id = ?", (ids[4],))
    assert row == {"lease_owner": "a", "lease_until": (now + LEASE).timestamp()}
    # the rest: one more due now, one not due yet
    assert [s.id for s in store.claim_sends(owner="b", now=now, lease=LEASE, limit=10)] == [ids[3]]
    assert store.claim_sends(owner="b", now=now, lease=LEASE, limit=10) == []


def test_expired_lease_is_reclaimed_and_keeps_its_message_id(store, now):
    [sid] = seed(store, n=1, now=now)
    [s] = store.claim_sends(owner="crashed", now=now, lease=LEASE, limit=10)
    store.set_message_id(s.id, "<m1@x>")
    assert store.claim_sends(owner="b", now=now + LEASE - timedelta(seconds=1), lease=LEASE, limit=10) == []
    [again] = store.claim_sends(owner="b", now=now + LEASE + timedelta(seconds=1), lease=LEASE, limit=10)
    assert again.id == sid and again.message_id == "<m1@x>"
    assert store.query_one("SELECT lease_owner FROM sends WHERE id = ?", (sid,))["lease_owner"] == "b"


def test_suppressed_contact_and_exited_enrollment_are_not_sent(store, now):
    ids = seed(store, n=3, now=now)
    c1 = store.get_send(ids[0]).contact_id
    store.conn.execute("INSERT INTO suppressions (email_key, reason, at) SELECT email_key, 'unsubscribed', 0"
                       " FROM contacts WHERE id = ?", (c1,))
    e2 = store.get_send(ids[1]).enrollment_id
    store.conn.execute("UPDATE enrollments SET state = 'exited' WHERE id = ?", (e2,))
    got = {s.id: s.status for s in store.claim_sends(owner="a", now=now, lease=LEASE, limit=10)}
    assert got == {ids[0]: "suppressed", ids[1]: "skipped", ids[2]: "sending"}
    assert store.outbox_counts() == {"suppressed": 1, "skipped": 1, "sending": 1}
    assert store.query_one("SELECT lease_owner FROM sends WHERE id = ?", (ids[0],))["lease_owner"] is None
    assert [e.kind for e in store.events()] == ["send.suppressed", "send.skipped"]


def test_two_claimers_on_two_connections_never_share_a_row(db_path, now):
    first = open_store(db_path)
    seed(first, n=400, now=now)
    first.close()
    got: dict[str, list[int]] = {"a": [], "b": []}

    def claim(owner: str) -> None:
        s = open_store(db_path)
        while batch := s.claim_sends(owner=owner, now=now, lease=LEASE, limit=7):
            got[owner].extend(x.id for x in batch)
        s.close()

    threads = [threading.Thread(target=claim, args=(o,)) for o in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got["a"]) & set(got["b"])
    assert len(got["a"]) + len(got["b"]) == 400


def test_mark_sent_sets_delivery_time_and_schedules_the_next_step(store, now):
    [sid] = seed(store, n=1, now=now, next_wait=3 * 86400)
    store.claim_sends(owner="a", now=now, lease=LEASE, limit=1)
    later = now + timedelta(seconds=7)
    assert store.mark_sent(sid, now=later) is True
    s = store.get_send(sid)
    assert (s.status, s.sent_at, s.attempts) == ("sent", later, 1)
    e = store.query_one("SELECT last_sent_at, next_at FROM enrollments WHERE id = ?", (s.enrollment_id,))
    assert e == {"last_sent_at": later.timestamp(), "next_at": later.timestamp() + 3 * 86400}
    assert store.mark_sent(sid, now=later + timedelta(hours=1)) is False  # idempotent
    assert store.get_send(sid).sent_at == later
    assert [e.kind for e in store.events()] == ["send.sent"]


def test_mark_sent_leaves_next_at_alone_without_next_wait(store, now):
    [sid] = seed(store, n=1, now=now)
    store.mark_sent(sid, now=now)
    e = store.query_one("SELECT last_sent_at, next_at FROM enrollments")
    assert e == {"last_sent_at": now.timestamp(), "next_at": None}


def test_mark_retry_then_release_and_reclaim(store, now):
    [sid] = seed(store, n=1, now=now)
    store.claim_sends(owner="a", now=now, lease=LEASE, limit=1)
    store.mark_retry(sid, next_at=now + timedelta(minutes=2), code=451, error="451 4.3.0 later", enhanced="4.3.0")
    s = store.get_send(sid)
    assert (s.status, s.attempts, s.error_code) == ("retry", 1, 451)
    assert store.claim_sends(owner="a", now=now + timedelta(minutes=1), lease=LEASE, limit=1) == []
    [s] = store.claim_sends(owner="a", now=now + timedelta(minutes=2), lease=LEASE, limit=1)
    assert store.release_sends([sid], owner="other") == 0
    assert store.release_sends([sid], owner="a") == 1
    assert store.get_send(sid).status == "retry"  # it was attempted before


def test_hard_bounce_suppresses_and_exits_enrollments(store, now):
    ids = seed(store, n=2, now=now)
    kind = store.mark_failed(ids[0], now=now, code=550, enhanced="5.1.1", error="550 5.1.1 no such user")
    assert kind == "bounced"
    c = store.get_send(ids[0]).contact_id
    email = store.query_one("SELECT email FROM contacts WHERE id = ?", (c,))["email"]
    assert store.query_one("SELECT reason FROM suppressions WHERE email_key = ?", (email,))["reason"] == "bounced"
    assert store.query_one("SELECT state, exit_reason FROM enrollments WHERE contact_id = ?", (c,)) == \
        {"state": "exited", "exit_reason": "bounced"}
    assert store.query_one("SELECT status FROM contacts WHERE id = ?", (c,))["status"] == "bounced"
    other = store.get_send(ids[1]).contact_id
    assert store.query_one("SELECT state FROM enrollments WHERE contact_id = ?", (other,))["state"] == "active"
    assert [e.kind for e in store.events()] == ["send.bounced"]


def test_policy_block_is_recorded_but_does_not_blame_the_recipient(store, now):
    [sid] = seed(store, n=1, now=now)
    kind = store.mark_failed(sid, now=now, code=550, enhanced="5.7.1", error="550 5.7.1 rejected by policy")
    assert kind == "blocked"
    assert store.query_one("SELECT status, error_code, error_enhanced FROM sends") == \
        {"status": "failed", "error_code": 550, "error_enhanced": "5.7.1"}
    assert store.query("SELECT * FROM suppressions") == []
    assert store.query_one("SELECT state FROM enrollments")["state"] == "active"
    [ev] = store.events()
    assert ev.kind == "send.failed" and ev.payload["policy"] is True


def test_552_is_failed_not_bounced(store, now):
    [sid] = seed(store, n=1, now=now)
    assert store.mark_failed(sid, now=now, code=552, enhanced="5.3.4", error="552 too big") == "failed"
    assert store.query("SELECT * FROM suppressions") == []


def test_link_id_get_or_create_is_cached(store):
    a = store.link_id("c1", "s1", "pricing", "https://acme.example/pricing", False)
    b = store.link_id("c1", "s1", "pricing", "https://acme.example/pricing", False)
    c = store.link_id("c1", "s2", "pricing", "https://acme.example/pricing", False)
    h = store.link_id("c1", "s1", "hp", "https://acme.example/hp", True)
    assert a == b != c
    assert store.query_one("SELECT honeypot FROM links WHERE id = ?", (h,))["honeypot"] == 1
    store.conn.execute("DELETE FROM links")  # the cache answers without the database
    assert store.link_id("c1", "s1", "pricing", "https://acme.example/pricing", False) == a


def test_a_contact_suppressed_after_queueing_leaves_its_enrollments(store, now):
    ids = seed(store, n=2, now=now, next_wait=86400)
    c1 = store.get_send(ids[0]).contact_id
    store.suppress("user1@example.com", "bounced", now=now)
    got = {s.id: s.status for s in store.claim_sends(owner="a", now=now, lease=LEASE, limit=10)}
    assert got == {ids[0]: "suppressed", ids[1]: "sending"}
    assert store.query("SELECT contact_id, state, exit_reason FROM enrollments ORDER BY id") == [
        {"contact_id": c1, "state": "exited", "exit_reason": "bounced"},
        {"contact_id": store.get_send(ids[1]).contact_id, "state": "active", "exit_reason": None}]


def test_a_failed_step_lets_the_enrollment_go_on(store, now):
    [sid] = seed(store, n=1, now=now, next_wait=7 * 86400)
    store.claim_sends(owner="a", now=now, lease=LEASE, limit=1)
    assert store.mark_failed(sid, now=now, code=552, enhanced="5.3.4", error="552 too big") == "failed"
    e = store.query_one("SELECT state, next_at FROM enrollments")
    assert e == {"state": "active", "next_at": now.timestamp() + 7 * 86400}


def test_claim_can_skip_campaigns_without_walking_their_backlog(store, now):
    slow = seed(store, n=30, now=now - timedelta(hours=1), campaign="slow")
    fast = seed(store, n=5, now=now, campaign="fast")
    other = seed(store, n=3, now=now - timedelta(minutes=1), campaign="other")
    got = store.claim_sends(owner="a", now=now, lease=LEASE, limit=6, skip_campaigns=["slow"])
    assert [s.id for s in got] == other + fast[:3]
    with_slow = store.claim_sends(owner="a", now=now, lease=LEASE, limit=4)
    assert [s.id for s in with_slow] == slow[:4]
