"""Store: managing single contacts (``nurture contacts list/show/set/suppress/forget``).

Listing pages by id (keyset), so ``export`` streams any number of contacts. ``forget_contact``
erases a person's personal data from every table in one transaction and keeps the rows that
reports count (sends, clicks, tasks, events), with the address replaced by a keyed hash that
the caller computes (:mod:`nurture.erasure`), so the address stays suppressed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from nurture.errors import NotFound
from nurture.models import Contact
from nurture.store.base import StoreBase, dt, ts
from nurture.store.contacts import CONTACT_FIELDS, ERASED, ContactsMixin, contact_from_row, email_key
from nurture.store.enrollments import EnrollmentsMixin
from nurture.store.filters import contact_filter

#: The prefix of an erased address's keyed hash, in contacts and suppressions.
ERASED_PREFIX = "erased:"
#: Event payload keys that hold personal data (the rest are ids, counts and times).
PERSONAL_KEYS = ("name", "email", "phone", "company", "notes", "bant", "reason", "error", "first_name",
                 "last_name", "title", "department", "raised_by", "attempt_log")
_ERASED_TEXT = "[erased]"


def _where(store: StoreBase, where: tuple[str, str] | None) -> tuple[str, list[Any]]:
    if where is None:
        return "1 = 1", []
    return contact_filter(store, where)


class PeopleMixin(ContactsMixin, EnrollmentsMixin):
    """Listing, looking into, editing, suppressing and erasing single contacts (forgetting one
    exits its enrollments: the contacts and enrollments mixins are its bases)."""

    def list_contacts(self, *, where: tuple[str, str] | None = None, after_id: int = 0,
                      limit: int = 1000, include_erased: bool = False) -> list[Contact]:
        """Contacts with id above ``after_id``, by id (page with the last id seen)."""
        cond, params = _where(self, where)
        if not include_erased:
            cond += f" AND status != '{ERASED}'"
        rows = self.query(f"SELECT * FROM contacts WHERE {cond} AND id > ? ORDER BY id LIMIT ?",
                          [*params, after_id, limit])
        return [contact_from_row(r) for r in rows]

    def contact_history(self, contact_id: int, *, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
        """What ``contacts show`` prints besides the fields: enrollments, sends, human clicks,
        tasks and the events about the contact (unsubscribes, bounces, hot, qualified …)."""
        q = self.query
        enrollments = q("""SELECT campaign_id, state, next_step, next_at, exit_reason, enrolled_at
                           FROM enrollments WHERE contact_id = ? ORDER BY enrolled_at, id""", (contact_id,))
        sends = q("""SELECT id, campaign_id, step_id, status, queued_at, sent_at, error_code, error_enhanced
                     FROM sends WHERE contact_id = ? ORDER BY id DESC LIMIT ?""", (contact_id, limit))
        clicks = q("""SELECT c.at, s.campaign_id, s.step_id, l.name AS link, l.url
                      FROM clicks c JOIN sends s ON s.id = c.send_id LEFT JOIN links l ON l.id = c.link_id
                      WHERE s.contact_id = ? AND c.verdict = 'human' AND c.kind = 'click'
                      ORDER BY c.at DESC LIMIT ?""", (contact_id, limit))
        tasks = q("""SELECT id, campaign_id, rep_id, kind, priority, status, due_at, outcome, done_at
                     FROM tasks WHERE contact_id = ? ORDER BY id DESC LIMIT ?""", (contact_id, limit))
        events = [{"at": e["at"], "kind": e["kind"]} for e in self._contact_events(contact_id)][-limit:]
        for rows, cols in ((enrollments, ("next_at", "enrolled_at")), (sends, ("queued_at", "sent_at")),
                           (clicks, ("at",)), (tasks, ("due_at", "done_at")), (events, ("at",))):
            for r in rows:
                for c in cols:
                    if not isinstance(r[c], datetime):
                        r[c] = dt(r[c])
        return {"enrollments": enrollments, "sends": sends, "clicks": clicks, "tasks": tasks, "events": events}

    def _contact_events(self, contact_id: int, *, address: str | None = None) -> list[dict[str, Any]]:
        """Events whose payload names this contact (by id, or by ``address``), oldest first."""
        # Payloads are JSON written with sort_keys and ", "/": " separators (StoreBase.append_event).
        pats = [f'%"contact_id": {contact_id},%', f'%"contact_id": {contact_id}}}%']
        sql = "SELECT id, at, kind, payload FROM events WHERE payload LIKE ? OR payload LIKE ?"
        if address:
            pats.append(f"%{address}%")
            sql += " OR payload LIKE ?"
        out: list[dict[str, Any]] = []
        for r in self.query(sql + " ORDER BY id", pats):
            payload = json.loads(r["payload"])
            if payload.get("contact_id") == contact_id or (address and address in r["payload"].lower()):
                out.append({"id": r["id"], "at": dt(r["at"]), "kind": r["kind"], "payload": payload})
        return out

    def update_contact(self, contact_id: int, *, fields: Mapping[str, str] | None = None,
                       attributes: Mapping[str, Any] | None = None, now: datetime) -> Contact:
        """Set fields (names from CONTACT_FIELDS, or ``email``) and attributes (None removes one)."""
        sets: list[str] = []
        params: list[Any] = []
        for name, value in (fields or {}).items():
            if name == "email":
                sets += ["email = ?", "email_key = ?"]
                params += [value.strip(), email_key(value)]
            elif name in CONTACT_FIELDS:
                sets.append(f"{name} = ?")
                params.append(value if value or name not in ("timezone", "owner", "territory") else None)
            else:
                raise ValueError(f"unknown contact field {name!r}")
        if attributes:
            sets.append("attributes = json_patch(attributes, ?)")
            params.append(json.dumps(dict(attributes), ensure_ascii=False))
        with self.transaction():
            if sets:
                cur = self.conn.execute(f"UPDATE contacts SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                                        [*params, ts(now), contact_id])
                if cur.rowcount == 0:
                    raise NotFound(f"no contact with id {contact_id}")
            return self.get_contact(contact_id)

    def suppression(self, email: str) -> tuple[str, datetime | None] | None:
        """(reason, since) if the address is on the suppression list."""
        row = self.query_one("SELECT reason, at FROM suppressions WHERE email_key = ?",
                             (email_key(email),))
        return None if row is None else (row["reason"], dt(row["at"]))

    def unsuppress(self, email: str, *, now: datetime) -> str | None:
        """Take the address off the suppression list; returns the reason it had, or None.

        A contact that was unsubscribed or bounced becomes active again (the caller has a
        reason to believe they want mail: a new opt-in)."""
        key = email_key(email)
        with self.transaction():
            row = self.query_one("SELECT reason FROM suppressions WHERE email_key = ?", (key,))
            if row is None:
                return None
            self.conn.execute("DELETE FROM suppressions WHERE email_key = ?", (key,))
            self.conn.execute("UPDATE contacts SET status = 'active', updated_at = ? WHERE email_key = ?"
                              " AND status IN ('unsubscribed', 'bounced')", (ts(now), key))
        return str(row["reason"])

    def has_erasures(self) -> bool:
        """Whether any address was ever erased (so imports need to check for them)."""
        return self.conn.execute("SELECT 1 FROM suppressions WHERE email_key LIKE ? LIMIT 1",
                                 (ERASED_PREFIX + "%",)).fetchone() is not None

    def erased_among(self, hashed_keys: Sequence[str]) -> set[str]:
        """Which of these keyed hashes are suppressions of erased addresses."""
        found: set[str] = set()
        keys = list(dict.fromkeys(hashed_keys))
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.conn.execute(f"SELECT email_key FROM suppressions WHERE email_key IN "
                                     f"({','.join('?' * len(chunk))})", chunk).fetchall()
            found.update(r[0] for r in rows)
        return found

    def forget_contact(self, contact_id: int, *, erased_key: str, now: datetime) -> dict[str, int]:
        """Erase the contact's personal data everywhere; returns what was changed, by kind.

        ``erased_key`` (``erased:…``, a keyed hash of the address) replaces the address in the
        contact row and the suppression list, so the scheduler's and sender's suppression
        checks keep matching it. Sends, clicks, tasks and events stay (reports count them)
        with their personal parts cleared; webhook deliveries not yet sent are cancelled.
        """
        if not erased_key.startswith(ERASED_PREFIX):
            raise ValueError("erased_key must be a keyed hash from nurture.erasure")
        counts: dict[str, int] = {}
        sqlite = self.dialect.name == "sqlite"
        if sqlite:
            # Overwrite freed space with zeros, so the old values are not left in the file's free pages.
            self.conn.execute("PRAGMA secure_delete = ON")
        with self.transaction():
            row = self.query_one("SELECT email, email_key FROM contacts WHERE id = ?", (contact_id,))
            if row is None:
                raise NotFound(f"no contact with id {contact_id}")
            address = row["email_key"]
            sup = self.query_one("SELECT reason, at FROM suppressions WHERE email_key = ?", (address,))
            self.conn.execute("DELETE FROM suppressions WHERE email_key = ?", (address,))
            self.conn.execute("INSERT OR IGNORE INTO suppressions (email_key, reason, at) VALUES (?, ?, ?)",
                              (erased_key, sup["reason"] if sup else "erased", sup["at"] if sup else ts(now)))
            counts["suppression"] = 1
            blank = ", ".join(f"{c} = ''" for c in CONTACT_FIELDS if c not in ("timezone", "owner", "territory"))
            self.conn.execute(
                f"UPDATE contacts SET email = ?, email_key = ?, {blank}, timezone = NULL, attributes = '{{}}',"
                f" status = '{ERASED}', updated_at = ? WHERE id = ?", (erased_key, erased_key, ts(now), contact_id))
            counts["contact"] = 1
            counts["enrollments_exited"] = self.exit_enrollments(contact_id, reason=ERASED, now=now)
            cur = self.conn.execute(
                "UPDATE sends SET last_error = NULL WHERE contact_id = ? AND last_error IS NOT NULL"
                " AND last_error NOT LIKE 'exited: %'", (contact_id,))
            counts["send_errors"] = cur.rowcount
            cur = self.conn.execute(
                "UPDATE clicks SET ip = NULL, user_agent = NULL, handled = 1"
                " WHERE send_id IN (SELECT id FROM sends WHERE contact_id = ?)", (contact_id,))
            counts["clicks"] = cur.rowcount
            counts["tasks"] = self._forget_tasks(contact_id, now=now)
            events, cancelled = self._forget_events(contact_id, address)
            counts["events"], counts["webhook_deliveries_cancelled"] = events, cancelled
        if sqlite:
            self.conn.execute("PRAGMA secure_delete = OFF")
            # Move the new pages into the database file and empty the WAL, which held the old ones.
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return counts

    def _forget_tasks(self, contact_id: int, *, now: datetime) -> int:
        rows = self.query("SELECT id, context, status FROM tasks WHERE contact_id = ?", (contact_id,))
        for r in rows:
            context = json.loads(r["context"] or "{}")
            for entry in context.get("timeline", []):
                for k in ("subject", "note"):
                    if k in entry:
                        entry[k] = _ERASED_TEXT
            done = r["status"] == "open"
            self.conn.execute(
                "UPDATE tasks SET reason = ?, notes = NULL, bant = '{}', attempt_log = '[]', context = ?,"
                " updated_at = ?"
                + (", status = 'done', outcome = 'erased', done_at = ?" if done else "") + " WHERE id = ?",
                [_ERASED_TEXT, json.dumps(context, sort_keys=True), ts(now), *([ts(now)] if done else []), r["id"]])
        return len(rows)

    def _forget_events(self, contact_id: int, address: str) -> tuple[int, int]:
        events = self._contact_events(contact_id, address=address)
        cancelled = 0
        for e in events:
            payload = {k: v for k, v in e["payload"].items() if k not in PERSONAL_KEYS}
            payload["erased"] = True
            self.conn.execute("UPDATE events SET payload = ? WHERE id = ?",
                              (json.dumps(payload, sort_keys=True, default=str), e["id"]))
            cur = self.conn.execute(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = 'not sent: the contact was erased'"
                " WHERE event_id = ? AND status = 'pending'", (e["id"],))
            cancelled += cur.rowcount
        return len(events), cancelled

