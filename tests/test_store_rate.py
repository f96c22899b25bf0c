"""nurture.store.rate: the send-rate bucket shared by every sender on the database.

The bucket refills by the database's own clock, which a test cannot set; the rates here are
either slow enough (one an hour) that the time a test takes refills nothing, or the assertions
allow for what a slow machine's seconds can refill."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.store import Store, open_store
from nurture.store.rate import BUCKET, RatedClaim, bucket_burst
from nurture.timeutil import Rate
from tests._send_worker import seed

LEASE = timedelta(minutes=5)
HOURLY = Rate(1, 3600)  # a burst of one, then one an hour


def claim(store: Store, now, *, rate: Rate = HOURLY, limit: int = 50, owner: str = "a", **kw) -> RatedClaim:
    return store.claim_sends_rated(owner=owner, now=now, lease=LEASE, limit=limit, rate=rate, **kw)


@pytest.mark.parametrize(("rate", "burst"), [(Rate(20, 1), 20.0), (Rate(120, 60), 2.0), (Rate(1000, 3600), 1.0),
                                             (Rate(0.5, 1), 1.0), (Rate(2.5, 1), 2.5)])
def test_the_burst_is_one_seconds_worth_and_at_least_one(rate: Rate, burst: float) -> None:
    assert bucket_burst(rate) == burst


def test_a_new_bucket_is_full_and_claims_take_a_token_each(store, now):
    seed(store, n=20, now=now)
    assert store.rate_state() is None
    got = claim(store, now, rate=Rate(10, 1), limit=3)
    assert [s.status for s in got.sends] == ["sending"] * 3 and got.wait == 0.0
    # 10 at first, 3 taken; the refill is capped at the burst, so nothing came back meanwhile
    assert store.rate_state()["tokens"] == pytest.approx(7.0)
    got = claim(store, now, rate=Rate(10, 1), limit=50)
    assert len(got.sends) == 7  # whole tokens only: what the bucket held, not the limit
    assert store.rate_state()["tokens"] < 1.0


def test_an_empty_bucket_with_rows_due_says_how_long_to_wait(store, now):
    ids = seed(store, n=3, now=now)
    first = claim(store, now)
    assert [s.id for s in first.sends] == [ids[0]]
    second = claim(store, now, owner="b")
    assert second.sends == [] and 3590 < second.wait <= 3600
    assert store.outbox_counts() == {"sending": 1, "queued": 2}


def test_nothing_due_means_no_wait_even_when_the_bucket_is_empty(store, now):
    seed(store, n=2, now=now + timedelta(hours=1))  # not due yet
    store.conn.execute("UPDATE rate_state SET tokens = 0")  # no bucket yet: a no-op
    assert claim(store, now) == RatedClaim(sends=[], wait=0.0)
    assert store.rate_state()["tokens"] == pytest.approx(1.0)  # full: nothing was handed out
    store.conn.execute("UPDATE rate_state SET tokens = 0")
    assert claim(store, now) == RatedClaim(sends=[], wait=0.0)  # the sender idles, it does not poll
    assert claim(store, now + timedelta(hours=2)).wait > 3590  # once rows are due, it waits for a token


def test_suppressed_and_skipped_rows_cost_no_token(store, now):
    ids = seed(store, n=4, now=now)
    c0 = store.get_send(ids[0]).contact_id
    store.conn.execute("INSERT INTO suppressions (email_key, reason, at) SELECT email_key, 'unsubscribed', 0"
                       " FROM contacts WHERE id = ?", (c0,))
    store.conn.execute("UPDATE enrollments SET state = 'exited' WHERE id = ?", (store.get_send(ids[1]).enrollment_id,))
    statuses = []
    for _ in range(3):
        statuses += [(s.id, s.status) for s in claim(store, now).sends]
    assert statuses == [(ids[0], "suppressed"), (ids[1], "skipped"), (ids[2], "sending")]
    assert claim(store, now).wait > 3590  # the one token went to the row that is delivered


def test_senders_on_other_connections_share_the_one_bucket(store, db_path, now):
    seed(store, n=4, now=now)
    other = open_store(db_path)
    try:
        assert len(claim(store, now).sends) == 1
        late = claim(other, now, owner="b")
        assert late.sends == [] and late.wait > 3590
        assert claim(other, now, owner="b", bucket="campaign:news").sends  # another bucket has its own tokens
        assert {r["name"] for r in store.query("SELECT name FROM rate_state")} == {BUCKET, "campaign:news"}
    finally:
        other.close()


def test_skipped_campaigns_are_neither_claimed_nor_waited_for(store, now):
    seed(store, n=2, now=now, campaign="held")
    kept = seed(store, n=1, now=now, campaign="open")
    got = claim(store, now, skip_campaigns=["held"])
    assert [s.id for s in got.sends] == kept
    assert claim(store, now, skip_campaigns=["held"]) == RatedClaim(sends=[], wait=0.0)
    assert claim(store, now).wait > 3590  # the held campaign's rows are due, and the bucket is empty


def test_a_slowdown_drops_the_burst_and_refills_at_the_slow_factor(store, now):
    seed(store, n=30, now=now)
    rate = Rate(10, 1)
    assert len(claim(store, now, rate=rate, limit=2).sends) == 2  # creates the bucket: 8 left
    store.slow_shared_rate(seconds=30)
    state = store.rate_state()
    assert state["tokens"] == pytest.approx(1.0) and state["slow_until"] > state["updated_at"] + 29
    assert len(claim(store, now, rate=rate, slow_factor=0.01).sends) == 1
    # 0.1 a second now (10/s × 0.01): the next token is some ten seconds off, not a tenth of one
    assert 9 < claim(store, now, rate=rate, slow_factor=0.01).wait <= 10
    until = store.rate_state()["slow_until"]
    store.slow_shared_rate(seconds=5)  # a shorter slowdown does not cut the running one short
    assert store.rate_state()["slow_until"] == until


def test_any_due_counts_lapsed_leases(store, now):
    [sid] = seed(store, n=1, now=now)
    assert store.any_due(now=now) and not store.any_due(now=now - timedelta(seconds=1))
    store.claim_sends(owner="crashed", now=now, lease=LEASE, limit=1)
    assert not store.any_due(now=now + LEASE - timedelta(seconds=1))
    assert store.any_due(now=now + LEASE + timedelta(seconds=1))  # the crashed sender's lease lapsed
    assert not store.any_due(now=now + LEASE + timedelta(seconds=1), skip_campaigns=["c1"])
    store.mark_sent(sid, now=now)
    assert not store.any_due(now=now + timedelta(days=1))
