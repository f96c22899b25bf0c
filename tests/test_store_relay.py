"""nurture.store.relay: what the sender learned about its relay, stored across runs (both backends)."""

from __future__ import annotations

from nurture.store import Store, open_store
from nurture.store.relay import RelayState, relay_name


def test_a_relay_belief_is_stored_replaced_and_read_back(store: Store) -> None:
    name = relay_name("smtp.example.net", 587)
    assert name == "smtp.example.net:587" and store.relay_state(name) is None
    first = RelayState(name=name, rate=20.0, pool=8, hold_until=None, last_reply=None, last_reply_at=None,
                       updated_at=1_800_000_000.0)
    store.save_relay_state(first)
    assert store.relay_state(name) == first
    learned = RelayState(name=name, rate=0.8333, pool=4, hold_until=1_800_000_057.5,
                         last_reply="MAIL FROM: 450 4.7.1 Error: too much mail from 127.0.0.1",
                         last_reply_at=1_800_000_002.5, updated_at=1_800_000_002.6)
    store.save_relay_state(learned)
    assert store.relay_state(name) == learned
    other = RelayState(name="a:25", rate=1.0, pool=1, hold_until=None, last_reply="connect: 421",
                       last_reply_at=1.0, updated_at=2.0)
    store.save_relay_state(other)
    assert store.relay_states() == [other, learned]


def test_the_belief_outlives_the_connection(db_path: str) -> None:
    s = open_store(db_path)
    state = RelayState(name="r:25", rate=2.5, pool=3, hold_until=None, last_reply=None, last_reply_at=None,
                       updated_at=5.0)
    s.save_relay_state(state)
    s.close()
    again = open_store(db_path)
    assert again.relay_state("r:25") == state
    again.close()
