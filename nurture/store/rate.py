"""Store: the global send rate, shared by every sender process on the database.

A token bucket lives in a ``rate_state`` row (tokens, when last refilled, slowed-down until).
:meth:`RateMixin.claim_sends_rated` refills it by the database server's clock, claims at most
as many due rows as there are whole tokens, and takes one token per row it hands out for
delivery, all in one transaction that holds the bucket row. So however many senders claim
(processes on one machine or several), together they never get more than ``burst + rate × t``
rows in ``t`` seconds. Each sender still paces its own deliveries with its in-process
limiter; the bucket bounds what all of them together may claim.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.models import Send
from nurture.store.outbox import OutboxMixin
from nurture.timeutil import Rate

BUCKET = "smtp"


@dataclass(frozen=True, slots=True)
class RatedClaim:
    """What :meth:`RateMixin.claim_sends_rated` got: the rows, and when none came because the
    bucket was empty while rows were due, ``wait`` seconds until the next token."""

    sends: list[Send]
    wait: float = 0.0


def bucket_burst(rate: Rate) -> float:
    """One second's worth of the rate, at least one message (as the in-process limiter)."""
    return max(1.0, min(float(rate.count), rate.per_second))


class RateMixin(OutboxMixin):
    """The shared token bucket (``rate_state``) and rate-limited claims (over the outbox's
    :meth:`~OutboxMixin.claim_sends`)."""

    def _bucket(self, name: str, burst: float) -> dict[str, Any]:
        d = self.dialect
        sql = f"SELECT tokens, updated_at, slow_until, {d.clock} AS clock FROM rate_state WHERE name = ?{d.lock_row}"
        row = self.query_one(sql, (name,))
        if row is None:
            self.conn.execute(
                f"INSERT OR IGNORE INTO rate_state (name, tokens, updated_at) VALUES (?, ?, {d.clock})",
                (name, burst))
            row = self.query_one(sql, (name,))
        assert row is not None
        return row

    def _refilled(self, row: dict[str, Any], *, rate: Rate, burst: float, slow_factor: float) -> tuple[float, float]:
        """(tokens now, effective rate per second)."""
        clock = float(row["clock"])
        slow = row["slow_until"] is not None and clock < float(row["slow_until"])
        per_second = rate.per_second * (slow_factor if slow else 1.0)
        elapsed = max(0.0, clock - float(row["updated_at"]))
        return min(burst, float(row["tokens"]) + elapsed * per_second), per_second

    def claim_sends_rated(self, *, owner: str, now: datetime, lease: timedelta, limit: int, rate: Rate,
                          slow_factor: float = 0.5, skip_campaigns: Iterable[str] = (),
                          bucket: str = BUCKET) -> RatedClaim:
        """:meth:`claim_sends` (same ``owner``/``now``/``lease``/``limit``/``skip_campaigns``),
        limited by the shared bucket for ``rate``.

        Suppressed and skipped rows cost no token. When the bucket holds less than one token
        and rows are due, returns no rows and the seconds until a token will be there.
        """
        burst = bucket_burst(rate)
        skip = list(skip_campaigns)
        with self.transaction():
            row = self._bucket(bucket, burst)
            tokens, per_second = self._refilled(row, rate=rate, burst=burst, slow_factor=slow_factor)
            n = min(int(limit), math.floor(tokens + 1e-9))
            sends: list[Send] = []
            wait = 0.0
            if n >= 1:
                sends = self.claim_sends(owner=owner, now=now, lease=lease, limit=n,
                                         skip_campaigns=skip)
                tokens -= sum(1 for s in sends if s.status == "sending")
            elif self.any_due(now=now, skip_campaigns=skip):
                wait = (1.0 - tokens) / per_second
            self.conn.execute(
                "UPDATE rate_state SET tokens = ?, updated_at = ? WHERE name = ?",
                (tokens, float(row["clock"]), bucket))
        return RatedClaim(sends=sends, wait=wait)

    def any_due(self, *, now: datetime, skip_campaigns: Iterable[str] = ()) -> bool:
        """Whether a claim at ``now`` would find a row (queued/retry due, or a lapsed lease)."""
        t = now.timestamp()
        skip = list(skip_campaigns)
        skip_sql = f"AND campaign_id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        return self.query_one(
            f"""SELECT 1 AS due FROM sends
               WHERE ((status IN ('queued', 'retry') AND next_attempt_at <= ?)
                      OR (status = 'sending' AND lease_until < ?)) {skip_sql} LIMIT 1""",
            (t, t, *skip)) is not None

    def slow_shared_rate(self, *, seconds: float, bucket: str = BUCKET) -> None:
        """Every sender runs at its slow factor for the next ``seconds`` (a server said 421/451);
        the burst is dropped so it takes effect at once."""
        d = self.dialect
        self.conn.execute(
            f"""UPDATE rate_state SET tokens = CASE WHEN tokens > 1 THEN 1 ELSE tokens END,
                   slow_until = CASE WHEN slow_until IS NULL OR slow_until < {d.clock} + ?
                                     THEN {d.clock} + ? ELSE slow_until END
                WHERE name = ?""", (float(seconds), float(seconds), bucket))

    def rate_state(self, bucket: str = BUCKET) -> dict[str, Any] | None:
        """The bucket row as stored (tokens, updated_at, slow_until), for status and tests."""
        return self.query_one("SELECT tokens, updated_at, slow_until FROM rate_state WHERE name = ?",
                              (bucket,))
