"""One global token-bucket rate limiter for outgoing mail, in real units (20/s, 1000/h).

Several rates may apply at once (say ``20/s`` and ``1000/h``): a message goes out only when
every bucket has a token. A server that says "slow down" (421/451/454) makes the limiter
run at a fraction of its rate for a while.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nurture.timeutil import Rate


@dataclass
class _Bucket:
    rate: Rate
    burst: float
    tokens: float


class RateLimiter:
    """A token bucket per rate; ``clock`` is monotonic seconds (injectable for tests).

    The burst of each bucket is one second's worth of its rate (at least one message), so
    ``1000/h`` paces one message every 3.6 s rather than allowing a burst of 1000.
    """

    def __init__(self, rates: Sequence[Rate], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets = [
            _Bucket(rate=r, burst=max(1.0, min(r.count, r.per_second)), tokens=max(1.0, min(r.count, r.per_second)))
            for r in rates
        ]
        self._last = clock()
        self._factor = 1.0
        self._slow_until = 0.0
        self.slowdowns = 0

    @property
    def factor(self) -> float:
        """The fraction of the configured rate in force now (1.0 unless slowed down)."""
        if self._factor != 1.0 and self._clock() >= self._slow_until:
            self._factor = 1.0
        return self._factor

    def slow(self, *, factor: float = 0.5, seconds: float = 60.0) -> None:
        """Run at ``factor`` of the rate for the next ``seconds`` (extends a running slowdown)."""
        self._refill()
        self._factor = min(self.factor, factor)
        self._slow_until = max(self._slow_until, self._clock() + seconds)
        self.slowdowns += 1
        for b in self._buckets:  # drop the burst so the slowdown takes effect at once
            b.tokens = min(b.tokens, 1.0)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        f = self.factor
        for b in self._buckets:
            b.tokens = min(b.burst, b.tokens + elapsed * b.rate.per_second * f)

    def try_take(self) -> float:
        """Take a token if every bucket has one and return 0.0; otherwise return the
        seconds to wait before one will be there (nothing taken)."""
        self._refill()
        f = self.factor
        wait = 0.0
        for b in self._buckets:
            if b.tokens < 1.0:
                wait = max(wait, (1.0 - b.tokens) / (b.rate.per_second * f))
        if wait > 0.0:
            return wait
        for b in self._buckets:
            b.tokens -= 1.0
        return 0.0

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for a token. Returns False (without a token) if ``stop`` is set meanwhile."""
        while True:
            if stop is not None and stop.is_set():
                return False
            wait = self.try_take()
            if wait == 0.0:
                return True
            if stop is None:
                await asyncio.sleep(wait)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                except TimeoutError:
                    pass
