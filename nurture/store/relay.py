"""Store: what the sender has learned about its SMTP relay (``relay_state``).

One row per relay (``host:port``): the send rate and connection count the relay accepted
last, until when it asked for a pause, and its last throttle reply. The sender reads it at
start, so a restart does not begin at full speed against a relay that was refusing, and
writes it when its belief changes. ``nurture stats`` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nurture.store.base import StoreBase


@dataclass(frozen=True, slots=True)
class RelayState:
    """The stored belief about one relay. Times are epoch seconds (UTC)."""

    name: str
    rate: float  # messages per second the sender allows itself now
    pool: int  # SMTP connections it allows itself now
    hold_until: float | None  # no new transactions before this (the relay asked for a pause)
    last_reply: str | None  # the last throttle reply or refused connection, as received
    last_reply_at: float | None
    updated_at: float


class RelayMixin(StoreBase):
    """Reading and writing ``relay_state`` rows."""

    def relay_state(self, name: str) -> RelayState | None:
        """The stored belief about relay ``name``, if any."""
        row: dict[str, Any] | None = self.query_one(
            "SELECT name, rate, pool, hold_until, last_reply, last_reply_at, updated_at"
            " FROM relay_state WHERE name = ?", (name,))
        if row is None:
            return None
        return RelayState(name=row["name"], rate=float(row["rate"]), pool=int(row["pool"]),
                          hold_until=None if row["hold_until"] is None else float(row["hold_until"]),
                          last_reply=row["last_reply"],
                          last_reply_at=None if row["last_reply_at"] is None else float(row["last_reply_at"]),
                          updated_at=float(row["updated_at"]))

    def relay_states(self) -> list[RelayState]:
        """Every stored relay belief, by name."""
        rows = self.query("SELECT name FROM relay_state ORDER BY name")
        return [s for s in (self.relay_state(r["name"]) for r in rows) if s is not None]

    def save_relay_state(self, state: RelayState) -> None:
        """Insert or replace the belief about ``state.name``."""
        with self.transaction():
            self.conn.execute(
                """INSERT INTO relay_state (name, rate, pool, hold_until, last_reply, last_reply_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET rate = excluded.rate, pool = excluded.pool,
                       hold_until = excluded.hold_until, last_reply = excluded.last_reply,
                       last_reply_at = excluded.last_reply_at, updated_at = excluded.updated_at""",
                (state.name, state.rate, state.pool, state.hold_until, state.last_reply,
                 state.last_reply_at, state.updated_at))


def relay_name(host: str, port: int) -> str:
    """The row name for a relay."""
    return f"{host}:{port}"


__all__ = ["RelayMixin", "RelayState", "relay_name"]
