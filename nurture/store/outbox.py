"""Store: the outbox / ledger (``sends``) and the links table.

A send row moves ``queued → sending → sent`` (or ``retry`` / ``failed``), or is set aside at
claim time as ``suppressed`` / ``skipped``. ``sending`` rows carry a lease (owner and expiry):
a sender that dies holding a lease loses it when it expires and the row is claimed again.
The Message-ID is stored before the first attempt and reused on every retry, so the only
mails that can reach a recipient twice are those in flight when a sender was killed, and
they carry the same Message-ID.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from nurture.errors import is_hard_bounce
from nurture.models import Contact, Send
from nurture.store.base import dt, ts
from nurture.store.contacts import ContactsMixin, contact_from_row
from nurture.store.enrollments import EnrollmentsMixin

#: What :meth:`OutboxMixin.mark_failed` made of a permanent failure.
Failure = Literal["bounced", "blocked", "failed", "sent"]


def _send(row: Mapping[str, Any]) -> Send:
    return Send(
        id=row["id"], enrollment_id=row["enrollment_id"], campaign_id=row["campaign_id"],
        step_id=row["step_id"], contact_id=row["contact_id"], status=row["status"],
        attempts=row["attempts"], message_id=row["message_id"], queued_at=dt(row["queued_at"]),
        sent_at=dt(row["sent_at"]), next_attempt_at=dt(row["next_attempt_at"]),
        error_code=row["error_code"], last_error=row["last_error"],
    )


class OutboxMixin(ContactsMixin, EnrollmentsMixin):
    """Claiming, marking and reading outbox rows; get-or-create of tracked links.

    Claims and bounces suppress addresses and exit enrollments: the contacts and enrollments
    mixins are its bases."""

    # -- claiming ---------------------------------------------------------------------------

    def claim_sends(self, *, owner: str, now: datetime, lease: timedelta, limit: int,
                    skip_campaigns: Iterable[str] = ()) -> list[Send]:
        """Claim up to ``limit`` due rows for ``owner`` in one IMMEDIATE transaction.

        Due rows are ``queued``/``retry`` rows whose ``next_attempt_at <= now``, and
        ``sending`` rows whose lease has expired (a crashed sender's). Claimed rows become
        ``sending`` with ``lease_until = now + lease``. Suppression is checked again here:
        a row whose contact is suppressed (or no longer active) becomes ``suppressed``, a
        row whose enrollment has exited becomes ``skipped``; both are returned with that
        status so callers can count them, and only ``sending`` rows are to be delivered.
        Rows come back oldest due first. ``skip_campaigns`` leaves those campaigns' rows
        alone (the sender skips campaigns that are waiting on their own rate limit).
        """
        t, until = ts(now), ts(now + lease)
        skip = list(skip_campaigns)
        skip_sql = f"AND campaign_id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        # PostgreSQL: concurrent claimers take disjoint rows (SQLite serialises on BEGIN IMMEDIATE).
        skip_locked = self.dialect.skip_locked
        limit = int(limit)
        with self.transaction():
            # Walks in index order (sends_claim: status, next_attempt_at), each stopping after
            # ``limit`` rows, merged here: no sort of everything that is due.
            candidates: list[tuple[float, int]] = []
            for status in ("queued", "retry"):
                if not skip:
                    candidates += self.conn.execute(
                        "SELECT next_attempt_at, id FROM sends WHERE status = ? AND next_attempt_at <= ?"
                        f" ORDER BY next_attempt_at, id LIMIT ?{skip_locked}", (status, t, limit)).fetchall()
                    continue
                # Skipping a campaign must not mean stepping over its (maybe huge) backlog in
                # due order: walk each other campaign's slice of sends_claim_campaign instead.
                for campaign_id in self._outbox_campaigns(status):
                    if campaign_id in skip:
                        continue
                    candidates += self.conn.execute(
                        "SELECT next_attempt_at, id FROM sends WHERE status = ? AND campaign_id = ?"
                        f" AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?{skip_locked}",
                        (status, campaign_id, t, limit)).fetchall()
            candidates += self.conn.execute(
                f"SELECT next_attempt_at, id FROM sends WHERE status = 'sending' AND lease_until < ? {skip_sql}"
                f" LIMIT ?{skip_locked}", [t, *skip, limit]).fetchall()
            ids = [i for _, i in sorted(candidates)[:limit]]
            if not ids:
                return []
            rows = self.query(
                f"UPDATE sends SET status = 'sending', lease_owner = ?, lease_until = ?"
                f" WHERE id IN ({','.join('?' * len(ids))}) RETURNING *",
                [owner, until, *ids],
            )
            ids = [r["id"] for r in rows]
            marks = ",".join("?" * len(ids))
            blocked = self.query(
                f"""
                SELECT s.id, s.contact_id,
                       CASE WHEN e.state = 'exited' THEN 'skipped' ELSE 'suppressed' END AS why,
                       coalesce((SELECT reason FROM suppressions x WHERE x.email_key = c.email_key),
                                c.status) AS reason
                FROM sends s
                JOIN contacts c ON c.id = s.contact_id
                JOIN enrollments e ON e.id = s.enrollment_id
                WHERE s.id IN ({marks})
                  AND (c.status != 'active' OR e.state = 'exited'
                       OR EXISTS (SELECT 1 FROM suppressions x WHERE x.email_key = c.email_key))
                """,
                ids,
            )
            why = {b["id"]: b["why"] for b in blocked}
            for send_id, status in why.items():
                self.conn.execute(
                    "UPDATE sends SET status = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                    (status, send_id),
                )
            # A suppressed contact's enrollments end here; without this they would wait forever
            # for the delivery of a send that will never go (next_at stays NULL while in flight).
            reasons = {b["contact_id"]: b["reason"] for b in blocked if b["why"] == "suppressed"}
            for contact_id, reason in reasons.items():
                self.exit_enrollments(
                    contact_id, reason=reason if reason in ("unsubscribed", "bounced") else "suppressed", now=now)
            for r in rows:
                if r["id"] in why:
                    r["status"] = why[r["id"]]
                    self.append_event(
                        f"send.{why[r['id']]}",
                        {"send_id": r["id"], "campaign_id": r["campaign_id"], "step_id": r["step_id"],
                         "contact_id": r["contact_id"]}, now=now)
        rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
        return [_send(r) for r in rows]

    def _outbox_campaigns(self, status: str) -> list[str]:
        """Campaigns with rows in ``status``: one index seek per campaign (a loose index scan
        of sends_claim_campaign), however many rows each has."""
        rows = self.conn.execute(
            """
            WITH RECURSIVE c(id) AS (
                SELECT (SELECT min(campaign_id) FROM sends WHERE status = ?)
                UNION ALL
                SELECT (SELECT min(campaign_id) FROM sends WHERE status = ? AND campaign_id > c.id)
                FROM c WHERE c.id IS NOT NULL)
            SELECT id FROM c WHERE id IS NOT NULL
            """, (status, status)).fetchall()
        return [r[0] for r in rows]

    def release_sends(self, send_ids: Iterable[int], *, owner: str) -> int:
        """Give claimed rows that were never attempted back to the queue (graceful stop).

        Only rows still leased by ``owner`` are released; returns how many were. (A lease
        owner is set only while a row is ``sending``: every mark clears it.)
        """
        ids = list(send_ids)
        if not ids:
            return 0
        with self.transaction():
            cur = self.conn.execute(
                f"""
                UPDATE sends SET status = CASE WHEN attempts > 0 THEN 'retry' ELSE 'queued' END,
                                 lease_owner = NULL, lease_until = NULL
                WHERE lease_owner = ? AND id IN ({",".join("?" * len(ids))})
                """,
                [owner, *ids],
            )
            return cur.rowcount

    def outbox_contacts(self, contact_ids: Iterable[int]) -> dict[int, Contact]:
        """The contacts of claimed rows, by id (one query for a batch)."""
        ids = sorted(set(contact_ids))
        out: dict[int, Contact] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for row in self.query(
                f"SELECT * FROM contacts WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ):
                out[row["id"]] = contact_from_row(row)
        return out

    # -- marking ----------------------------------------------------------------------------

    def set_message_id(self, send_id: int, mid: str) -> None:
        """Record the Message-ID before the first attempt; every retry reuses it."""
        self.conn.execute("UPDATE sends SET message_id = ? WHERE id = ?", (mid, send_id))

    def mark_sent(self, send_id: int, *, now: datetime) -> bool:
        """The server answered 250: ``sent_at = now`` (the delivery time clicks are judged
        against). In the same transaction the enrollment gets ``last_sent_at = now`` and,
        when ``next_wait`` is set, ``next_at = now + next_wait``. Idempotent: returns False
        when the row was already sent."""
        t = ts(now)
        with self.transaction():
            row = self.query_one(
                """
                UPDATE sends SET status = 'sent', sent_at = ?, attempts = attempts + 1,
                                 lease_owner = NULL, lease_until = NULL
                WHERE id = ? AND status != 'sent'
                RETURNING enrollment_id, campaign_id, step_id, contact_id, message_id
                """,
                (t, send_id),
            )
            if row is None:
                return False
            self.conn.execute(
                """
                UPDATE enrollments SET last_sent_at = :t, updated_at = :t,
                    next_at = CASE WHEN next_wait IS NOT NULL AND state = 'active'
                                   THEN (CASE WHEN paused_until > :t + next_wait THEN paused_until
                                              ELSE :t + next_wait END)
                                   ELSE next_at END
                WHERE id = :e
                """,
                {"t": t, "e": row["enrollment_id"]},
            )
            self.append_event("send.sent", {"send_id": send_id, **row}, now=now)
        return True

    def mark_retry(self, send_id: int, *, next_at: datetime, code: int | None, error: str,
                   enhanced: str | None = None) -> None:
        """A transient failure: try again at ``next_at`` (same Message-ID)."""
        with self.transaction():
            self.conn.execute(
                """
                UPDATE sends SET status = 'retry', attempts = attempts + 1, next_attempt_at = ?,
                                 error_code = ?, error_enhanced = ?, last_error = ?,
                                 lease_owner = NULL, lease_until = NULL
                WHERE id = ? AND status != 'sent'
                """,
                (ts(next_at), code, enhanced, error[:1000], send_id),
            )

    def mark_failed(self, send_id: int, *, now: datetime, code: int | None, enhanced: str | None,
                    error: str, bounce: bool | None = None) -> Failure:
        """A permanent failure. Returns what it was: ``"bounced"``, ``"blocked"`` or ``"failed"``
        (``"sent"`` when the row had been delivered already, and nothing changed).

        A hard bounce (550 / 5.1.x; ``bounce`` overrides the rule) suppresses the address
        and exits the contact's active enrollments. A policy block (5.7.x) is recorded with
        its enhanced code and reported, and does not touch the recipient.
        """
        if bounce is None:
            bounce = is_hard_bounce(code=code, enhanced=enhanced)
        kind: Failure = "bounced" if bounce else ("blocked" if enhanced and enhanced.startswith("5.7.") else "failed")
        with self.transaction():
            row = self.query_one(
                """
                UPDATE sends SET status = 'failed', attempts = attempts + 1, error_code = ?,
                                 error_enhanced = ?, last_error = ?, lease_owner = NULL, lease_until = NULL
                WHERE id = ? AND status != 'sent'
                RETURNING campaign_id, step_id, contact_id, message_id
                """,
                (code, enhanced, error[:1000], send_id),
            )
            if row is None:
                return "sent"
            payload = {"send_id": send_id, "code": code, "enhanced": enhanced, "error": error[:300],
                       "policy": kind == "blocked", **row}
            if bounce:
                self._bounce_contact(row["contact_id"], now=now)
            else:
                # The step is given up, not the lead: the enrollment goes on to its next step
                # as after a skipped one (it would otherwise wait for this delivery forever).
                self.conn.execute(
                    """UPDATE enrollments SET next_at = :t + next_wait, updated_at = :t
                       WHERE id = (SELECT enrollment_id FROM sends WHERE id = :s)
                         AND state = 'active' AND next_at IS NULL AND next_wait IS NOT NULL""",
                    {"t": ts(now), "s": send_id})
            self.append_event("send.bounced" if bounce else "send.failed", payload, now=now)
        return kind

    def _bounce_contact(self, contact_id: int, *, now: datetime) -> None:
        contact = self.query_one("SELECT email FROM contacts WHERE id = ?", (contact_id,))
        if contact is None:
            return
        self.suppress(contact["email"], "bounced", now=now)
        self.exit_enrollments(contact_id, reason="bounced", now=now)

    # -- reading ----------------------------------------------------------------------------

    def get_send(self, send_id: int) -> Send | None:
        row = self.query_one("SELECT * FROM sends WHERE id = ?", (send_id,))
        return None if row is None else _send(row)

    def outbox_counts(self, *, campaign_id: str | None = None) -> dict[str, int]:
        """Rows per status (all campaigns, or one)."""
        sql = "SELECT status, count(*) AS n FROM sends"
        params: list[Any] = []
        if campaign_id is not None:
            sql += " WHERE campaign_id = ?"
            params.append(campaign_id)
        return {r["status"]: r["n"] for r in self.query(sql + " GROUP BY status", params)}

    # -- links ------------------------------------------------------------------------------

    def link_id(self, campaign_id: str, step_id: str, name: str, url: str, honeypot: bool = False) -> int:
        """The id of the tracked link (campaign, step, name, url), created on first use.

        Cached in memory: links are never changed or deleted, so the cache cannot go stale.
        """
        cache: dict[tuple[str, str, str, str], int] = self.__dict__.setdefault("_link_cache", {})
        key = (campaign_id, step_id, name, url)
        found = cache.get(key)
        if found is not None:
            return found
        params = (campaign_id, step_id, name, url)
        self.conn.execute(
            "INSERT OR IGNORE INTO links (campaign_id, step_id, name, url, honeypot) VALUES (?, ?, ?, ?, ?)",
            (*params, int(bool(honeypot))),
        )
        row = self.query_one(
            "SELECT id FROM links WHERE campaign_id = ? AND step_id = ? AND name = ? AND url = ?", params)
        assert row is not None
        cache[key] = int(row["id"])
        return cache[key]

