"""Store: the senders' heartbeats, and taking back the leases of senders that are gone.

Each running sender has a ``senders`` row (its lease owner name, machine, pid, process
start time and last heartbeat). :meth:`LeasesMixin.lease_holders` lists who holds
``sending`` rows; :meth:`LeasesMixin.recover_leases` gives the rows of owners found gone
back to the queue (as a graceful stop would), so they need not wait for the lease to lapse.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from nurture.liveness import LeaseHolder, ProcessId
from nurture.store.base import StoreBase, dt, ts


class LeasesMixin(StoreBase):
    """Sender registration, heartbeats and lease recovery."""

    def register_sender(self, owner: str, *, process: ProcessId, now: datetime) -> None:
        """Record (or renew) ``owner``'s heartbeat."""
        with self.transaction():
            self.conn.execute(
                """INSERT INTO senders (owner, machine, pid, started, beat_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at""",
                (owner, process.machine, process.pid, process.started, ts(now)))

    def unregister_sender(self, owner: str) -> None:
        """``owner`` stopped (its rows are marked or released)."""
        with self.transaction():
            self.conn.execute("DELETE FROM senders WHERE owner = ?", (owner,))

    def lease_holders(self) -> list[LeaseHolder]:
        """Every owner of ``sending`` rows: how many, until when, and its heartbeat if any."""
        rows = self.query(
            """SELECT s.lease_owner AS owner, count(*) AS n, max(s.lease_until) AS until,
                      h.machine, h.pid, h.started, h.beat_at
               FROM sends s LEFT JOIN senders h ON h.owner = s.lease_owner
               WHERE s.status = 'sending' AND s.lease_owner IS NOT NULL
               GROUP BY s.lease_owner, h.machine, h.pid, h.started, h.beat_at
               ORDER BY s.lease_owner""")
        return [LeaseHolder(owner=r["owner"], rows=int(r["n"]), until=dt(r["until"]),
                            process=None if r["machine"] is None else
                            ProcessId(machine=r["machine"], pid=int(r["pid"]), started=r["started"]),
                            beat_at=dt(r["beat_at"])) for r in rows]

    def recover_leases(self, owners: Iterable[str], *, now: datetime) -> int:
        """Give every row leased by ``owners`` (senders that are gone) back to the queue, due
        at once, and forget their heartbeats. Returns how many rows came back. A row that
        was in flight when its sender died may then go twice, with the same Message-ID."""
        names = sorted(set(owners))
        if not names:
            return 0
        marks = ",".join("?" * len(names))
        with self.transaction():
            cur = self.conn.execute(
                f"""UPDATE sends SET status = CASE WHEN attempts > 0 THEN 'retry' ELSE 'queued' END,
                                     lease_owner = NULL, lease_until = NULL
                    WHERE status = 'sending' AND lease_owner IN ({marks})""", names)
            self.conn.execute(f"DELETE FROM senders WHERE owner IN ({marks})", names)
            for name in names:
                self.append_event("sender.recovered", {"owner": name}, now=now)
            return int(cur.rowcount)
