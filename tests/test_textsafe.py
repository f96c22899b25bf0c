"""nurture.textsafe: contact text shown in terminals and Slack is never interpreted."""

from __future__ import annotations

from nurture.textsafe import slack_escape, strip_controls


def test_strip_controls_drops_escape_sequences_bells_c1_and_bidi():
    osc = "Ann\x1b]0;pwned\x07 Lee\x9b2J\u202eevil\x7f"
    assert strip_controls(osc) == "Ann]0;pwned Lee2Jevil"
    assert strip_controls("a\tb\r\nc") == "a b  c"
    assert strip_controls("Jürgen 山田 🙂") == "Jürgen 山田 🙂"


def test_slack_escape_disarms_mentions_links_and_entities():
    assert slack_escape("<!channel> hi") == "&lt;!channel&gt; hi"
    assert slack_escape("<https://evil.example|Your invoice>") == "&lt;https://evil.example|Your invoice&gt;"
    assert slack_escape("<@U0123> & co") == "&lt;@U0123&gt; &amp; co"
    assert slack_escape("ping @here and @Channel") == "ping @\u2060here and @\u2060Channel"
    assert slack_escape("mail@heretic.example") == "mail@heretic.example"
    assert slack_escape("a\nb") == "a b"
