"""Store: the figures ``pace: reps`` decides by, and what it held back (table ``pacing``).

:meth:`PacingMixin.pace_counts` counts a campaign's paced mail and the call-now tasks it
raised; :meth:`PacingMixin.record_pacing` keeps each campaign's latest hold (one row), read
back by :meth:`PacingMixin.pacing_status` for ``nurture stats`` and the manager view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.store.base import StoreBase, dt, dt_required, ts


@dataclass(frozen=True, slots=True)
class PaceCounts:
    """A campaign's paced steps: mails sent before ``since`` (their clicks are in) and the
    call-now tasks they raised; mails sent since or still on their way, and the tasks those
    raised so far."""

    settled_sends: int
    settled_tasks: int
    recent_sends: int
    recent_tasks: int


@dataclass(frozen=True, slots=True)
class PaceStatus:
    """One campaign's pacing as of the scheduler's last tick."""

    campaign_id: str
    held: int
    released: int
    free_slots: int
    expect: float
    held_since: datetime | None
    updated_at: datetime


class PacingMixin(StoreBase):
    """Counts for the scheduler's capacity gate, and its record of held mail."""

    def pace_counts(self, campaign_id: str, step_ids: Sequence[str], *, since: datetime) -> PaceCounts:
        """Sent mail of ``step_ids`` before / after ``since``, and the call-now tasks of each part."""
        if not step_ids:
            return PaceCounts(0, 0, 0, 0)
        marks = ",".join("?" * len(step_ids))
        # Mail still on its way counts as recent: its clicks are all to come.
        row = self.conn.execute(  # an aggregate: always one row
            "SELECT coalesce(sum(CASE WHEN status = 'sent' AND sent_at < ? THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN status = 'sent' AND sent_at >= ? THEN 1"
            " WHEN status IN ('queued', 'sending', 'retry') THEN 1 ELSE 0 END), 0)"
            f" FROM sends WHERE campaign_id = ? AND step_id IN ({marks})",
            [ts(since), ts(since), campaign_id, *step_ids]).fetchone() or (0, 0)
        # Each task counts with the mail that raised it (the contact's latest paced send).
        trow = self.conn.execute(
            "SELECT coalesce(sum(CASE WHEN m < ? THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN m >= ? THEN 1 ELSE 0 END), 0) FROM ("
            "SELECT t.id, max(s.sent_at) AS m FROM tasks t JOIN sends s ON s.contact_id = t.contact_id"
            f" AND s.campaign_id = t.campaign_id AND s.step_id IN ({marks}) AND s.status = 'sent'"
            " WHERE t.campaign_id = ? AND t.kind = 'call_now' GROUP BY t.id) x",
            [ts(since), ts(since), *step_ids, campaign_id]).fetchone() or (0, 0)
        return PaceCounts(settled_sends=int(row[0]), recent_sends=int(row[1]),
                          settled_tasks=int(trow[0]), recent_tasks=int(trow[1]))

    def record_pacing(self, campaign_id: str, *, held: int, released: int, free_slots: int, expect: float,
                      now: datetime) -> None:
        """Keep this tick's hold for ``campaign_id`` (``released`` adds to the total)."""
        with self.transaction():
            self.conn.execute(
                """INSERT INTO pacing (campaign_id, held, released, free_slots, expect, held_since, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (campaign_id) DO UPDATE SET held = excluded.held,
                       released = pacing.released + excluded.released, free_slots = excluded.free_slots,
                       expect = excluded.expect,
                       held_since = CASE WHEN excluded.held = 0 THEN NULL
                                         ELSE coalesce(pacing.held_since, excluded.held_since) END,
                       updated_at = excluded.updated_at""",
                (campaign_id, held, released, free_slots, expect, ts(now) if held else None, ts(now)))

    def pacing_status(self) -> list[PaceStatus]:
        """Every paced campaign's latest figures, by campaign id."""
        return [PaceStatus(campaign_id=r[0], held=int(r[1]), released=int(r[2]), free_slots=int(r[3]),
                           expect=float(r[4]), held_since=dt(r[5]), updated_at=dt_required(r[6]))
                for r in self.conn.execute(
                    "SELECT campaign_id, held, released, free_slots, expect, held_since, updated_at"
                    " FROM pacing ORDER BY campaign_id").fetchall()]


__all__ = ["PaceCounts", "PaceStatus", "PacingMixin"]
