"""Follow-up rules and lead scores: the most specific rule, notes, score decay and the hot threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import NOW, make_campaign, seed_click

from nurture.cards import task_card
from nurture.followup import process_clicks
from nurture.rules import decayed, match_rule, render_note


def test_most_specific_rule_wins():
    c = make_campaign()
    assert match_rule(c, link="pricing", step="case-study").task == "call_now"
    assert match_rule(c, link="blog", step="webinar").task == "call"
    assert match_rule(make_campaign(follow_up=()), link="pricing", step="x") is None

def test_render_note_ordinal_and_strict():
    assert render_note("{{ n | ordinal }} {{ m | ordinal }} {{ k | ordinal }}",
                       {"n": 3, "m": 11, "k": 22}) == "3rd 11th 22nd"
    from nurture.errors import TemplateError
    with pytest.raises(TemplateError):
        render_note("{{ missing }}", {})
    with pytest.raises(TemplateError):  # the sandbox refuses attribute games
        render_note("{{ ''.__class__.__mro__ }}", {})

def test_score_decay_and_hot_threshold(store, campaigns, settings):
    assert decayed(100, NOW, now=NOW + timedelta(days=14), half_life=timedelta(days=14)) == 50
    assert decayed(100, NOW, now=NOW + timedelta(days=28), half_life=timedelta(days=14)) == 25
    cid, _ = seed_click(store, "blog", territory="GB")
    [tid] = process_clicks(store, campaigns, settings, now=NOW)
    assert store.contact_score(cid)[0] == 5
    # two weeks later a pricing click: 5 decays to 2.5, +35 → 37.5 (not hot at 60)
    t1 = NOW + timedelta(days=14)
    seed_click(store, "pricing", at=t1)
    process_clicks(store, campaigns, settings, now=t1)
    score, at, hot = store.contact_score(cid)
    assert score == pytest.approx(37.5) and at == t1 and not hot
    prio = store.get_task(tid).priority
    seed_click(store, "pricing", at=t1)
    process_clicks(store, campaigns, settings, now=t1)
    score, _, hot = store.contact_score(cid)
    assert score == pytest.approx(72.5) and hot
    assert [e.payload["contact_id"] for e in store.events(kind="contact.hot")] == [cid]
    # the repeat click raised it one level (high → urgent); crossing hot cannot go above urgent
    assert prio == "urgent" and store.get_task(tid).priority == "urgent"
    assert task_card(store, campaigns, settings, task_id=tid, now=t1).hot
    # two weeks later the score has halved below the threshold: shown, no longer hot
    card = task_card(store, campaigns, settings, task_id=tid, now=t1 + timedelta(days=14))
    assert card.score == pytest.approx(36.25) and not card.hot
