"""Task cards: the contact card, clicks and mail history a rep sees; relative times."""

from __future__ import annotations

import json
from datetime import timedelta

from support import NOW, seed_click

from nurture.cards import ago, relative, task_card
from nurture.followup import process_clicks


def test_task_card_has_contact_card_clicks_and_mail_history(store, campaigns, settings):
    cid, _ = seed_click(store, territory="GB", timezone="Asia/Tokyo")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    card = task_card(store, campaigns, settings, task_id=tid, now=NOW)
    assert card.contact.phone == "+81 3 1234 5678" and card.contact_tz == "Asia/Tokyo"
    assert card.contact_local_time.hour == 19
    assert [c.link for c in card.clicks] == ["pricing"]
    assert card.sends[0].subject.startswith("How") and card.sends[0].send.status == "sent"
    assert json.dumps(card.bant) == "{}"


def test_relative_times():
    assert relative(NOW + timedelta(minutes=45), NOW) == "in 45 min"
    assert relative(NOW - timedelta(minutes=12), NOW) == "12 min overdue"
    assert relative(NOW + timedelta(days=3), NOW) == "in 3 d"
    assert ago(NOW - timedelta(hours=5), NOW) == "5 h ago"
    assert ago(NOW - timedelta(seconds=5), NOW) == "just now"


def test_task_card_shows_replies_and_bounces(store, campaigns, settings):
    from nurture.inbound import receive

    cid, _ = seed_click(store)
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    sid = store.query_one("SELECT id FROM sends WHERE contact_id = ?", (cid,))["id"]
    store.set_message_id(sid, "<1.x@acme.example>")
    reply = (b"From: ken@shop.example\r\nTo: hello@acme.example\r\nSubject: Re: hi\r\nMessage-ID: <r@shop.example>\r\n"
             b"In-Reply-To: <1.x@acme.example>\r\n\r\nCall me tomorrow, please.\r\n")
    receive(store, reply, settings=settings, campaigns=campaigns, now=NOW, source="test")
    card = task_card(store, campaigns, settings, task_id=tid, now=NOW + timedelta(minutes=1))
    assert [(m["kind"], m["new_text"]) for m in card.inbound] == [("reply", "Call me tomorrow, please.")]
    assert "Call me tomorrow" in store.get_task(tid).reason  # the click's task now shows the reply
