"""Follow-up: human clicks → "call now" tasks for reps, with routing and SLA escalation.

:func:`process_clicks` and :func:`escalate_overdue` are synchronous and run on the store's
writer thread; :func:`followup_round` runs both, every ~0.5 s and at once after a settle pass
(the follow-up part in :mod:`nurture.parts`). Which rule a click matches and the lead score
are :mod:`nurture.rules`; outcomes are :mod:`nurture.outcomes`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from nurture.cadence import Cadence
from nurture.config import Settings
from nurture.errors import NurtureError, TemplateError
from nurture.models import PRIORITIES, TASK_KINDS, Campaign, Condition, Contact, FollowUpRule, Priority, Rep, TaskKind
from nurture.routing import Route, loads_from_counts, local_day_start, route, working_due
from nurture.rules import (
    MinutesAgo,
    apply_score,
    default_note,
    live_text,
    match_rule,
    note_vars,
    render_note,
    step_subject,
)
from nurture.store import AsyncStore, Store
from nurture.store.tasks import HumanClick

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
#: Clicks per transaction in the loop (~65 ms of writer time at ~0.65 ms a click).
BATCH = 100


# -- clicks → tasks -------------------------------------------------------------------------------

def _raise(priority: Priority, levels: int = 1) -> Priority:
    return PRIORITIES[max(0, PRIORITIES.index(priority) - levels)]


def _more_urgent(a: Priority, b: Priority) -> Priority:
    return PRIORITIES[min(PRIORITIES.index(a), PRIORITIES.index(b))]


def _stronger_kind(a: TaskKind, b: TaskKind) -> TaskKind:
    return TASK_KINDS[min(TASK_KINDS.index(a), TASK_KINDS.index(b))]


def task_payload(task_id: int, contact: Contact, *, campaign_id: str, rep_id: str | None,
                 kind: TaskKind, priority: Priority, due_at: datetime, reason: str) -> dict[str, Any]:
    """The payload of the ``task.*`` events (webhooks send it as is)."""
    return {
        "task_id": task_id, "contact_id": contact.id, "name": contact.name,
        "company": contact.company, "email": contact.email, "phone": contact.phone,
        "campaign_id": campaign_id, "rep_id": rep_id, "kind": kind, "priority": priority,
        "due_at": due_at.isoformat(), "reason": reason,
    }


def process_clicks(store: Store, campaigns: Mapping[str, Campaign], settings: Settings, *,
                   now: datetime, limit: int = 100) -> list[int]:
    """Turn unhandled human clicks into tasks; returns the ids of tasks created or updated.

    One open task per contact and campaign: a later click raises its priority one level,
    pulls its due time earlier and adds to its timeline. Clicks are marked handled in the
    same transaction, so a crash neither loses nor doubles a task.
    """
    touched: list[int] = []
    with store.transaction():
        clicks = store.unhandled_human_clicks(limit=limit)
        for click in clicks:
            try:
                with store.transaction():  # a savepoint: one bad click cannot block the rest
                    task_id = _one_click(store, campaigns, settings, click, now=now)
            except (NurtureError, ValueError, KeyError) as e:
                log.error("click %s: no follow-up (%s)", click.click_id, e)
                continue
            if task_id is not None and task_id not in touched:
                touched.append(task_id)
        store.mark_clicks_handled(c.click_id for c in clicks)
    return touched


def _one_click(store: Store, campaigns: Mapping[str, Campaign], settings: Settings,
               click: HumanClick, *, now: datetime) -> int | None:
    campaign = campaigns.get(click.campaign_id)
    if campaign is None or click.honeypot:
        return None
    contact_id, step_id, link = click.contact_id, click.step_id, click.link_name
    if store.contact_blocked(contact_id):
        return None
    became_hot = apply_score(store, contact_id=contact_id, scoring=campaign.scoring, link=link,
                             step=step_id, campaign_id=campaign.id, now=now)
    rule = match_rule(campaign, link=link, step=step_id)
    task_id = None
    if rule is not None:
        task_id = _task_for(store, campaign, settings, rule, click, now=now)
    if became_hot:
        task = store.open_task_for_contact(contact_id)
        if task is not None:
            store.set_task_priority(task.id, _raise(task.priority), now=now)
            task_id = task_id or task.id
    return task_id


def _task_for(store: Store, campaign: Campaign, settings: Settings, rule: FollowUpRule,
              click: HumanClick, *, now: datetime) -> int:
    contact = store.get_contact(click.contact_id)
    clicked_at = click.at
    subject = step_subject(campaign, click.step_id, contact)
    variables = note_vars(
        campaign, contact, step={"id": click.step_id, "subject": subject},
        link={"name": click.link_name or "a link", "url": click.link_url or ""},
        campaign={"id": campaign.id, "name": campaign.name},
        clicks_this_week=store.human_click_count(contact.id, since=now - WEEK),
        minutes_ago=MinutesAgo(max(0, int((now - clicked_at).total_seconds() // 60)), at=clicked_at))
    try:
        note = render_note(rule.note, variables) if rule.note else default_note(variables)
    except TemplateError as e:
        log.warning("%s:%s: %s", campaign.path, rule.line, e)
        note = default_note(variables)
    entry = {"at": clicked_at.isoformat(), "click_id": click.click_id,
             "link": click.link_name, "url": click.link_url, "step": click.step_id,
             "subject": subject, "note": note}
    existing = store.open_task_for(contact.id, campaign.id)
    if existing is None:
        r = _route(store, settings, contact, kind=rule.task, due=rule.due, now=now)
        context = {"timeline": [entry], "route": r.reason, **_sla(r)}
        cadence = Cadence(attempts=rule.attempts, retry=rule.retry, unreachable=rule.unreachable,
                          timezone=contact.timezone or campaign.timezone)
        task_id = store.insert_task(contact_id=contact.id, campaign_id=campaign.id, rep_id=r.rep_id,
                                    kind=rule.task, priority=rule.priority, due_at=r.due_at,
                                    reason=note, context=context, now=now, cadence=cadence.as_json())
        store.append_event("task.created", task_payload(
            task_id, contact, campaign_id=campaign.id, rep_id=r.rep_id, kind=rule.task,
            priority=rule.priority, due_at=r.due_at, reason=live_text(note, now)), now=now)
        return task_id
    rep = configured_rep(settings, existing.rep_id)
    due_at = working_due(rep, now, rule.due) if rep is not None else now + rule.due
    context = dict(existing.context)
    context["timeline"] = [*context.get("timeline", []), entry]
    store.update_open_task(
        existing.id, kind=_stronger_kind(existing.kind, rule.task),
        priority=_raise(_more_urgent(existing.priority, rule.priority)),
        due_at=min(existing.due_at, due_at), reason=note, context=context, now=now)
    return existing.id


#: The task a reply raises when no ``follow_up`` rule says ``when: {replied: true}``.
DEFAULT_REPLY_RULE = FollowUpRule(when=Condition(replied=True), task="call_now", priority="high",
                                  due=timedelta(hours=1))


def reply_task(store: Store, campaign: Campaign, settings: Settings, *, contact: Contact, step_id: str,
               text: str, subject: str, inbound_id: int, now: datetime) -> int:
    """Raise (or update) the task for a person's reply to ``step_id``'s mail, through the same
    rules, routing and one-open-task-per-campaign as clicks: the most specific ``follow_up``
    rule with ``when: {replied: true}``, else :data:`DEFAULT_REPLY_RULE`. The note shows the
    reply's new text; a rule's ``note`` template sees ``reply`` (``text``, ``subject``)."""
    rule = match_rule(campaign, link=None, step=step_id, replied=True) or DEFAULT_REPLY_RULE
    step_subj = step_subject(campaign, step_id, contact)
    quoted = " ".join(text.split())
    quoted = quoted if len(quoted) <= 300 else quoted[:299] + "…"
    variables = {
        **note_vars(campaign, contact), "step": {"id": step_id, "subject": step_subj},
        "reply": {"text": text, "subject": subject}, "campaign": {"id": campaign.id, "name": campaign.name},
        "link": {"name": "a reply", "url": ""}, "clicks_this_week": 0, "minutes_ago": 0,
    }
    default = f"Replied to '{step_subj}': \u201c{quoted}\u201d"
    try:
        note = render_note(rule.note, variables) if rule.note else default
    except TemplateError as e:
        log.warning("%s:%s: %s", campaign.path, rule.line, e)
        note = default
    entry = {"at": now.isoformat(), "kind": "reply", "inbound_id": inbound_id, "step": step_id,
             "subject": step_subj, "reply_subject": subject, "text": text[:4000], "note": note}
    existing = store.open_task_for(contact.id, campaign.id)
    if existing is None:
        r = _route(store, settings, contact, kind=rule.task, due=rule.due, now=now)
        task_id = store.insert_task(contact_id=contact.id, campaign_id=campaign.id, rep_id=r.rep_id,
                                    kind=rule.task, priority=rule.priority, due_at=r.due_at, reason=note,
                                    context={"timeline": [entry], "route": r.reason, **_sla(r)}, now=now)
        store.append_event("task.created", task_payload(
            task_id, contact, campaign_id=campaign.id, rep_id=r.rep_id, kind=rule.task,
            priority=rule.priority, due_at=r.due_at, reason=note), now=now)
        return task_id
    # A reply is a stronger signal than any click: the rule's kind and priority at least,
    # due no later than the rule says.
    context = dict(existing.context)
    context["timeline"] = [*context.get("timeline", []), entry]
    store.update_open_task(
        existing.id, kind=_stronger_kind(existing.kind, rule.task),
        priority=_more_urgent(existing.priority, rule.priority),
        due_at=min(existing.due_at, now + rule.due), reason=note, context=context, now=now)
    return existing.id


def _route(store: Store, settings: Settings, contact: Contact, *, kind: TaskKind, due: timedelta,
           now: datetime) -> Route:
    """Routing with the reps' day plans: what each has done today and has due on each day."""
    reps = settings.reps
    # Without reps nothing is assigned, and the lookups would read every task.
    loads = rep_day_loads(store, reps, now=now) if reps else {}
    return route(contact=contact, reps=reps, territories=settings.territories, kind=kind, due=due, now=now,
                 last_rep=store.last_assigned_rep() if reps else None, assigned_today={}, loads=loads)


