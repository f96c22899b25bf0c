"""Store: campaign versions, enrollments, the scheduler's reads and writes, exits and stats.

The scheduler decides; this mixin only reads due enrollments and applies decisions
(:class:`Advance`) in batches. Enrollment states: ``active`` (``next_step`` due at
``next_at``; ``next_at`` is NULL while the previous step's send is in flight), ``completed``
(the last step was queued or skipped: nothing more to schedule) and ``exited``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from nurture.errors import NotFound
from nurture.models import Campaign, ContactStatus, Enrollment, Send, SendStatus
from nurture.store.base import StoreBase, dt, dt_required, ts
from nurture.store.filters import contact_filter

#: Send statuses that are still on their way out (count as "queued" in stats).
PENDING: tuple[SendStatus, ...] = ("queued", "sending", "retry")
#: What the scheduler decided for one enrollment (see :class:`Advance`).
AdvanceAction = Literal["queue", "skip", "defer", "exit", "complete"]


@dataclass(frozen=True, slots=True)
class StoredCampaign:
    """The applied version of a campaign: what running enrollments follow."""

    id: str
    version: int
    content_hash: str
    name: str
    steps: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DueEnrollment:
    """An active enrollment whose next step is due, with what the scheduler needs to decide."""

    id: int
    campaign_id: str
    contact_id: int
    next_step: str | None
    next_at: datetime
    timezone: str | None
    contact_status: ContactStatus
    suppressed: bool
    outcomes: frozenset[str]
    #: The contact's country as imported (a name or ISO code; ``""`` when unknown).
    country: str = ""


@dataclass(frozen=True, slots=True)
class Advance:
    """One scheduler decision for one enrollment.

    ``action`` is ``queue`` (insert a queued send for ``step_id``, due at ``due_at``),
    ``skip`` (record a skipped send for ``step_id`` with ``reason``), ``defer`` (move
    ``next_at``), ``exit`` (end with ``reason``) or ``complete``. After queue/skip the
    enrollment moves to ``next_step`` (None: completed) with ``next_at``/``next_wait``.
    """

    action: AdvanceAction
    enrollment_id: int
    campaign_id: str
    contact_id: int
    step_id: str | None = None
    due_at: datetime | None = None
    next_step: str | None = None
    next_at: datetime | None = None
    next_wait: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollResult:
    enrolled: int
    already: int
    suppressed: int


@dataclass(frozen=True, slots=True)
class StepStats:
    campaign_id: str
    step_id: str
    queued: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0
    suppressed: int = 0


def campaign_hash(campaign: Campaign) -> str:
    """``campaign.content_hash`` when the loader set one, else a hash of the parsed campaign."""
    if campaign.content_hash:
        return campaign.content_hash
    return hashlib.sha256(repr(campaign).encode()).hexdigest()


def remap_step(step: str, old: Sequence[str], new: Sequence[str]) -> str | None:
    """Where an enrollment waiting for ``step`` goes when the steps change from ``old`` to ``new``.

    A step that still exists is kept (enrollments continue by step id). A removed step is
    replaced by the step that follows, in the new order, the last earlier step that still
    exists (the first new step if none does). None means nothing is left: completed.
    """
    if step in new:
        return step
    if step not in old:
        return None
    for prev in reversed(old[:old.index(step)]):
        if prev in new:
            i = new.index(prev)
            return new[i + 1] if i + 1 < len(new) else None
    return new[0] if new else None


# nurture.errors.is_hard_bounce in SQL (failed rows hold 5xx codes, or none): 5.1.x if an enhanced
# code came, else 550/551/553.
_BOUNCE = "(status = 'failed' AND coalesce(error_enhanced LIKE '5.1.%', error_code IN (550, 551, 553), FALSE))"


class EnrollmentsMixin(StoreBase):
    """Campaign versions, enrollment, the scheduler's batch reads and writes, exits, stats."""

    # -- campaigns -----------------------------------------------------------------------

    def get_stored_campaign(self, campaign_id: str) -> StoredCampaign | None:
        row = self.conn.execute(
            "SELECT id, version, content_hash, name, steps, updated_at FROM campaigns WHERE id = ?",
            (campaign_id,)).fetchone()
        if row is None:
            return None
        return StoredCampaign(id=row[0], version=row[1], content_hash=row[2], name=row[3],
                              steps=tuple(json.loads(row[4])), updated_at=dt_required(row[5]))

    def save_campaign(self, campaign: Campaign, *, source: str | None = None, now: datetime,
                      reapply: bool = True) -> int:
        """Apply ``campaign``: store it as a new version if its content changed; returns the
        version in force.

        Active enrollments waiting for a step that no longer exists move on (see
        :func:`remap_step`); all others continue by step id. (``enrollments.campaign_version``
        keeps the version a contact was enrolled under: rewriting it for a million running
        enrollments on every edit would hold the write lock for seconds.) With ``reapply=False`` (the
        scheduler's ticks) content that an earlier version already had is not applied again:
        a long-running process holding an old copy never rolls a newer edit back. Commands a
        person runs (``enroll``) re-apply it, which is how an edit is rolled back on purpose.
        """
        digest = campaign_hash(campaign)
        steps = [s.id for s in campaign.steps]
        with self.transaction():
            old = self.get_stored_campaign(campaign.id)
            if old is not None and old.content_hash == digest:
                return old.version
            if old is not None and not reapply and self.conn.execute(
                    "SELECT 1 FROM campaign_versions WHERE campaign_id = ? AND content_hash = ?",
                    (campaign.id, digest)).fetchone():
                return old.version
            version = 1 if old is None else old.version + 1
            text = source if source is not None else repr(campaign)
            self.conn.execute(
                "INSERT INTO campaigns (id, version, content_hash, name, source, steps, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET version = excluded.version,"
                " content_hash = excluded.content_hash, name = excluded.name, source = excluded.source,"
                " steps = excluded.steps, updated_at = excluded.updated_at",
                (campaign.id, version, digest, campaign.name, text, json.dumps(steps), ts(now)))
            self.conn.execute(
                "INSERT INTO campaign_versions (campaign_id, version, content_hash, steps, source, applied_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", (campaign.id, version, digest, json.dumps(steps), text, ts(now)))
            if old is not None:
                for gone in (s for s in old.steps if s not in steps):
                    target = remap_step(gone, old.steps, steps)
                    if target is None:
                        self.conn.execute(
                            "UPDATE enrollments SET state = 'completed', next_step = NULL, next_at = NULL,"
                            " updated_at = ? WHERE campaign_id = ? AND state = 'active' AND next_step = ?",
                            (ts(now), campaign.id, gone))
                    else:
                        self.conn.execute(
                            "UPDATE enrollments SET next_step = ?, updated_at = ?"
                            " WHERE campaign_id = ? AND state = 'active' AND next_step = ?",
                            (target, ts(now), campaign.id, gone))
            return version

    def campaign_versions(self, campaign_id: str) -> list[tuple[int, str, datetime]]:
        """(version, content hash, applied at) of every version applied, oldest first."""
        return [(v, h, dt_required(at)) for v, h, at in self.conn.execute(
            "SELECT version, content_hash, applied_at FROM campaign_versions WHERE campaign_id = ? ORDER BY version",
            (campaign_id,))]

    def step_positions(self, campaign_id: str) -> list[tuple[str | None, bool, int]]:
        """Active enrollments of a campaign grouped as (next step, in flight?, count)."""
        rows = self.conn.execute(
            "SELECT next_step, next_at IS NULL, count(*) FROM enrollments"
            " WHERE campaign_id = ? AND state = 'active' GROUP BY 1, 2 ORDER BY 1, 2", (campaign_id,)).fetchall()
        return [(r[0], bool(r[1]), r[2]) for r in rows]

    # -- enrollment ----------------------------------------------------------------------

    def enroll_contacts(
        self,
        *,
        campaign_id: str,
        first_step: str,
        first_at: datetime,
        version: int,
        now: datetime,
        all_contacts: bool = False,
        where: tuple[str, str] | None = None,
        email_keys: Sequence[str] | None = None,
        batch_size: int = 50_000,
    ) -> EnrollResult:
        """Enroll the chosen contacts (all, those matching ``where``, or those with these
        ``email_keys``). Idempotent; suppressed and non-active contacts are skipped.
        Works in id ranges of ``batch_size``, one transaction each."""
        conds: list[str] = []
        params: list[Any] = []
        if where is not None:
            cond, bound = contact_filter(self, where, alias="c")
            conds.append(cond)
            params.extend(bound)
        elif email_keys is not None:
            keys = list(email_keys)
            if not keys:
                return EnrollResult(0, 0, 0)
            conds.append(f"c.email_key IN ({','.join('?' * len(keys))})")
            params.extend(keys)
        elif not all_contacts:
            raise ValueError("choose contacts: all_contacts, where or email_keys")
        selected = " AND ".join(conds) or "1 = 1"  # a bare 1 is no boolean on PostgreSQL
        bad = "(c.status != 'active' OR EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = c.email_key))"
        insert = (
            "INSERT OR IGNORE INTO enrollments (campaign_id, contact_id, state, next_step, next_at,"
            " campaign_version, enrolled_at, updated_at)"
            f" SELECT ?, c.id, 'active', ?, ?, ?, ?, ? FROM contacts c WHERE {selected} AND NOT {bad}"
            " AND c.id > ? AND c.id <= ?")
        count = f"SELECT count(*), coalesce(sum({bad}), 0) FROM contacts c WHERE {selected} AND c.id > ? AND c.id <= ?"
        if email_keys is not None:
            lo, hi, step = 0, 2**62, 2**62
        else:
            hi = int(self.scalar("SELECT coalesce(max(id), 0) FROM contacts"))
            lo, step = 0, batch_size
        enrolled = matched = suppressed = 0
        start = lo
        while start < hi:
            end = min(start + step, hi)
            with self.transaction():
                m, s = self.conn.execute(count, [*params, start, end]).fetchone() or (0, 0)
                cur = self.conn.execute(insert, [campaign_id, first_step, ts(first_at), version, ts(now), ts(now),
                                                 *params, start, end])
            matched += m
            suppressed += s
            enrolled += cur.rowcount
            start = end
        return EnrollResult(enrolled=enrolled, already=matched - suppressed - enrolled, suppressed=suppressed)

    def get_enrollment(self, campaign_id: str, contact_id: int) -> Enrollment:
        row = self.query_one("SELECT * FROM enrollments WHERE campaign_id = ? AND contact_id = ?",
                             (campaign_id, contact_id))
        if row is None:
            raise NotFound(f"contact {contact_id} is not enrolled in {campaign_id}")
        return Enrollment(id=row["id"], campaign_id=row["campaign_id"], contact_id=row["contact_id"],
                          state=row["state"], next_step=row["next_step"], next_at=dt(row["next_at"]),
                          last_sent_at=dt(row["last_sent_at"]), exit_reason=row["exit_reason"])

    def exit_enrollments(self, contact_id: int, *, campaign_id: str | None = None, reason: str,
                         now: datetime) -> int:
        """End the contact's active enrollments (in one campaign or all); returns how many.

        Their sends not yet handed to SMTP (queued, retry) become ``skipped``, so an exit
        also stops mail already queued.
        """
        scope = "contact_id = ? AND state = 'active'" + (" AND campaign_id = ?" if campaign_id else "")
        params: list[Any] = [contact_id, *([campaign_id] if campaign_id else [])]
        with self.transaction():
            # +status: find the rows through the enrollments (UNIQUE (enrollment_id, step_id)),
            # not through sends_claim, which would visit every queued send.
            self.conn.execute(
                "UPDATE sends SET status = 'skipped', last_error = ? WHERE +status IN ('queued', 'retry')"
                f" AND enrollment_id IN (SELECT id FROM enrollments WHERE {scope})",
                [f"exited: {reason}", *params])
            cur = self.conn.execute(
                "UPDATE enrollments SET state = 'exited', exit_reason = ?, next_at = NULL, updated_at = ?"
                f" WHERE {scope}", [reason, ts(now), *params])
            return cur.rowcount

    # -- the scheduler's batch read and write -----------------------------------------------

    def due_enrollments(self, *, campaign_ids: Iterable[str], now: datetime, limit: int) -> list[DueEnrollment]:
        """Active enrollments of these campaigns due at ``now``, oldest first (index enrollments_due)."""
        ids = list(campaign_ids)
        if not ids:
            return []
        # PostgreSQL: two schedulers ticking at once (senders on several machines) take disjoint
        # enrollments; a stale read could otherwise undo a mark_sent's next_at. SQLite
        # serialises ticks on BEGIN IMMEDIATE.
        lock = self.dialect.skip_locked_of("e")
        rows = self.conn.execute(DUE_SQL.format(marks=",".join("?" * len(ids))).rstrip() + lock,
                                 [ts(now), *ids, limit]).fetchall()
        return [DueEnrollment(id=r[0], campaign_id=r[1], contact_id=r[2], next_step=r[3], next_at=dt_required(r[4]),
                              timezone=r[5], contact_status=r[6], suppressed=bool(r[7]),
                              outcomes=frozenset(r[8].split(",")) if r[8] else frozenset(), country=r[9] or "")
                for r in rows]

    def human_clicks(self, enrollment_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        """Human clicks (not honeypots) per enrollment, as (step id, link name) pairs."""
        out: dict[int, list[tuple[str, str]]] = {}
        ids = list(enrollment_ids)
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            for eid, step, name in self.conn.execute(
                    "SELECT s.enrollment_id, s.step_id, l.name FROM sends s"
                    " JOIN clicks k ON k.send_id = s.id JOIN links l ON l.id = k.link_id"
                    f" WHERE s.enrollment_id IN ({','.join('?' * len(chunk))})"
                    # Unary + keeps the planner on the enrollment's sends (a few rows) instead of
                    # the clicks_verdict index (every human click ever recorded).
                    " AND +k.verdict = 'human' AND +k.kind = 'click' AND l.honeypot = 0", chunk):
                out.setdefault(eid, []).append((step, name))
        return out

    def apply_advances(self, advances: Sequence[Advance], *, now: datetime) -> None:
        """Write the scheduler's decisions in one transaction (a few executemany calls)."""
        at = ts(now)
        sends: list[tuple[Any, ...]] = []
        moves: list[tuple[Any, ...]] = []
        ends: list[tuple[Any, ...]] = []
        defers: list[tuple[Any, ...]] = []
        # In id order, so the B-tree updates walk pages in sequence instead of seeking at random.
        for a in sorted(advances, key=lambda a: a.enrollment_id):
            if a.action in ("queue", "skip"):
                status = "queued" if a.action == "queue" else "skipped"
                sends.append((a.enrollment_id, a.campaign_id, a.step_id, a.contact_id, status,
                              ts(a.due_at or now), at, a.reason))
                if a.next_step is None:
                    ends.append(("completed", None, at, a.enrollment_id))
                else:
                    moves.append((a.next_step, ts(a.next_at), a.next_wait, at, a.enrollment_id))
            elif a.action == "defer":
                defers.append((ts(a.next_at), at, a.enrollment_id))
            elif a.action == "exit":
                ends.append(("exited", a.reason, at, a.enrollment_id))
            elif a.action == "complete":
                ends.append(("completed", None, at, a.enrollment_id))
            else:
                raise ValueError(f"unknown scheduler action {a.action!r}")
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO sends (enrollment_id, campaign_id, step_id, contact_id, status,"
                " next_attempt_at, queued_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", sends)
            self.conn.executemany(
                "UPDATE enrollments SET next_step = ?, next_at = ?, next_wait = ?, updated_at = ? WHERE id = ?", moves)
            self.conn.executemany(
                "UPDATE enrollments SET state = ?, exit_reason = ?, next_at = NULL, updated_at = ? WHERE id = ?", ends)
            self.conn.executemany("UPDATE enrollments SET next_at = ?, updated_at = ? WHERE id = ?", defers)

    def enrollment_sends(self, enrollment_id: int) -> list[Send]:
        """Every send row of one enrollment, in queue order."""
        return [Send(id=r["id"], enrollment_id=r["enrollment_id"], campaign_id=r["campaign_id"], step_id=r["step_id"],
                     contact_id=r["contact_id"], status=r["status"], attempts=r["attempts"],
                     message_id=r["message_id"], queued_at=dt(r["queued_at"]), sent_at=dt(r["sent_at"]),
                     next_attempt_at=dt(r["next_attempt_at"]), error_code=r["error_code"], last_error=r["last_error"])
                for r in self.query("SELECT * FROM sends WHERE enrollment_id = ? ORDER BY id",
                                    (enrollment_id,))]

    # -- simulation: delivery and clicks without SMTP or a tracker ----------------------------------

    def deliver_simulated(self, send_id: int, *, now: datetime) -> None:
        """What ``mark_sent`` does, for ``nurture simulate``'s throwaway store: the send is
        delivered at ``now`` and the enrollment's next step becomes due ``next_wait`` later."""
        with self.transaction():
            self.conn.execute("UPDATE sends SET status = 'sent', sent_at = ?, attempts = attempts + 1 WHERE id = ?",
                              (ts(now), send_id))
            self.conn.execute(
                "UPDATE enrollments SET last_sent_at = ?, next_at = CASE WHEN state = 'active' AND next_step"
                " IS NOT NULL THEN ? + coalesce(next_wait, 0) END, updated_at = ?"
                " WHERE id = (SELECT enrollment_id FROM sends WHERE id = ?)", (ts(now), ts(now), ts(now), send_id))

    def click_simulated(self, send_id: int, *, link: str, at: datetime) -> None:
        """Record a human click on the link named ``link`` of this send (simulation only)."""
        with self.transaction():
            row = self.conn.execute("SELECT campaign_id, step_id FROM sends WHERE id = ?", (send_id,)).fetchone()
            if row is None:
                raise NotFound(f"no send with id {send_id}")
            campaign_id, step_id = row
            self.conn.execute("INSERT OR IGNORE INTO links (campaign_id, step_id, name, url) VALUES (?, ?, ?, ?)",
                              (campaign_id, step_id, link, f"simulated:{link}"))
            link_id = self.scalar("SELECT id FROM links WHERE campaign_id = ? AND step_id = ? AND name = ?"
                                  " AND url = ?", (campaign_id, step_id, link, f"simulated:{link}"))
            self.conn.execute("INSERT INTO clicks (send_id, link_id, at, method, verdict, settled_at)"
                              " VALUES (?, ?, ?, 'GET', 'human', ?)", (send_id, link_id, ts(at), ts(at)))

    # -- stats ------------------------------------------------------------------------------

    def send_stats(self, campaign_id: str | None = None) -> list[StepStats]:
        """Sends per campaign and step: queued (incl. in flight and retrying), sent, failed,
        bounced (hard bounces, not counted in failed), skipped, suppressed."""
        sql = (f"SELECT campaign_id, step_id, sum(status IN {PENDING}), sum(status = 'sent'),"
               f" sum(status = 'failed' AND NOT {_BOUNCE}), sum({_BOUNCE}), sum(status = 'skipped'),"
               " sum(status = 'suppressed') FROM sends")
        params: list[Any] = []
        if campaign_id is not None:
            sql += " WHERE campaign_id = ?"
            params.append(campaign_id)
        rows = self.conn.execute(sql + " GROUP BY campaign_id, step_id", params).fetchall()
        return [StepStats(*r) for r in rows]

    def enrollment_counts(self, campaign_id: str | None = None) -> dict[str, dict[str, int]]:
        """campaign id → state → number of enrollments."""
        sql = "SELECT campaign_id, state, count(*) FROM enrollments"
        params: list[Any] = []
        if campaign_id is not None:
            sql += " WHERE campaign_id = ?"
            params.append(campaign_id)
        out: dict[str, dict[str, int]] = {}
        for cid, state, n in self.conn.execute(sql + " GROUP BY 1, 2", params):
            out.setdefault(cid, {})[state] = n
        return out

    def stored_campaign_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM campaigns ORDER BY id")]


DUE_SQL = """
SELECT e.id, e.campaign_id, e.contact_id, e.next_step, e.next_at, c.timezone, c.status,
       EXISTS (SELECT 1 FROM suppressions s WHERE s.email_key = c.email_key),
       (SELECT group_concat(t.outcome) FROM tasks t
         WHERE t.contact_id = e.contact_id AND t.campaign_id = e.campaign_id AND t.outcome IS NOT NULL),
       c.country
FROM enrollments e JOIN contacts c ON c.id = e.contact_id
WHERE e.state = 'active' AND e.next_at <= ? AND e.campaign_id IN ({marks})
ORDER BY e.next_at
LIMIT ?
"""

__all__ = ["Advance", "DueEnrollment", "EnrollResult", "EnrollmentsMixin", "StepStats", "StoredCampaign",
           "campaign_hash", "remap_step"]
