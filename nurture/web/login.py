"""Logging in to the reps' app: who may, and how often one may try.

A token or session counts only while its rep is in config.yaml (:func:`rep_configured`):
removing a rep from the config ends their access at once, whatever tokens they kept.

:class:`LoginGuard` backs off failed logins per client address and per rep (a token that
names a rep but does not log in: revoked, or its rep removed). The first few failures are
free; each further one doubles the wait, up to a cap, and while a key waits its attempts are
answered 429 with ``Retry-After`` without looking at the token. Tokens are 192-bit, so this
is about noise in the logs and load, not about guessing.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from nurture.config import Settings
from nurture.repauth import MANAGER

log = logging.getLogger("nurture.reps")


def rep_configured(settings: Settings, rep_id: str | None) -> bool:
    """Whether ``rep_id`` may use the app: the manager, or a rep in the config."""
    return rep_id is not None and (rep_id == MANAGER or any(r.id == rep_id for r in settings.reps))


@dataclass(slots=True)
class _Count:
    failures: int
    last: float
    until: float


class LoginGuard:
    """Backoff of failed logins by key (``ip:…``, ``rep:…``); times are seconds (any epoch)."""

    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 300.0, forget: float = 900.0,
                 max_keys: int = 100_000) -> None:
        self.free, self.base, self.cap, self.forget, self.max_keys = free, base, cap, forget, max_keys
        self._counts: OrderedDict[str, _Count] = OrderedDict()

    def wait(self, keys: Iterable[str], *, now: float) -> float:
        """Seconds until all ``keys`` may try again (0: now)."""
        longest = 0.0
        for key in keys:
            c = self._counts.get(key)
            if c is not None:
                longest = max(longest, c.until - now)
        return longest

    def failed(self, keys: Iterable[str], *, now: float) -> None:
        """Count one failed attempt against each key."""
        for key in keys:
            c = self._counts.pop(key, None)
            if c is None or now - c.last > self.forget:
                c = _Count(0, now, now)
            c.failures += 1
            c.last = now
            over = c.failures - self.free
            if over > 0:
                c.until = now + min(self.cap, self.base * 2 ** (over - 1))
                if over == 1:  # one line when a key starts waiting, not one per attempt
                    log.warning("login: %d failed attempts from %s; backing off", c.failures, key)
            self._counts[key] = c
        while len(self._counts) > self.max_keys:  # bounded memory whatever the number of addresses
            self._counts.popitem(last=False)

    def succeeded(self, keys: Iterable[str]) -> None:
        """A good login clears its keys."""
        for key in keys:
            self._counts.pop(key, None)
