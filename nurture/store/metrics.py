"""Store: the database figures behind the Prometheus endpoint (``/metrics``). Nothing here writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from nurture.store.base import StoreBase


@dataclass(frozen=True, slots=True)
class Figures:
    """What the database says at one moment; every process sharing it sees the same."""

    #: Outbox rows per status (queued, sending, sent, retry, failed, skipped, suppressed).
    sends: Mapping[str, int]
    #: Delivery attempts that ended in a transient failure (and were tried again or given up).
    retries: int
    #: Rows the sender still has to deliver (queued, retry, sending) and, of those, the due ones.
    outbox_depth: int
    outbox_due: int
    #: Clicks and opens per ``(kind, verdict)``.
    clicks: Mapping[tuple[str, str], int]
    #: Open and overdue tasks per rep id (``""``: not assigned).
    tasks_open: Mapping[str, int]
    tasks_overdue: Mapping[str, int]
    #: Whether the shared send rate is cut because a server asked to slow down.
    rate_slowed: bool
    #: Inbound messages and events per kind; None when the database has no inbound table.
    inbound: Mapping[str, int] | None


class MetricsMixin(StoreBase):
    """Aggregates for ``/metrics``, a handful of grouped counts over indexed columns."""

    def metrics_figures(self, *, now: datetime) -> Figures:
        """The figures at ``now`` (for the overdue tasks, the due outbox and the rate slowdown)."""
        t = now.timestamp()
        sends = {r["status"]: int(r["n"]) for r in self.query(
            "SELECT status, COUNT(*) AS n FROM sends GROUP BY status")}
        # ``attempts`` counts finished attempts: a sent or failed row's last one was not a retry.
        row = self.query_one(
            """SELECT COALESCE(SUM(CASE WHEN status IN ('sent', 'failed') THEN attempts - 1 ELSE attempts END), 0)
                      AS n FROM sends WHERE attempts > 0""")
        retries = int(row["n"]) if row else 0
        row = self.query_one(
            """SELECT COUNT(*) AS depth,
                      COALESCE(SUM(CASE WHEN status != 'sending' AND next_attempt_at <= ? THEN 1 ELSE 0 END), 0) AS due
               FROM sends WHERE status IN ('queued', 'retry', 'sending')""", (t,))
        depth, due = (int(row["depth"]), int(row["due"])) if row else (0, 0)
        clicks = {(r["kind"], r["verdict"]): int(r["n"]) for r in self.query(
            "SELECT kind, verdict, COUNT(*) AS n FROM clicks GROUP BY kind, verdict")}
        tasks_open: dict[str, int] = {}
        tasks_overdue: dict[str, int] = {}
        for r in self.query(
                """SELECT COALESCE(rep_id, '') AS rep, COUNT(*) AS n,
                          COALESCE(SUM(CASE WHEN due_at < ? THEN 1 ELSE 0 END), 0) AS overdue
                   FROM tasks WHERE status = 'open' GROUP BY COALESCE(rep_id, '')""", (t,)):
            tasks_open[r["rep"]] = int(r["n"])
            tasks_overdue[r["rep"]] = int(r["overdue"])
        clock = self.dialect.clock  # the bucket keeps the database's time
        row = self.query_one(
            f"SELECT COUNT(*) AS n FROM rate_state WHERE slow_until IS NOT NULL AND slow_until > {clock}")
        # Or a relay asked the sender to slow down (421 / 450 4.7.x) within the last minute, or
        # to wait until a time still to come: the learned rate is cut (issue 14).
        held = self.query_one("SELECT COUNT(*) AS n FROM relay_state WHERE hold_until > ? OR last_reply_at > ?",
                              (t, t - 60))
        slowed = bool(row and row["n"]) or bool(held and held["n"])
        inbound = None
        if self._has_table("inbound"):
            inbound = {r["kind"]: int(r["n"]) for r in self.query(
                "SELECT kind, COUNT(*) AS n FROM inbound GROUP BY kind")}
        return Figures(sends=sends, retries=retries, outbox_depth=depth, outbox_due=due, clicks=clicks,
                       tasks_open=tasks_open, tasks_overdue=tasks_overdue, rate_slowed=slowed, inbound=inbound)

    def _has_table(self, name: str) -> bool:
        if self.dialect.name == "postgres":
            sql = ("SELECT 1 AS found FROM information_schema.tables "
                   "WHERE table_name = ? AND table_schema = current_schema()")
        else:
            sql = "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.query_one(sql, (name,)) is not None
