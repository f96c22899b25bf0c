"""nurture.relay: the adaptive pool, AIMD rate and pauses, on an injected clock."""

from __future__ import annotations

import pytest

from nurture.relay import MAX_HOLD, RelayGovernor
from nurture.store.relay import RelayState


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def governor(clock: Clock, **kw: object) -> RelayGovernor:
    args: dict[str, object] = {"name": "relay:25", "max_rate": 20.0, "max_pool": 8, "clock": clock,
                               "wall": lambda: clock.t + 1e9, **kw}
    return RelayGovernor(**args)  # type: ignore[arg-type]


def send(g: RelayGovernor, clock: Clock, n: int, *, every: float) -> None:
    for _ in range(n):
        g.accepted()
        clock.t += every


def test_a_rate_refusal_halves_the_rate_and_pauses_until_the_window_has_room(clock: Clock) -> None:
    g = governor(clock)
    assert (g.rate, g.pool) == (20.0, 8)
    send(g, clock, 50, every=0.05)  # 50 accepted from t=1000 to t=1002.5
    assert g.rate == 20.0  # never above the configured rate
    assert g.rate_refused("MAIL FROM: 450 4.7.1 Error: too much mail") is True
    assert g.rate == 10.0
    # no transaction before the oldest accepted message leaves the relay's minute
    assert g.try_take() == pytest.approx(1000 + 62 - clock.t)
    # messages that were in flight are refused too: same episode, no second cut
    assert g.rate_refused("MAIL FROM: 450 4.7.1 Error: too much mail") is False
    assert g.rate == 10.0 and g.throttled == 2
    clock.t = 1062.01
    assert g.try_take() == 0.0


def test_the_next_pause_counts_from_the_first_message_after_the_last_one(clock: Clock) -> None:
    g = governor(clock)
    send(g, clock, 50, every=0.1)  # t 1000 .. 1005
    g.rate_refused("450 4.7.1")
    clock.t = g.hold_until  # 1062: the relay's next window
    send(g, clock, 50, every=0.05)  # 1062 .. 1064.5, while the first window's last ones are < 60 s old
    g.rate_refused("450 4.7.1")
    assert g.hold_until == pytest.approx(1062 + 62)  # not 1005 + 62: those belonged to the last window


def test_the_rate_never_drops_below_what_the_relay_took_in_its_window(clock: Clock) -> None:
    g = governor(clock, max_rate=1.0)
    send(g, clock, 50, every=1.0)  # 50 in the last 60 s at 1/s
    g.rate_refused("450 4.7.1 slow down")
    assert g.rate == pytest.approx(50 / 60)  # not 0.5: the relay just took 50 a minute


def test_repeated_refusals_with_nothing_accepted_back_off_up_to_ten_minutes(clock: Clock) -> None:
    g = governor(clock)
    holds = []
    for _ in range(10):
        assert g.rate_refused("421 4.7.0 come back later")
        holds.append(g.wait())
        clock.t += holds[-1]
    assert holds[:4] == [5.0, 10.0, 20.0, 40.0] and holds[-1] == MAX_HOLD
    assert g.rate == 10.0  # cut once: the window is full, the rate is not the problem


def test_accepted_mail_raises_the_rate_additively(clock: Clock) -> None:
    g = governor(clock)
    send(g, clock, 40, every=0.05)
    g.rate_refused("450 4.7.1")
    cut = g.rate
    clock.t = g.hold_until
    send(g, clock, int(cut), every=1 / cut)  # about a second's worth of sending
    assert cut + 0.9 <= g.rate <= cut + 1.1  # 5 % of the configured rate per second of sending


def test_refused_connections_shrink_the_pool_to_those_open_and_it_grows_back(clock: Clock) -> None:
    g = governor(clock, grow_after=30.0)
    g.connection_refused("connect: 421 4.7.0 too many connections", open_now=6)  # others still connecting
    g.connection_refused("connect: 421 4.7.0 too many connections", open_now=4)
    g.connection_refused("connect: 421 4.7.0 too many connections", open_now=5)  # never grows on a refusal
    assert g.pool == 4 and g.refused == 3 and g.connect_wait() == 0.0
    g.connection_refused("connect: 421 4.7.0 too many connections", open_now=3)  # the cap is shared now
    assert g.pool == 3
    clock.t += 61
    g.accepted()
    assert g.pool == 4
    clock.t += 31
    g.accepted()
    assert g.pool == 5  # a quiet spell of accepted mail: one more
    clock.t += 1
    g.connection_refused("connect: 421 4.7.0 too many connections", open_now=4)
    assert g.pool == 4
    clock.t += 31
    g.accepted()
    assert g.pool == 4  # the failed growth doubled the wait
    clock.t += 30
    g.accepted()
    assert g.pool == 5
    for _ in range(100):
        clock.t += 700
        g.accepted()
    assert g.pool == 8  # never above smtp.max_connections


def test_no_connection_at_all_backs_off_and_keeps_one_slot(clock: Clock) -> None:
    g = governor(clock)
    waits = []
    for _ in range(8):
        g.connection_refused("connect to relay:25 failed: refused", open_now=0)
        waits.append(g.connect_wait())
    assert g.pool == 1 and waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0] and g.unreachable == 8
    g.connected()
    assert g.connect_wait() == 0.0 and g.unreachable == 0


def test_the_belief_survives_a_restart_and_stays_within_the_configured_limits(clock: Clock) -> None:
    g = governor(clock)
    send(g, clock, 50, every=0.05)
    g.rate_refused("MAIL FROM: 450 4.7.1 too much mail")
    g.connection_refused("connect: 421", open_now=3)
    state = g.state()
    assert (state.rate, state.pool, state.last_reply) == (10.0, 3, "connect: 421")
    assert state.hold_until == pytest.approx(clock.t + 1e9 + g.wait())
    again = governor(clock, state=state)
    assert (again.rate, again.pool) == (10.0, 3) and again.wait() == pytest.approx(g.wait())
    lowered = governor(clock, state=state, max_rate=5.0, max_pool=2)
    assert (lowered.rate, lowered.pool) == (5.0, 2)
    assert "pool 3/8" in g.view().describe() and "rate 10/s of 20/s" in g.view().describe()


def test_a_lower_rate_stored_by_another_sender_is_adopted(clock: Clock) -> None:
    g = governor(clock)
    other = RelayState(name="relay:25", rate=2.0, pool=1, hold_until=clock.t + 1e9 + 30, last_reply="450 4.7.1",
                       last_reply_at=clock.t + 1e9, updated_at=clock.t + 1e9)
    g.adopt(other)
    assert g.rate == 2.0 and g.pool == 8 and g.wait() == pytest.approx(30) and g.last_reply == "450 4.7.1"


def test_a_full_window_is_stored_as_a_pause_so_a_restart_waits_for_it(clock: Clock) -> None:
    g = governor(clock)
    send(g, clock, 50, every=0.05)
    g.rate_refused("450 4.7.1")  # the relay takes 50 a window
    clock.t = g.hold_until
    start = clock.t
    send(g, clock, 50, every=0.05)  # the next window filled to the same 50, no refusal yet
    state = g.state()
    assert state.hold_until == pytest.approx(start + 62 + 1e9)
    again = governor(clock, state=state)
    assert again.wait() == pytest.approx(start + 62 - clock.t)
    send(g, clock, 0, every=0)
    fresh = governor(clock)
    send(fresh, clock, 50, every=0.05)
    assert fresh.state().hold_until is None  # no cap learned yet: nothing to predict
