"""Store: what comes back (bounces, complaints, replies, out-of-office), the ``inbound`` table.

Each inbound message or provider event is one row, keyed by ``dedupe_key`` (its Message-ID, a
provider's event id, or a hash of the bytes): :meth:`InboundMixin.claim_inbound` inserts it
first, inside the caller's transaction, so a second copy (an IMAP re-read, a webhook retry)
finds the row and changes nothing. The effects themselves are decided in
:mod:`nurture.inbound.apply`; the SQL they need lives here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from nurture.store.base import StoreBase, dt, ts
from nurture.store.contacts import email_key


@dataclass(frozen=True, slots=True)
class SentTo:
    """A send nurture really made, and to whom."""

    send_id: int
    contact_id: int
    email: str
    campaign_id: str
    step_id: str
    status: str
    sent_at: datetime | None


#: Where a forward is: queued → sending → sent | retry (→ sending …) | failed.
ForwardStatus = Literal["queued", "sending", "retry", "sent", "failed"]


@dataclass(frozen=True, slots=True)
class QueuedForward:
    """A forward claimed for delivery: the bytes and the envelope."""

    id: int
    inbound_id: int
    recipient: str
    mail_from: str
    message_id: str
    data: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class ForwardRow:
    """A forward as recorded (``nurture inbound list``, tests)."""

    id: int
    inbound_id: int
    created_at: datetime
    contact_id: int | None
    task_id: int | None
    rep_id: str | None
    recipient: str
    message_id: str
    status: str
    attempts: int
    sent_at: datetime | None
    last_error: str | None


_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$", re.I)
_SENT_TO = """SELECT s.id AS send_id, s.contact_id, c.email, s.campaign_id, s.step_id, s.status, s.sent_at
              FROM sends s JOIN contacts c ON c.id = s.contact_id"""


def _sent_to(row: dict[str, Any]) -> SentTo:
    return SentTo(send_id=row["send_id"], contact_id=row["contact_id"], email=row["email"],
                  campaign_id=row["campaign_id"], step_id=row["step_id"], status=row["status"],
                  sent_at=dt(row["sent_at"]))


class InboundMixin(StoreBase):
    """The inbound record, the lookups that match it to a send, and the pauses it causes."""

    # -- the record --------------------------------------------------------------------------

    def claim_inbound(self, *, dedupe_key: str, source: str, kind: str, now: datetime, size: int,
                      subject: str | None, sender: str | None) -> int | None:
        """Insert the row for a new inbound item; None when ``dedupe_key`` was seen before."""
        row = self.query_one(
            """INSERT OR IGNORE INTO inbound (received_at, source, dedupe_key, kind, size, subject, sender)
               VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (ts(now), source[:40], dedupe_key[:500], kind, size, (subject or "")[:300] or None,
             (sender or "")[:320] or None))
        return None if row is None else int(row["id"])

    def finish_inbound(self, inbound_id: int, *, kind: str, status: str | None, recipient: str | None,
                       sent: SentTo | None, matched_by: str | None, action: str, reasons: Sequence[str],
                       out_of_office: bool = False, resume_at: datetime | None = None,
                       new_text: str | None = None, task_id: int | None = None) -> None:
        """Record what the item is, what it was matched to and what was done about it."""
        self.conn.execute(
            """UPDATE inbound SET kind = ?, status = ?, recipient = ?, send_id = ?, contact_id = ?,
                      campaign_id = ?, step_id = ?, matched_by = ?, action = ?, reasons = ?,
                      out_of_office = ?, resume_at = ?, new_text = ?, task_id = ? WHERE id = ?""",
            (kind, status, (recipient or "")[:320] or None, sent.send_id if sent else None,
             sent.contact_id if sent else None, sent.campaign_id if sent else None,
             sent.step_id if sent else None, matched_by, action[:1000],
             json.dumps([r[:500] for r in reasons][:30], ensure_ascii=False), int(out_of_office),
             ts(resume_at), (new_text or "")[:8000] or None, task_id, inbound_id))

    def get_inbound(self, *, inbound_id: int | None = None, dedupe_key: str | None = None) -> dict[str, Any] | None:
        """One inbound row (by id or by dedupe key), decoded, or None."""
        if inbound_id is not None:
            row = self.query_one("SELECT * FROM inbound WHERE id = ?", (inbound_id,))
        else:
            row = self.query_one("SELECT * FROM inbound WHERE dedupe_key = ?", (dedupe_key,))
        return None if row is None else _decoded(row)

    def list_inbound(self, *, kind: str | None = None, unmatched: bool = False, contact_id: int | None = None,
                     limit: int = 50) -> list[dict[str, Any]]:
        """Inbound rows newest first: all, one kind, those matched to no send, or one contact's."""
        sql = "SELECT * FROM inbound WHERE 1 = 1"
        params: list[Any] = []
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if unmatched:
            sql += " AND send_id IS NULL"
        if contact_id is not None:
            sql += " AND contact_id = ?"
            params.append(contact_id)
        rows = self.query(sql + " ORDER BY received_at DESC, id DESC LIMIT ?", [*params, int(limit)])
        return [_decoded(r) for r in rows]

    # -- matching ------------------------------------------------------------------------------

    def sent_to(self, send_id: int) -> SentTo | None:
        """The send ``send_id`` if it was handed to SMTP (sent, or failed after an attempt)."""
        row = self.query_one(_SENT_TO + " WHERE s.id = ? AND s.attempts > 0", (send_id,))
        return None if row is None else _sent_to(row)

    def sends_by_message_id(self, message_ids: Iterable[str]) -> list[SentTo]:
        """Our sends carrying any of these Message-IDs (index sends_message_id), newest first."""
        ids = list(dict.fromkeys(m for m in message_ids if m))[:50]
        if not ids:
            return []
        rows = self.query(
            _SENT_TO + f" WHERE s.message_id IN ({','.join('?' * len(ids))}) AND s.attempts > 0 ORDER BY s.id DESC",
            ids)
        return [_sent_to(r) for r in rows]

    def last_send_to(self, email: str) -> SentTo | None:
        """The latest send handed to SMTP for this address (a provider's signed event names only it)."""
        row = self.query_one(
            _SENT_TO + " WHERE c.email_key = ? AND s.attempts > 0 ORDER BY s.id DESC LIMIT 1", (email_key(email),))
        return None if row is None else _sent_to(row)

    # -- effects -------------------------------------------------------------------------------

    def soft_bounce_times(self, contact_id: int) -> list[datetime]:
        """When the contact's soft bounces came that count towards suppression (not policy
        blocks: a 5.7.x refusal is about the sender), oldest first."""
        rows = self.query(
            """SELECT received_at FROM inbound WHERE contact_id = ? AND kind = 'soft_bounce'
               AND (status IS NULL OR status NOT LIKE '5.7.%') ORDER BY received_at""", (contact_id,))
        return [d for d in (dt(r["received_at"]) for r in rows) if d is not None]

    def active_enrollments_of(self, contact_id: int) -> list[tuple[str, str | None]]:
        """(campaign id, contact time zone) of the contact's active enrollments."""
        rows = self.conn.execute(
            """SELECT e.campaign_id, c.timezone FROM enrollments e JOIN contacts c ON c.id = e.contact_id
               WHERE e.contact_id = ? AND e.state = 'active' ORDER BY e.campaign_id""", (contact_id,)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def pause_enrollments(self, contact_id: int, *, campaign_id: str, until: datetime, now: datetime) -> int:
        """Hold the contact's active enrollment in ``campaign_id`` until ``until``: its next step
        (and any of its sends still queued) not before then, also when the step in flight is
        delivered later (``mark_sent`` respects ``paused_until``). Returns the rows paused."""
        t, u = ts(now), ts(until)
        with self.transaction():
            cur = self.conn.execute(
                """UPDATE enrollments SET paused_until = :u, updated_at = :t,
                          next_at = CASE WHEN next_at IS NOT NULL AND next_at < :u THEN :u ELSE next_at END
                   WHERE contact_id = :c AND campaign_id = :k AND state = 'active'""",
                {"u": u, "t": t, "c": contact_id, "k": campaign_id})
            self.conn.execute(
                """UPDATE sends SET next_attempt_at = :u WHERE +status IN ('queued', 'retry')
                   AND next_attempt_at < :u AND enrollment_id IN (
                       SELECT id FROM enrollments WHERE contact_id = :c AND campaign_id = :k AND state = 'active')""",
                {"u": u, "c": contact_id, "k": campaign_id})
            return int(cur.rowcount)

    def company_enrollments(self, domain: str, *, campaign_id: str, exclude_contact: int) -> list[int]:
        """Contacts at ``domain`` (the part after @) with an active enrollment in the campaign."""
        if not _DOMAIN.match(domain):
            return []  # no LIKE wildcards (or anything else odd) from an address
        rows = self.conn.execute(
            """SELECT c.id FROM contacts c JOIN enrollments e ON e.contact_id = c.id
               WHERE c.email_key LIKE ? AND e.campaign_id = ? AND e.state = 'active' AND c.id != ?
               ORDER BY c.id""",
            ("%@" + domain.lower(), campaign_id, exclude_contact)).fetchall()
        return [int(r[0]) for r in rows]

    # -- figures -------------------------------------------------------------------------------

    def inbound_funnel(self, campaign_id: str) -> dict[str, dict[str, int]]:
        """Per step of ``campaign_id``: inbound items matched to its sends, by kind
        (``async_bounces`` = hard bounces reported after the relay accepted, ``soft_bounces``,
        ``complaints``, ``replies`` (unsubscribe requests included), ``out_of_office``,
        ``auto_replies``)."""
        out: dict[str, dict[str, int]] = {}
        names = {"hard_bounce": "async_bounces", "soft_bounce": "soft_bounces", "complaint": "complaints",
                 "reply": "replies", "unsubscribe": "replies", "auto_reply": "auto_replies"}
        for r in self.query(
                """SELECT step_id, kind, out_of_office, count(DISTINCT send_id) AS n FROM inbound
                   WHERE campaign_id = ? AND send_id IS NOT NULL GROUP BY step_id, kind, out_of_office""",
                (campaign_id,)):
            figs = out.setdefault(r["step_id"], {})
            name = "out_of_office" if r["kind"] == "auto_reply" and r["out_of_office"] else names.get(r["kind"])
            if name:
                figs[name] = figs.get(name, 0) + int(r["n"])
        return out

    def inbound_counts(self, campaign_id: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """``{campaign: {step: {kind: n}}}`` of matched inbound items (the figures of
        :meth:`inbound_funnel`), for every campaign or one."""
        ids = [campaign_id] if campaign_id else [r[0] for r in self.conn.execute(
            "SELECT DISTINCT campaign_id FROM inbound WHERE campaign_id IS NOT NULL ORDER BY 1")]
        return {cid: self.inbound_funnel(cid) for cid in ids}

    # -- replies forwarded to the owner rep ----------------------------------------------------

    def queue_forward(self, *, inbound_id: int, recipient: str, mail_from: str, message_id: str, data: bytes,
                      now: datetime, contact_id: int | None = None, task_id: int | None = None,
                      rep_id: str | None = None) -> int | None:
        """Queue the forward of inbound item ``inbound_id``; None when it was queued before."""
        row = self.query_one(
            """INSERT OR IGNORE INTO forwards (inbound_id, created_at, contact_id, task_id, rep_id, recipient,
                      mail_from, message_id, data, next_attempt_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (inbound_id, ts(now), contact_id, task_id, rep_id, recipient, mail_from, message_id, data, ts(now)))
        return None if row is None else int(row["id"])

    def claim_forwards(self, *, now: datetime, lease: timedelta, limit: int = 20) -> list[QueuedForward]:
        """Due forwards, marked ``sending`` until ``now + lease``. One still ``sending`` past its
        lease was interrupted mid-delivery: it becomes ``failed``, never sent again (it may have
        gone out; a rep gets a reply at most once)."""
        with self.transaction():
            self.conn.execute(
                """UPDATE forwards SET status = 'failed', last_error = 'interrupted while sending: not retried'
                   WHERE status = 'sending' AND next_attempt_at <= ?""", (ts(now),))
            rows = self.query(
                """UPDATE forwards SET status = 'sending', attempts = attempts + 1, next_attempt_at = ?
                   WHERE id IN (SELECT id FROM forwards WHERE status IN ('queued', 'retry') AND next_attempt_at <= ?
                                ORDER BY next_attempt_at, id LIMIT ?)
                     AND status IN ('queued', 'retry')
                   RETURNING id, inbound_id, recipient, mail_from, message_id, data, attempts""",
                (ts(now + lease), ts(now), int(limit)))
        return sorted((QueuedForward(id=r["id"], inbound_id=r["inbound_id"], recipient=r["recipient"],
                                     mail_from=r["mail_from"], message_id=r["message_id"], data=bytes(r["data"]),
                                     attempts=r["attempts"]) for r in rows), key=lambda f: f.id)

    def finish_forward(self, forward_id: int, *, status: ForwardStatus, now: datetime, error: str | None = None,
                       next_at: datetime | None = None) -> None:
        """Record a delivery attempt: ``sent``, ``retry`` (again at ``next_at``) or ``failed``."""
        self.conn.execute(
            """UPDATE forwards SET status = ?, sent_at = ?, last_error = ?, next_attempt_at = ?
               WHERE id = ? AND status = 'sending'""",
            (status, ts(now) if status == "sent" else None, (error or "")[:1000] or None,
             ts(next_at or now), forward_id))

    # -- webhook signatures seen -----------------------------------------------------------------

    def claim_webhook_token(self, *, provider: str, token: str, now: datetime, keep: timedelta) -> bool:
        """Record ``token`` of ``provider`` as used; False when it was used before (a replay).
        Tokens older than ``keep`` are forgotten (their timestamps are refused anyway)."""
        self.conn.execute("DELETE FROM webhook_tokens WHERE seen_at < ?", (ts(now - keep),))
        row = self.query_one(
            """INSERT OR IGNORE INTO webhook_tokens (provider, token, seen_at) VALUES (?, ?, ?)
               RETURNING token""", (provider[:40], token[:200], ts(now)))
        return row is not None

    def list_forwards(self, *, inbound_id: int | None = None, inbound_ids: Sequence[int] | None = None,
                      limit: int = 50) -> list[ForwardRow]:
        """Forwards newest first (or those of ``inbound_id`` / ``inbound_ids``), without their bytes."""
        sql = """SELECT id, inbound_id, created_at, contact_id, task_id, rep_id, recipient, message_id, status,
                        attempts, sent_at, last_error FROM forwards"""
        params: list[Any] = []
        if inbound_id is not None:
            sql += " WHERE inbound_id = ?"
            params.append(inbound_id)
        elif inbound_ids is not None:
            ids = [int(i) for i in inbound_ids][:10_000]
            if not ids:
                return []
            sql += f" WHERE inbound_id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        rows = self.query(sql + " ORDER BY id DESC LIMIT ?", [*params, int(limit)])
        return [ForwardRow(id=r["id"], inbound_id=r["inbound_id"], created_at=_when(r["created_at"]),
                           contact_id=r["contact_id"], task_id=r["task_id"], rep_id=r["rep_id"],
                           recipient=r["recipient"], message_id=r["message_id"], status=r["status"],
                           attempts=r["attempts"], sent_at=dt(r["sent_at"]), last_error=r["last_error"])
                for r in rows]


def _when(value: float) -> datetime:
    moment = dt(value)
    assert moment is not None
    return moment


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["reasons"] = json.loads(row["reasons"] or "[]")
    row["received_at"] = dt(row["received_at"])
    row["resume_at"] = dt(row["resume_at"])
    row["out_of_office"] = bool(row["out_of_office"])
    return row


__all__ = ["ForwardRow", "ForwardStatus", "InboundMixin", "QueuedForward", "SentTo"]
