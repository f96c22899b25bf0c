"""What the sender believes about its SMTP relay, and how it learns it.

A relay publishes its limits only by refusing: a connection beyond its cap gets ``421`` at
the greeting (or no answer at all), a message beyond its rate gets ``421`` / ``450 4.7.x`` /
``451 4.7.x`` ("too much mail"). :class:`RelayGovernor` turns those refusals into two numbers
and a pause, and never charges them to a message:

- **pool**: the connections the sender keeps open. A refused connection shrinks it to the
  connections that are open (at least one); after a quiet spell of accepted mail it grows by
  one, and each refusal doubles the spell before the next try.
- **rate**: messages per second, additive increase and multiplicative decrease (AIMD). A
  rate refusal halves it, but never below what the relay just accepted over its window (the
  usual window of a "too much mail" cap is a minute); each accepted message adds a little
  back. Further refusals before anything is accepted only lengthen the pause. It never
  exceeds the configured ``smtp.rate``, as the pool never exceeds ``smtp.max_connections``.
- **hold**: after a rate refusal no transaction starts until the relay's window has room
  again: the oldest message it accepted within the window, plus the window. Refusals that
  arrive during a hold (messages that were in flight) belong to the same episode. A refusal
  with nothing accepted in the window (the quota went to someone else) backs off 5 s, 10 s …
  up to 10 minutes.

The belief is stored (:class:`nurture.store.relay.RelayState`) so a restart starts where the
last run stopped. Time comes in as ``clock`` (monotonic seconds) and ``wall`` (epoch seconds).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from nurture.store.relay import RelayState

#: The window a per-period relay cap is assumed to count over ("50 messages a minute").
WINDOW = 60.0
#: Longest pause after repeated rate refusals, and longest wait before the next pool growth.
MAX_HOLD = 600.0
MAX_GROW_AFTER = 600.0


@dataclass(frozen=True, slots=True)
class RelayView:
    """A snapshot of the belief, for live counters and ``nurture stats``."""

    pool: int
    max_pool: int
    rate: float  # messages per second
    max_rate: float
    hold: float  # seconds left of a pause the relay asked for (0 if none)
    last_reply: str | None

    def describe(self) -> str:
        """``pool 4/8 · rate 0.83/s of 20/s · hold 41s · last "450 4.7.1 …"``."""
        text = f"pool {self.pool}/{self.max_pool} · rate {_per_s(self.rate)} of {_per_s(self.max_rate)}"
        if self.hold > 0:
            text += f" · hold {self.hold:.0f}s"
        if self.last_reply:
            text += f" · last {self.last_reply[:60]!r}"
        return text


def _per_s(rate: float) -> str:
    if rate >= 10:
        return f"{rate:,.0f}/s"
    return f"{rate:.3g}/s" if rate >= 0.1 else f"{rate * 60:.3g}/min"


class RelayGovernor:
    """The adaptive pool size, send rate and pause for one relay (see the module docstring)."""

    def __init__(self, *, name: str, max_rate: float, max_pool: int, state: RelayState | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 window: float = WINDOW, grow_after: float = 30.0, pause: float = 5.0, beta: float = 0.5,
                 increase: float | None = None) -> None:
        self.name = name
        self.max_rate = max_rate
        self.max_pool = max(1, max_pool)
        self.window = window
        self.pause = pause
        self.beta = beta
        # Additive increase: about this many messages/s more per second of accepted sending.
        self.increase = increase if increase is not None else max(max_rate * 0.05, 0.01)
        self.floor = min(max_rate, 1.0 / 3600)
        self._clock, self._wall = clock, wall
        now = clock()
        self.rate = max_rate
        self.pool = self.max_pool
        self.hold_until = now
        self.last_reply: str | None = None
        self.last_reply_at: float | None = None  # wall clock
        if state is not None:
            self.rate = max(self.floor, min(max_rate, state.rate))
            self.pool = max(1, min(self.max_pool, state.pool))
            if state.hold_until is not None:
                self.hold_until = now + max(0.0, state.hold_until - wall())
            self.last_reply, self.last_reply_at = state.last_reply, state.last_reply_at
        self._tokens = 1.0
        self._last = now
        self._accepted: collections.deque[float] = collections.deque()
        self._streak = 0  # rate episodes since the last accepted message
        self._window_from = self.hold_until  # the relay's current window began no earlier
        self.window_cap = 0  # messages the relay took in a window before it refused (0: unknown)
        self._grow_after = grow_after
        self._grow_at = now + grow_after
        self._grew_at: float | None = None
        self._connect_at = now  # no connection attempt before this (all were refused)
        self._connect_backoff = 1.0
        self.refused = 0  # connections refused (this run)
        self.unreachable = 0  # refusals in a row with no connection open at all
        self.throttled = 0  # rate refusals (this run)
        self.changed = state is None  # something worth storing happened since the last save

    # -- pacing -----------------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        burst = max(1.0, self.rate)
        self._tokens = min(burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now

    def try_take(self) -> float:
        """Take a token for one transaction and return 0.0, or return the seconds to wait
        (the pause the relay asked for, or the rate)."""
        now = self._clock()
        self._refill(now)
        if now < self.hold_until:
            return self.hold_until - now
        if self._tokens < 1.0:
            return (1.0 - self._tokens) / self.rate
        self._tokens -= 1.0
        return 0.0

    def wait(self) -> float:
        """Seconds before a transaction could start (nothing taken)."""
        now = self._clock()
        self._refill(now)
        if now < self.hold_until:
            return self.hold_until - now
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait for a token; False (nothing taken) when ``stop`` is set meanwhile."""
        while not stop.is_set():
            wait = self.try_take()
            if wait == 0.0:
                return True
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(wait, 1.0))
            except TimeoutError:
                pass
        return False

    # -- what the relay said ----------------------------------------------------------------

    def accepted(self) -> None:
        """The relay took a message: a little more rate, and in time one more connection."""
        now = self._clock()
        self._accepted.append(now)
        self._trim(now)
        self._streak = 0
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate + self.increase / max(self.rate, self.floor))
            self.changed = True
        if self.pool < self.max_pool and now >= self._grow_at:
            self.pool += 1
            self._grew_at = now
            self._grow_at = now + self._grow_after
            self.changed = True

    def rate_refused(self, reply: str) -> bool:
        """A rate refusal (421, 450/451 4.7.x). Returns True when it opened a new episode
        (the rate was cut and a pause set), False when it came during the pause already set."""
        now = self._clock()
        self.throttled += 1
        self._note(reply)
        if now < self.hold_until:
            return False
        self._trim(now)
        # Only what was accepted since the last pause counts: the relay's window began after it.
        while self._accepted and self._accepted[0] < self._window_from:
            self._accepted.popleft()
        self._streak += 1
        in_window = len(self._accepted)
        if in_window and self._streak == 1:
            self.window_cap = in_window
        if self._streak == 1:  # later refusals with nothing accepted say the window is full, not the rate
            sustained = in_window / self.window  # what the relay demonstrably took
            self.rate = max(self.floor, min(self.rate, max(self.rate * self.beta, sustained)))
        hold = min(MAX_HOLD, self.pause * 2 ** (self._streak - 1))
        if in_window and self._streak == 1:
            # Postfix's anvil counts in whole seconds and resets only strictly after its
            # unit: come back a little after the window, not at its edge.
            hold = max(hold, self._accepted[0] + self.window * (1 + 1 / 30) - now)
        self.hold_until = now + hold
        self._window_from = self.hold_until
        self._tokens = 0.0
        self.changed = True
        return True

    def connection_refused(self, reply: str, *, open_now: int) -> None:
        """A connection was refused (421 at the greeting, or no connection at all) while
        ``open_now`` others are open: the pool shrinks to those (at least one)."""
        now = self._clock()
        self.refused += 1
        self._note(reply)
        if open_now == 0:
            self.unreachable += 1
            self._connect_at = now + self._connect_backoff
            self._connect_backoff = min(60.0, self._connect_backoff * 2)
        # A refused slot inside the pool means the relay takes only those open; one outside it
        # (still connecting from before a shrink) changes nothing.
        self.pool = max(1, min(self.pool, open_now))
        if self._grew_at is not None and now - self._grew_at < 2 * self._grow_after:
            # The last growth was too much: wait twice as long before the next try.
            self._grow_after = min(MAX_GROW_AFTER, self._grow_after * 2)
            self._grew_at = None
        self._grow_at = now + self._grow_after
        self.changed = True

    def connected(self) -> None:
        """A connection was accepted."""
        self.unreachable = 0
        self._connect_backoff = 1.0
        self._connect_at = self._clock()

    def connect_wait(self) -> float:
        """Seconds before the next connection attempt (after every one was refused)."""
        return max(0.0, self._connect_at - self._clock())

    def _trim(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()

    def _note(self, reply: str) -> None:
        self.last_reply = reply[:200]
        self.last_reply_at = self._wall()

    # -- views and storage ------------------------------------------------------------------

    def view(self) -> RelayView:
        """What the sender believes now."""
        return RelayView(pool=self.pool, max_pool=self.max_pool, rate=self.rate, max_rate=self.max_rate,
                         hold=max(0.0, self.hold_until - self._clock()), last_reply=self.last_reply)

    def state(self) -> RelayState:
        """The belief to store (clears :attr:`changed`)."""
        self.changed = False
        wall, now = self._wall(), self._clock()
        until = self.hold_until
        current = [t for t in self._accepted if t >= self._window_from and t > now - self.window]
        if self.window_cap and len(current) >= self.window_cap:
            # The window is as full as the relay allows: a restart must wait for it too.
            until = max(until, current[0] + self.window * (1 + 1 / 30))
        hold = wall + (until - now) if until > now else None
        return RelayState(name=self.name, rate=self.rate, pool=self.pool, hold_until=hold,
                          last_reply=self.last_reply, last_reply_at=self.last_reply_at, updated_at=wall)

    def adopt(self, state: RelayState) -> None:
        """Take on what another sender on the same relay stored since: its lower rate and its
        pause (the relay's rate limit is shared; each process keeps its own pool)."""
        now, wall = self._clock(), self._wall()
        if state.rate < self.rate:
            self.rate = max(self.floor, state.rate)
        if state.hold_until is not None and state.hold_until > wall:
            self.hold_until = max(self.hold_until, now + state.hold_until - wall)
        if state.last_reply_at is not None and (self.last_reply_at or 0) < state.last_reply_at:
            self.last_reply, self.last_reply_at = state.last_reply, state.last_reply_at
