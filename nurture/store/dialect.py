"""What differs between the two backends, for the few statements that cannot be the same text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """``name`` is ``sqlite`` or ``postgres``.

    ``skip_locked`` goes after a claim's inner SELECT: on PostgreSQL two senders claiming at
    once take disjoint rows (SQLite serialises claims with ``BEGIN IMMEDIATE`` instead).
    ``lock_row`` goes after a SELECT of a row the transaction is about to update.
    ``clock`` is an SQL expression for the database server's time in epoch seconds: shared
    state (the global rate bucket) uses one clock for every process on every machine.
    """

    name: str
    skip_locked: str
    lock_row: str
    clock: str

    def skip_locked_of(self, alias: str) -> str:
        """``skip_locked`` for a join: lock (and skip locked) rows of ``alias`` only."""
        return f" FOR UPDATE OF {alias} SKIP LOCKED" if self.skip_locked else ""


SQLITE = Dialect(name="sqlite", skip_locked="", lock_row="",
                 clock="((julianday('now') - 2440587.5) * 86400.0)")
POSTGRES = Dialect(name="postgres", skip_locked=" FOR UPDATE SKIP LOCKED", lock_row=" FOR UPDATE",
                   clock="extract(epoch FROM clock_timestamp())::double precision")


def is_postgres_url(path: str) -> bool:
    """Whether a ``database`` setting names a PostgreSQL server rather than a SQLite file."""
    return path.startswith(("postgresql://", "postgres://"))
