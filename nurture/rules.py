"""Follow-up rules and lead scores: which rule a click matches, score decay, a task's note.

Rule matching: for each click the most specific matching ``follow_up`` rule wins (a rule naming
the link and the step, then the link, then the step, then ``any``); among equally specific rules
the first in the YAML. Every matching ``scoring`` rule adds its points.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from nurture.errors import TemplateError
from nurture.models import Campaign, Condition, Contact, FollowUpRule, Scoring
from nurture.render import template_vars
from nurture.render_env import ordinal, render_snippet
from nurture.store import Store

# -- rules ----------------------------------------------------------------------------------------

def condition_matches(cond: Condition, *, link: str | None, step: str, replied: bool = False) -> bool:
    """Does a human click on ``link`` in ``step`` (with ``replied``: a reply to ``step``'s mail)
    satisfy ``cond``? Click conditions never match a reply, nor reply conditions a click."""
    if cond.step is not None and cond.step != step:
        return False
    if cond.replied or replied:
        return cond.replied and replied
    return cond.clicked == "any" or cond.clicked == link


def _specificity(cond: Condition) -> int:
    return (2 if cond.clicked != "any" else 0) + (1 if cond.step else 0)


def match_rule(campaign: Campaign, *, link: str | None, step: str, replied: bool = False) -> FollowUpRule | None:
    """The most specific matching follow-up rule (YAML order breaks ties), or None."""
    best: FollowUpRule | None = None
    for rule in campaign.follow_up:
        if condition_matches(rule.when, link=link, step=step, replied=replied):
            if best is None or _specificity(rule.when) > _specificity(best.when):
                best = rule
    return best


# -- scores ---------------------------------------------------------------------------------------

def decayed(score: float, score_at: datetime | None, *, now: datetime, half_life: timedelta) -> float:
    """Exponential decay: the score halves every ``half_life``."""
    if score_at is None or score == 0 or half_life.total_seconds() <= 0:
        return score
    age = max(0.0, (now - score_at).total_seconds())
    factor: float = 0.5 ** (age / half_life.total_seconds())
    return score * factor


def apply_score(store: Store, *, contact_id: int, scoring: Scoring, link: str | None, step: str,
                campaign_id: str, now: datetime, replied: bool = False) -> bool:
    """Add the points of every matching score rule (for a click, or with ``replied`` for a
    reply); True when the contact just turned hot."""
    points = sum(r.points for r in scoring.rules
                 if condition_matches(r.when, link=link, step=step, replied=replied))
    if not points:
        return False
    old, old_at, hot = store.contact_score(contact_id)
    before = decayed(old, old_at, now=now, half_life=scoring.half_life)
    after = before + points
    crossed = after >= scoring.hot_threshold and (not hot or before < scoring.hot_threshold)
    store.set_contact_score(contact_id, score=after, hot=after >= scoring.hot_threshold, now=now)
    if crossed:
        c = store.get_contact(contact_id)
        store.append_event("contact.hot", {
            "contact_id": contact_id, "name": c.name, "company": c.company, "email": c.email,
            "phone": c.phone, "score": round(after, 1), "campaign_id": campaign_id,
        }, now=now)
    return crossed


# -- notes and subjects ---------------------------------------------------------------------------

def render_note(template: str, variables: Mapping[str, Any]) -> str:
    """Render a follow-up rule's ``note`` (sandboxed Jinja, undefined names are errors).

    Variables: ``contact``, ``step`` (id, subject), ``link`` (name, url), ``campaign``
    (id, name), ``clicks_this_week``, ``minutes_ago``; filter ``ordinal`` (3 → "3rd").
    """
    try:
        return render_snippet(template, variables).strip()
    except TemplateError as e:
        raise TemplateError(f"follow-up note: {e.message}", variable=e.variable) from None


def default_note(v: Mapping[str, Any]) -> str:
    """The note of a rule without one: which link, in which mail, when, the how-manyth click."""
    ago = v["minutes_ago"]
    when = f"\u27e8ago:{ago.at}\u27e9" if isinstance(ago, MinutesAgo) else (
        "just now" if ago < 1 else f"{ago} min ago")
    return (f"Clicked {v['link']['name']} in '{v['step']['subject']}', {when}; "
            f"{ordinal(v['clicks_this_week'])} click this week")


class MinutesAgo(int):
    """``minutes_ago`` in a note: compares as the minutes at the click's handling, but is
    written as a marker that :func:`live_text` turns into the minutes when the note is shown,
    so a note read hours later does not say "0 min ago"."""

    at: int

    def __new__(cls, minutes: int, *, at: datetime) -> MinutesAgo:
        obj = super().__new__(cls, minutes)
        obj.at = int(at.timestamp())
        return obj

    def __str__(self) -> str:
        return f"\u27e8min:{self.at}\u27e9"


_MARKER = re.compile("\u27e8(min|ago):(\\d+)\u27e9")


def live_text(text: str, now: datetime) -> str:
    """A stored note with its relative times computed for ``now`` ("240 min ago", not "0")."""
    if "\u27e8" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        secs = max(0.0, now.timestamp() - int(m.group(2)))
        if m.group(1) == "min":
            return str(int(secs // 60))
        if secs < 60:
            return "just now"
        if secs < 3600:
            return f"{int(secs // 60)} min ago"
        return f"{secs / 3600:.0f} h ago" if secs < 86400 * 2 else f"{secs / 86400:.0f} d ago"

    return _MARKER.sub(sub, text)


def note_vars(of: Campaign, contact: Contact, /, **extra: Any) -> dict[str, Any]:
    """A note's variables: the contact's attributes at the top level and as ``contact``, with
    the campaign's ``defaults`` filling what the contact lacks (as in the mail), plus ``extra``."""
    cvars, top = template_vars(of, contact)
    return {**top, "contact": cvars, **extra}


def step_subject(campaign: Campaign, step_id: str, contact: Contact) -> str:
    """The subject ``contact`` got for ``step_id`` (the step id if the step is gone; the raw
    subject if it no longer renders)."""
    try:
        step = campaign.step(step_id)
    except KeyError:
        return step_id
    cvars, data = template_vars(campaign, contact)  # the same variables the mail was rendered with
    data.update(contact=cvars, campaign={"id": campaign.id, "name": campaign.name},
                step={"id": step.id})
    try:
        return render_snippet(step.subject, data, lenient=True)
    except TemplateError:
        return step.subject
