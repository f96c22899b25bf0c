"""Store: contacts and suppressions.

Contacts are keyed by ``email_key`` (the lower-cased address), so imports upsert
case-insensitively. Suppressions are keyed the same way and outlive the contact row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture.errors import NotFound
from nurture.models import Contact, ContactStatus
from nurture.store.base import StoreBase, ts

#: Contact columns an import may fill (besides email), in table order.
CONTACT_FIELDS = ("first_name", "last_name", "company", "industry", "phone", "timezone", "owner", "territory",
                  "country", "title", "department")
#: Columns ``--where FIELD=VALUE`` may name directly; anything else is an attributes key.
FILTER_COLUMNS = ("email", *CONTACT_FIELDS, "status")
#: The statuses ``set_contact_status`` sets (``erased`` is set only by forgetting a contact).
CONTACT_STATUSES: tuple[ContactStatus, ...] = ("active", "unsubscribed", "bounced")
#: The status of a contact whose personal data was erased (``nurture contacts forget``).
ERASED: ContactStatus = "erased"
_NULLABLE = ("timezone", "owner", "territory")


@dataclass(frozen=True, slots=True)
class ContactRow:
    """One contact as imported: ``fields`` maps names from :data:`CONTACT_FIELDS` to values."""

    email: str
    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode


def email_key(email: str) -> str:
    """The case-insensitive key contacts and suppressions are stored under."""
    return email.strip().lower()


# Empty cells never erase what is stored: an import can update a few columns of known contacts.
# Numbered parameters: 1 email, 2 email_key, 3.. the fields, then attributes, time, attributes patch.
_N = len(CONTACT_FIELDS)
_UPSERT = f"""
INSERT INTO contacts (email, email_key, {", ".join(CONTACT_FIELDS)}, attributes, created_at, updated_at)
VALUES (?1, ?2, {", ".join(f"?{i + 3}" for i in range(_N))}, ?{_N + 3}, ?{_N + 4}, ?{_N + 4})
ON CONFLICT(email_key) DO UPDATE SET
    email = excluded.email,
    {", ".join(
        f"{c} = COALESCE(excluded.{c}, contacts.{c})" if c in _NULLABLE
        else f"{c} = CASE WHEN excluded.{c} = '' THEN contacts.{c} ELSE excluded.{c} END"
        for c in CONTACT_FIELDS)},
    attributes = json_patch(json_patch(excluded.attributes, contacts.attributes), ?{_N + 5}),
    updated_at = excluded.updated_at
"""
_DEFAULTS = tuple(None if c in _NULLABLE else "" for c in CONTACT_FIELDS)


class ContactsMixin(StoreBase):
    """Contacts, their status, and the suppression list."""

    def upsert_contacts(self, rows: Sequence[ContactRow], *, now: datetime) -> tuple[int, int]:
        """Insert or update ``rows`` in one transaction; returns (new, updated).

        A row updating an earlier row of the same batch counts as updated.
        """
        if not rows:
            return 0, 0
        at = ts(now)
        params: list[tuple[Any, ...]] = []
        for r in rows:
            get = r.fields.get
            attrs = _dumps(r.attributes)
            nonempty = {k: v for k, v in r.attributes.items() if v != "" and v is not None}
            params.append((r.email.strip(), email_key(r.email),
                           *[get(c) or d for c, d in zip(CONTACT_FIELDS, _DEFAULTS, strict=True)],
                           attrs, at, attrs if len(nonempty) == len(r.attributes) else _dumps(nonempty)))
        with self.transaction():
            # New rows get ids above the current maximum, so counting those tells new from updated.
            top = self.scalar("SELECT coalesce(max(id), 0) FROM contacts")
            self.conn.executemany(_UPSERT, params)
            new = int(self.scalar("SELECT count(*) FROM contacts WHERE id > ?", (top,)))
        return new, len(rows) - new

    def get_contact(self, contact_id: int) -> Contact:
        """The contact with this id, or :class:`NotFound`."""
        row = self.query_one("SELECT * FROM contacts WHERE id = ?", (contact_id,))
        if row is None:
            raise NotFound(f"no contact with id {contact_id}")
        return contact_from_row(row)

    def get_contact_by_email(self, email: str) -> Contact | None:
        """The contact with this address (any letter case), or None."""
        row = self.query_one("SELECT * FROM contacts WHERE email_key = ?", (email_key(email),))
        return None if row is None else contact_from_row(row)

    def count_contacts(self) -> int:
        return int(self.scalar("SELECT count(*) FROM contacts"))

    def set_contact_status(self, contact_id: int, status: ContactStatus, *, now: datetime) -> None:
        """Set ``active``, ``unsubscribed`` or ``bounced``. The scheduler exits the contact's
        enrollments at their next due step; callers that want it at once use ``exit_enrollments``."""
        if status not in CONTACT_STATUSES:
            raise ValueError(f"unknown contact status {status!r}")
        cur = self.conn.execute("UPDATE contacts SET status = ?, updated_at = ? WHERE id = ?",
                                (status, ts(now), contact_id))
        if cur.rowcount == 0:
            raise NotFound(f"no contact with id {contact_id}")

    def suppress(self, email: str, reason: str, *, now: datetime) -> None:
        """Never mail ``email`` again. The first reason recorded is kept.

        A matching contact with reason ``unsubscribed`` or ``bounced`` also gets that status.
        """
        key = email_key(email)
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO suppressions (email_key, reason, at) VALUES (?, ?, ?)",
                              (key, reason, ts(now)))
            if reason in ("unsubscribed", "bounced"):
                self.conn.execute(
                    "UPDATE contacts SET status = ?, updated_at = ? WHERE email_key = ? AND status = 'active'",
                    (reason, ts(now), key))

    def is_suppressed(self, email: str) -> bool:
        return self.conn.execute("SELECT 1 FROM suppressions WHERE email_key = ?",
                                 (email_key(email),)).fetchone() is not None


def contact_from_row(row: Mapping[str, Any]) -> Contact:
    return Contact(
        id=row["id"], email=row["email"], first_name=row["first_name"], last_name=row["last_name"],
        company=row["company"], industry=row["industry"], phone=row["phone"], timezone=row["timezone"],
        owner=row["owner"], territory=row["territory"], attributes=json.loads(row["attributes"] or "{}"),
        score=row["score"], hot=bool(row["hot"]), status=row["status"],
        country=row.get("country") or "", title=row.get("title") or "", department=row.get("department") or "",
    )
