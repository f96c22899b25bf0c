"""``periodic``: the one loop every background part runs in."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from nurture.periodic import periodic


async def _run_for(seconds: float, stop: asyncio.Event, job: asyncio.Task[None]) -> None:
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(job, 1)


async def test_rounds_follow_the_timer_and_stop_ends_the_wait_at_once():
    stop, rounds = asyncio.Event(), []

    async def step() -> bool:
        rounds.append(time.monotonic())
        return False

    job = asyncio.create_task(periodic(stop, 0.1, step=step, name="t"))
    await asyncio.sleep(0.35)
    t0 = time.monotonic()
    stop.set()
    await asyncio.wait_for(job, 1)
    assert time.monotonic() - t0 < 0.05  # not the rest of the interval
    assert 3 <= len(rounds) <= 5


async def test_a_backlog_runs_the_next_round_soon():
    stop, rounds = asyncio.Event(), []

    async def step() -> bool:
        rounds.append(1)
        return len(rounds) < 5  # a backlog for four rounds

    job = asyncio.create_task(periodic(stop, 30, step=step, name="t"))
    await _run_for(0.5, stop, job)
    assert len(rounds) == 5  # then the 30 s timer


async def test_a_wake_starts_the_next_round_after_the_delay():
    stop, wake, rounds = asyncio.Event(), asyncio.Event(), []

    async def step() -> bool:
        rounds.append(time.monotonic())
        return False

    job = asyncio.create_task(periodic(stop, 30, wake, step=step, name="t", after_wake=0.2))
    await asyncio.sleep(0.05)
    woken = time.monotonic()
    wake.set()
    await asyncio.sleep(0.4)
    await _run_for(0, stop, job)
    assert len(rounds) == 2
    assert 0.18 <= rounds[1] - woken < 0.35


async def test_a_wake_that_cannot_be_sooner_than_the_timer_is_ignored():
    stop, wake, rounds = asyncio.Event(), asyncio.Event(), []

    async def step() -> bool:
        rounds.append(1)
        return False

    # every 0.1 s, but a wake would wait 1 s: the timer wins, the wake changes nothing.
    job = asyncio.create_task(periodic(stop, 0.1, wake, step=step, name="t", after_wake=1.0))
    wake.set()
    await _run_for(0.35, stop, job)
    assert len(rounds) >= 3


async def test_a_failed_round_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture):
    stop, rounds = asyncio.Event(), []

    async def step() -> bool:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("database locked")
        return False

    with caplog.at_level(logging.ERROR, logger="nurture.parts"):
        job = asyncio.create_task(periodic(stop, 0.05, step=step, name="settle"))
        await _run_for(0.2, stop, job)
    assert len(rounds) >= 2
    assert "settle: round failed" in caplog.text and "database locked" in caplog.text
