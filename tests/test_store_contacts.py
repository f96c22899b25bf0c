"""ContactsMixin on a real SQLite file: upserts, lookups, status, suppressions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.errors import NotFound
from nurture.store.contacts import ContactRow, email_key


def test_upsert_counts_new_and_updated_including_repeats_in_one_batch(store, now):
    rows = [ContactRow("A@x.example", {"first_name": "A"}), ContactRow("b@x.example"),
            ContactRow("a@X.example", {"company": "Acme"})]
    assert store.upsert_contacts(rows, now=now) == (2, 1)
    assert store.upsert_contacts([ContactRow("b@x.example"), ContactRow("c@x.example")], now=now) == (1, 1)
    assert store.upsert_contacts([], now=now) == (0, 0)
    a = store.get_contact_by_email("a@x.example")
    assert (a.email, a.first_name, a.company) == ("a@X.example", "A", "Acme")
    assert store.count_contacts() == 3


def test_empty_values_never_erase_and_attributes_merge(store, now):
    store.upsert_contacts([ContactRow("k@x.example", {"first_name": "Ken", "timezone": "Asia/Tokyo", "owner": "aoki"},
                                      {"tier": "gold", "orders": "12"})], now=now)
    later = now + timedelta(hours=1)
    store.upsert_contacts([ContactRow("K@x.example", {"first_name": "", "timezone": "", "owner": "baker"},
                                      {"tier": "", "region": "Kanto"})], now=later)
    k = store.get_contact_by_email("k@x.example")
    assert (k.first_name, k.timezone, k.owner) == ("Ken", "Asia/Tokyo", "baker")
    assert dict(k.attributes) == {"tier": "gold", "orders": "12", "region": "Kanto"}
    row = store.query_one("SELECT created_at, updated_at FROM contacts WHERE id = ?", (k.id,))
    assert (row["created_at"], row["updated_at"]) == (now.timestamp(), later.timestamp())


def test_lookups(store, now):
    store.upsert_contacts([ContactRow("z@x.example", {"territory": "JP"})], now=now)
    z = store.get_contact_by_email(" Z@X.EXAMPLE ")
    assert z is not None and store.get_contact(z.id) == z and z.territory == "JP" and z.status == "active"
    assert store.get_contact_by_email("nobody@x.example") is None
    with pytest.raises(NotFound):
        store.get_contact(999)


def test_status_and_suppression(store, now):
    store.upsert_contacts([ContactRow("s@x.example"), ContactRow("t@x.example")], now=now)
    s = store.get_contact_by_email("s@x.example")
    store.set_contact_status(s.id, "bounced", now=now)
    assert store.get_contact(s.id).status == "bounced"
    with pytest.raises(ValueError):
        store.set_contact_status(s.id, "gone", now=now)
    with pytest.raises(NotFound):
        store.set_contact_status(12345, "active", now=now)

    assert not store.is_suppressed("T@x.example")
    store.suppress("T@X.example", "unsubscribed", now=now)
    store.suppress("t@x.example", "complaint", now=now)  # the first reason stays
    assert store.is_suppressed("t@x.EXAMPLE")
    assert store.query_one("SELECT reason FROM suppressions WHERE email_key = ?",
                           (email_key("t@x.example"),))["reason"] == "unsubscribed"
    assert store.get_contact_by_email("t@x.example").status == "unsubscribed"
    store.suppress("never-imported@x.example", "manual", now=now)  # no contact needed
    assert store.is_suppressed("never-imported@x.example")
