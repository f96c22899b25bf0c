"""PeopleMixin on a real database: listing pages, history, edits, unsuppress, erased hashes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import add_click, add_link, add_send

from nurture.errors import NotFound
from nurture.store.contacts import ContactRow


def test_list_pages_by_id_and_filters(store, now):
    store.upsert_contacts([ContactRow(f"u{i}@x.example", {"country": "JP" if i % 2 else "GB"}, {"plan": f"p{i % 3}"})
                           for i in range(7)], now=now)
    page = store.list_contacts(limit=3)
    assert [c.email for c in page] == ["u0@x.example", "u1@x.example", "u2@x.example"]
    assert [c.email for c in store.list_contacts(after_id=page[-1].id, limit=10)][0] == "u3@x.example"
    assert len(store.list_contacts(where=("country", "jp"))) == 3
    assert [c.email for c in store.list_contacts(where=("plan", "P1"))] == ["u1@x.example", "u4@x.example"]
    with pytest.raises(NotFound):
        store.list_contacts(where=('x"y', "1"))


def test_history_update_and_unsuppress(store, now):
    store.upsert_contacts([ContactRow("k@x.example", {"first_name": "Ken"}, {"tier": "gold"})], now=now)
    k = store.get_contact_by_email("k@x.example")
    send = add_send(store, k.id)
    add_click(store, send, add_link(store, "pricing"), at=now - timedelta(minutes=3))
    h = store.contact_history(k.id)
    assert [e["campaign_id"] for e in h["enrollments"]] == ["ec-payments"]
    assert h["sends"][0]["status"] == "sent" and h["clicks"][0]["link"] == "pricing"
    assert h["clicks"][0]["at"] == now - timedelta(minutes=3)

    k2 = store.update_contact(k.id, fields={"title": "CTO", "owner": ""}, attributes={"tier": None, "n": 3}, now=now)
    assert (k2.title, k2.owner, dict(k2.attributes)) == ("CTO", None, {"n": 3})
    with pytest.raises(NotFound):
        store.update_contact(999, fields={"title": "x"}, now=now)

    store.unsubscribe(send, now=now)  # suppresses, and logs an event naming the contact
    assert store.suppression("K@x.example")[0] == "unsubscribed"
    assert store.get_contact(k.id).status == "unsubscribed"
    assert [e["kind"] for e in store.contact_history(k.id)["events"]] == ["contact.unsubscribed"]
    assert store.unsuppress("k@x.example", now=now) == "unsubscribed"
    assert store.suppression("k@x.example") is None and store.get_contact(k.id).status == "active"
    assert store.unsuppress("k@x.example", now=now) is None


def test_erased_hashes(store, now):
    assert not store.has_erasures()
    store.upsert_contacts([ContactRow("e@x.example")], now=now)
    e = store.get_contact_by_email("e@x.example")
    with pytest.raises(ValueError):
        store.forget_contact(e.id, erased_key="e@x.example", now=now)
    counts = store.forget_contact(e.id, erased_key="erased:k1:abc", now=now)
    assert counts["contact"] == 1 and counts["suppression"] == 1
    assert store.has_erasures()
    assert store.erased_among(["erased:k1:abc", "erased:k1:zzz"]) == {"erased:k1:abc"}
    assert store.list_contacts() == [] and len(store.list_contacts(include_erased=True)) == 1
    with pytest.raises(NotFound):
        store.forget_contact(12345, erased_key="erased:k1:x", now=now)
