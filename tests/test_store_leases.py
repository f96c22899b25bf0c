"""nurture.store.leases: heartbeats, lease holders, and taking back the rows of gone senders."""

from __future__ import annotations

from datetime import timedelta

from nurture.liveness import ProcessId
from tests._send_worker import seed

LEASE = timedelta(minutes=10)
A = ProcessId(machine="m1", pid=101, started="5")
B = ProcessId(machine="m2", pid=202, started=None)


def test_holders_name_owner_rows_lease_and_heartbeat(store, now):
    seed(store, n=5, now=now)
    store.register_sender("a", process=A, now=now)
    store.claim_sends(owner="a", now=now, lease=LEASE, limit=3)
    store.claim_sends(owner="legacy", now=now, lease=LEASE, limit=2)
    by = {h.owner: h for h in store.lease_holders()}
    assert set(by) == {"a", "legacy"}
    assert (by["a"].rows, by["a"].process, by["a"].until) == (3, A, now + LEASE)
    assert by["a"].beat_at == now
    assert by["legacy"].process is None and by["legacy"].rows == 2
    store.register_sender("a", process=A, now=now + timedelta(seconds=10))  # a renewal
    assert {h.owner: h for h in store.lease_holders()}["a"].beat_at == now + timedelta(seconds=10)


def test_recover_gives_the_rows_back_due_at_once_and_forgets_the_owner(store, now):
    ids = seed(store, n=4, now=now)
    store.register_sender("dead", process=A, now=now)
    store.register_sender("live", process=B, now=now)
    store.claim_sends(owner="dead", now=now, lease=LEASE, limit=2)
    store.conn.execute("UPDATE sends SET attempts = 1 WHERE id = ?", (ids[1],))
    store.claim_sends(owner="live", now=now, lease=LEASE, limit=2)
    assert store.recover_leases(["dead"], now=now) == 2
    statuses = {r["id"]: r["status"] for r in store.query("SELECT id, status FROM sends")}
    assert statuses == {ids[0]: "queued", ids[1]: "retry", ids[2]: "sending", ids[3]: "sending"}
    assert [h.owner for h in store.lease_holders()] == ["live"]
    assert store.query("SELECT owner FROM senders") == [{"owner": "live"}]
    # due now, long before the dead sender's lease would have lapsed
    got = store.claim_sends(owner="next", now=now + timedelta(seconds=1), lease=LEASE, limit=10)
    assert sorted(s.id for s in got) == ids[:2]
    assert store.recover_leases([], now=now) == 0
    store.unregister_sender("live")
    assert store.query("SELECT owner FROM senders") == []
