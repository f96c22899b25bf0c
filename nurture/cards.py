"""Task cards: a task with everything a rep needs on the call, as the reps' app and the CLI
show it (``card_json`` for ``/api/tasks`` and ``nurture tasks --json``), and relative times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture.config import Settings
from nurture.followup import configured_rep
from nurture.models import Campaign, Contact, Rep, Scoring, Task
from nurture.outcomes import visible_task
from nurture.rules import decayed, live_text, step_subject
from nurture.store import Store
from nurture.store.tasks import ContactClick, ContactSend, TaskFilter
from nurture.timeutil import zone


@dataclass(frozen=True, slots=True)
class MailLine:
    """One mail of the contact's history on a card: the send and the subject it went with."""

    send: ContactSend
    subject: str


@dataclass(frozen=True, slots=True)
class TaskCard:
    """A task with everything a rep needs on the call."""

    task: Task
    contact: Contact
    rep: Rep | None
    score: float
    hot: bool
    overdue: bool
    contact_tz: str
    contact_local_time: datetime
    campaign_name: str
    bant: Mapping[str, str] = field(default_factory=dict)
    clicks: tuple[ContactClick, ...] = ()
    sends: tuple[MailLine, ...] = ()
    #: What came back from the contact: replies, bounces, complaints, out-of-office (newest first).
    inbound: tuple[Mapping[str, Any], ...] = ()
    #: The task's reason with its relative times computed for the moment the card was made.
    reason: str = ""


def task_card(store: Store, campaigns: Mapping[str, Campaign], settings: Settings, *,
              task_id: int, now: datetime, rep_id: str | None = None,
              full: bool = True) -> TaskCard:
    """Build the card for one task (``full`` adds clicks and mail history)."""
    task = visible_task(store, task_id=task_id, rep_id=rep_id)
    return _card(store, campaigns, settings, task, now=now, full=full)


def task_cards(store: Store, campaigns: Mapping[str, Campaign], settings: Settings, *,
               now: datetime, rep_id: str | None = None, status: TaskFilter = "open",
               include_snoozed: bool = True) -> list[TaskCard]:
    """The sorted list (overdue first, then priority, then due time) as cards."""
    tasks = store.list_tasks(now=now, rep_id=rep_id, status=status, include_snoozed=include_snoozed)
    return [_card(store, campaigns, settings, t, now=now, full=False) for t in tasks]


def _card(store: Store, campaigns: Mapping[str, Campaign], settings: Settings, task: Task, *,
          now: datetime, full: bool) -> TaskCard:
    contact = store.get_contact(task.contact_id)
    campaign = campaigns.get(task.campaign_id)
    scoring = campaign.scoring if campaign else Scoring()
    raw, raw_at, hot = store.contact_score(contact.id)
    score = decayed(raw, raw_at, now=now, half_life=scoring.half_life)
    tz_name = contact.timezone or (campaign.timezone if campaign else "UTC")
    try:
        local = now.astimezone(zone(tz_name))
    except ValueError:
        tz_name, local = "UTC", now
    clicks: tuple[ContactClick, ...] = ()
    sends: tuple[MailLine, ...] = ()
    inbound: tuple[Mapping[str, Any], ...] = ()
    if full:
        inbound = tuple(store.list_inbound(contact_id=contact.id, limit=20))
        clicks = tuple(store.contact_clicks(contact.id))
        sends = tuple(MailLine(send=s, subject=_send_subject(campaigns, s, contact))
                      for s in store.contact_sends(contact.id))
    return TaskCard(
        task=task, contact=contact, rep=configured_rep(settings, task.rep_id),
        score=score, hot=hot and score >= scoring.hot_threshold,
        overdue=task.status == "open" and task.due_at < now, contact_tz=tz_name,
        contact_local_time=local, campaign_name=campaign.name if campaign else task.campaign_id,
        bant=store.task_bant(task.id), clicks=clicks, sends=sends, inbound=inbound,
        reason=live_text(task.reason, now),
    )


def _send_subject(campaigns: Mapping[str, Campaign], send: ContactSend, contact: Contact) -> str:
    campaign = campaigns.get(send.campaign_id)
    return step_subject(campaign, send.step_id, contact) if campaign else send.step_id


def card_json(card: TaskCard, now: datetime) -> dict[str, Any]:
    """A task as the API shows it."""
    t, c = card.task, card.contact
    return {
        "id": t.id, "kind": t.kind, "priority": t.priority, "status": t.status,
        "due_at": t.due_at.isoformat(), "overdue": card.overdue, "created_at": t.created_at.isoformat(),
        "rep_id": t.rep_id, "campaign_id": t.campaign_id, "reason": card.reason,
        "outcome": t.outcome, "escalated": t.escalated_at is not None,
        "score": round(card.score, 1), "hot": card.hot,
        "contact": {"id": c.id, "name": c.name, "first_name": c.first_name, "last_name": c.last_name,
                    "company": c.company, "email": c.email, "phone": c.phone,
                    "timezone": card.contact_tz,
                    "local_time": card.contact_local_time.isoformat(timespec="minutes")},
        "timeline": [{**e, "note": live_text(e["note"], now)} if isinstance(e.get("note"), str) else e
                     for e in t.context.get("timeline", [])],
        "attempts": t.attempts, "max_attempts": t.max_attempts, "attempt_log": list(t.attempt_log),
    }


# -- relative times -------------------------------------------------------------------------------

def relative(moment: datetime, now: datetime) -> str:
    """``in 45 min``, ``12 min overdue``, ``in 2 h``, ``3 d overdue``."""
    secs = (moment - now).total_seconds()
    n = abs(secs)
    if n < 60:
        return "now"
    if n < 3600:
        text = f"{int(n // 60)} min"
    elif n < 86400 * 2:
        text = f"{n / 3600:.0f} h"
    else:
        text = f"{n / 86400:.0f} d"
    return f"in {text}" if secs > 0 else f"{text} overdue"


def ago(moment: datetime, now: datetime) -> str:
    """``4 min ago``, ``5 h ago``, ``3 d ago`` (for past events such as clicks)."""
    n = max(0.0, (now - moment).total_seconds())
    if n < 60:
        return "just now"
    if n < 3600:
        return f"{int(n // 60)} min ago"
    if n < 86400 * 2:
        return f"{n / 3600:.0f} h ago"
    return f"{n / 86400:.0f} d ago"
