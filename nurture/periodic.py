"""One loop for every background part: run a round, wait, repeat until stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("nurture.parts")

#: How soon a round that left a backlog runs again: soon, but the event loop breathes.
BACKLOG_PAUSE = 0.05


async def periodic(stop: asyncio.Event, every: float, wake: asyncio.Event | None = None, *,
                   step: Callable[[], Awaitable[bool]], name: str, after_wake: float = 0.0) -> None:
    """Run ``step()`` until ``stop`` is set: every ``every`` seconds, sooner when ``wake`` is set.

    ``step`` returns True when it left work behind (a backlog), and then runs again after
    :data:`BACKLOG_PAUSE`. A wake-up starts the next round ``after_wake`` seconds after it
    (the settle pass waits for the new clicks' window; follow-up starts at once); a wake-up
    that could not come sooner than the timer is ignored. An exception in a round is logged
    and the loop goes on: every part keeps its state in the database, so the next round
    picks up where the failed one stopped.
    """
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        backlog = False
        try:
            backlog = await step()
        except Exception:
            log.exception("%s: round failed", name)
        wait = BACKLOG_PAUSE if backlog else every
        woken = await _first(stop, wake if after_wake < wait else None, timeout=wait)
        if woken and after_wake > 0:
            await _first(stop, None, timeout=after_wake)


async def _first(stop: asyncio.Event, wake: asyncio.Event | None, *, timeout: float) -> bool:
    """Wait until ``stop`` or ``wake`` is set, or ``timeout``; True when woken (not stopped)."""
    if stop.is_set():
        return False
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return wake is not None and wake.is_set() and not stop.is_set()
