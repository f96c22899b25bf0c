"""The right to erasure (GDPR Art. 17): ``nurture contacts forget EMAIL``.

The person's personal data goes from every table: the contact's fields and attributes, the
address in the contact row and the suppression list, SMTP error texts of their sends, the IP
address and user agent of their clicks, their tasks' notes, BANT answers and rendered reasons,
and the personal parts of events (including webhook payloads; deliveries not yet sent are
cancelled). Rows that reports count (sends, clicks, tasks, events) stay, without the person.

The address is replaced by a keyed hash (HMAC-SHA256 under the tracking secret, so the
database alone does not let anyone test addresses against it). The suppression list keeps
that hash: the erased contact is never mailed, and importing the address again is refused
with a row error, so a CRM re-sync does not bring the person back. Rotating the tracking
secret keeps old erasures matching while the old key stays in ``NURTURE_OLD_KEYS``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.errors import NotFound
from nurture.store import Store
from nurture.store.contacts import email_key
from nurture.store.people import ERASED_PREFIX

_LABELS = {
    "contact": "contact fields, attributes and address",
    "suppression": "suppression entry (address replaced by a keyed hash; stays suppressed)",
    "enrollments_exited": "enrollments ended",
    "send_errors": "send error texts",
    "clicks": "clicks' IP address and user agent",
    "tasks": "tasks' notes, BANT answers and reasons",
    "events": "event payloads (webhooks)",
    "webhook_deliveries_cancelled": "webhook deliveries not yet sent, cancelled",
}


def erased_key(email: str, *, keys: Mapping[str, bytes], key_id: str) -> str:
    """The keyed hash an erased address is kept under: ``erased:<key id>:<hex>``."""
    digest = hmac.new(keys[key_id], b"nurture-erasure\0" + email_key(email).encode(), hashlib.sha256)
    return f"{ERASED_PREFIX}{key_id}:{digest.hexdigest()[:40]}"


def erased_keys(email: str, *, keys: Mapping[str, bytes]) -> list[str]:
    """The address's hash under every configured key (current and old)."""
    return [erased_key(email, keys=keys, key_id=k) for k in keys]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What ``forget`` erased: counts by kind (see ``lines``)."""

    email: str
    contact_id: int
    counts: Mapping[str, int]

    def lines(self) -> list[str]:
        return [f"{n:>5}  {_LABELS.get(k, k)}" for k, n in self.counts.items()]


def forget(store: Store, *, email: str, keys: Mapping[str, bytes], key_id: str, now: datetime) -> Erasure:
    """Erase the contact with this address (any letter case); :class:`NotFound` if there is none."""
    contact = store.get_contact_by_email(email)
    if contact is None:
        if is_erased(store, email, keys=keys):
            raise NotFound(f"{email} was already erased (it stays suppressed)")
        raise NotFound(f"no contact with the address {email}")
    counts = store.forget_contact(contact.id, erased_key=erased_key(email, keys=keys, key_id=key_id), now=now)
    return Erasure(email=email, contact_id=contact.id, counts=counts)


def is_erased(store: Store, email: str, *, keys: Mapping[str, bytes]) -> bool:
    """Whether this address was erased (under any configured key)."""
    return bool(store.erased_among(erased_keys(email, keys=keys)))


def erased_filter(store: Store, *, keys: Mapping[str, bytes]) -> Callable[[Sequence[str]], set[str]] | None:
    """For ``import_contacts(erased=…)``: email keys → those that were erased; None (no check
    needed) when nothing was ever erased."""
    if not store.has_erasures():
        return None

    def erased(email_keys: Sequence[str]) -> set[str]:
        by_hash = {h: k for k in email_keys for h in erased_keys(k, keys=keys)}
        return {by_hash[h] for h in store.erased_among(list(by_hash))}

    return erased
