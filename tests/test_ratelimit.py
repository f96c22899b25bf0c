"""nurture.ratelimit: token buckets in real units, several rates at once, slowdowns; the
clock is passed in, so every wait is exact."""

from __future__ import annotations

import asyncio
import time

import pytest

from nurture.ratelimit import RateLimiter
from nurture.timeutil import Rate, parse_rate

#: Just past the moment a token is due (float sums such as 100 + 3.6 are not exact).
EPS = 1e-9


class Clock:
    """Monotonic seconds, moved by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def takes(lim: RateLimiter, n: int) -> list[float]:
    return [lim.try_take() for _ in range(n)]


def test_the_burst_is_one_seconds_worth_then_the_rate() -> None:
    clock = Clock()
    lim = RateLimiter([parse_rate("20/s")], clock=clock)
    assert takes(lim, 20) == [0.0] * 20
    assert lim.try_take() == pytest.approx(0.05)
    assert lim.try_take() == pytest.approx(0.05)  # a refusal takes nothing
    clock.t += 0.5
    assert takes(lim, 10) == [0.0] * 10  # ten refilled in half a second
    assert lim.try_take() == pytest.approx(0.05)
    clock.t += 60
    assert takes(lim, 20) == [0.0] * 20 and lim.try_take() > 0  # refills up to the burst, no more


@pytest.mark.parametrize(("rate", "wait"), [(Rate(1000, 3600), 3.6), (Rate(1, 60), 60.0), (Rate(0.5, 1), 2.0)])
def test_slow_rates_pace_one_message_at_a_time(rate: Rate, wait: float) -> None:
    clock = Clock()
    lim = RateLimiter([rate], clock=clock)
    assert lim.try_take() == 0.0  # at least one message of burst
    assert lim.try_take() == pytest.approx(wait)
    clock.t += wait / 2
    assert lim.try_take() == pytest.approx(wait / 2)
    clock.t += wait / 2 + EPS
    assert lim.try_take() == 0.0


def test_every_rate_must_allow_it_and_the_strictest_wait_is_returned() -> None:
    clock = Clock()
    lim = RateLimiter([Rate(20, 1), Rate(1000, 3600)], clock=clock)
    assert lim.try_take() == 0.0
    assert lim.try_take() == pytest.approx(3.6)  # 20/s has tokens, 1000/h has none
    clock.t += 3.6 + EPS
    assert lim.try_take() == 0.0
    both = RateLimiter([Rate(20, 1), Rate(10, 1)], clock=clock)
    assert takes(both, 10) == [0.0] * 10 and both.try_take() == pytest.approx(0.1)


def test_a_slowdown_drops_the_burst_runs_at_the_factor_then_ends() -> None:
    clock = Clock()
    lim = RateLimiter([Rate(20, 1)], clock=clock)
    lim.slow(factor=0.5, seconds=60)
    assert lim.factor == 0.5 and lim.slowdowns == 1
    assert lim.try_take() == 0.0  # one token is left of the full bucket
    assert lim.try_take() == pytest.approx(0.1)  # 10/s now
    clock.t += 1.0
    assert takes(lim, 10) == [0.0] * 10 and lim.try_take() > 0  # a second refills 10, not 20
    clock.t += 59.0
    assert lim.factor == 1.0
    clock.t += 1.0
    assert takes(lim, 20) == [0.0] * 20


def test_slowdowns_stack_to_the_lowest_factor_and_the_latest_end() -> None:
    clock = Clock()
    lim = RateLimiter([Rate(20, 1)], clock=clock)
    lim.slow(factor=0.5, seconds=60)
    clock.t += 10
    lim.slow(factor=0.8, seconds=5)  # milder and shorter: changes neither
    assert lim.factor == 0.5 and lim.slowdowns == 2
    clock.t += 45
    assert lim.factor == 0.5  # 55 s in: the first slowdown still runs
    lim.slow(factor=0.25, seconds=30)
    assert lim.factor == 0.25
    clock.t += 29
    assert lim.factor == 0.25
    clock.t += 1
    assert lim.factor == 1.0


def test_a_clock_that_steps_back_gives_no_tokens() -> None:
    clock = Clock()
    lim = RateLimiter([Rate(20, 1)], clock=clock)
    takes(lim, 20)
    clock.t -= 30
    assert lim.try_take() == pytest.approx(0.05)
    clock.t += 0.05 + EPS
    assert lim.try_take() == 0.0


async def test_acquire_waits_for_a_token_on_the_real_clock() -> None:
    lim = RateLimiter([Rate(20, 1)])
    assert takes(lim, 20) == [0.0] * 20
    started = time.monotonic()
    assert await lim.acquire() is True
    assert 0.03 <= time.monotonic() - started < 1.0


async def test_acquire_gives_up_without_a_token_when_stopped() -> None:
    lim = RateLimiter([Rate(1, 3600)])
    assert lim.try_take() == 0.0
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    assert await lim.acquire(stop) is False  # not an hour later
    assert time.monotonic() - started < 1.0
    assert await lim.acquire(stop) is False  # already stopped: at once