def rep_day_loads(store: Store, reps: Sequence[Rep], *, now: datetime) -> dict[str, dict[date, int]]:
    """Each rep's day plan load per local date (calls done + open calls due), from the store."""
    counts = store.task_day_counts({p.id: local_day_start(p, now) for p in reps})
    return loads_from_counts(reps, {rid: (c.open, c.done) for rid, c in counts.items()}, now=now)


def _sla(r: Route) -> dict[str, str]:
    """``sla_due`` in the task's context when a full day plan moved the due time past the SLA."""
    return {"sla_due": r.sla_at.isoformat()} if r.sla_at is not None and r.sla_at != r.due_at else {}


def configured_rep(settings: Settings, rep_id: str | None) -> Rep | None:
    """The rep ``rep_id`` in config.yaml, or None (unassigned, or removed from the config)."""
    try:
        return settings.rep(rep_id) if rep_id else None
    except KeyError:
        return None


# -- SLA --------------------------------------------------------------------------------------------

def escalate_overdue(store: Store, settings: Settings, *, now: datetime) -> list[int]:
    """Flag open tasks past due (once each) and append a ``task.overdue`` event for each."""
    flagged = []
    with store.transaction():
        for task in store.overdue_unescalated(now=now):
            if not store.mark_escalated(task.id, now=now):
                continue
            contact = store.get_contact(task.contact_id)
            payload = task_payload(task.id, contact, campaign_id=task.campaign_id,
                                    rep_id=task.rep_id, kind=task.kind, priority=task.priority,
                                    due_at=task.due_at, reason=live_text(task.reason, now))
            payload["overdue_minutes"] = int((now - task.due_at).total_seconds() // 60)
            store.append_event("task.overdue", payload, now=now)
            flagged.append(task.id)
    return flagged


# -- one round of the follow-up part (nurture.parts) -----------------------------------------------

async def followup_round(*, store: AsyncStore[Store], settings: Settings, campaigns: Mapping[str, Campaign],
                         now: Callable[[], datetime]) -> bool:
    """Turn the unhandled human clicks into tasks and escalate overdue ones; True when a
    backlog of clicks remains (the part then runs the next round soon)."""
    # Small batches, one store hop each: the tracker's click commits share the writer thread
    # and must not wait behind a long backlog.
    for _ in range(100):
        await store.run(lambda s: process_clicks(s, campaigns, settings, now=now(), limit=BATCH))
        if not await store.run(lambda s: bool(s.unhandled_human_clicks(limit=1))):
            break
    else:
        return True
    await store.run(lambda s: escalate_overdue(s, settings, now=now()))
    return False
