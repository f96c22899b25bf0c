"""Follow-up: human clicks → "call now" tasks for reps, with routing, SLA and lead scores.

:func:`process_clicks` and :func:`escalate_overdue` are synchronous and run on the store's
writer thread; :func:`followup_loop` runs both every ~0.5 s for ``nurture run``.

Rule matching: for each click the most specific matching ``follow_up`` rule wins (a rule naming
the link and the step, then the link, then the step, then ``any``); among equally specific rules
the first in the YAML. Every matching ``scoring`` rule adds its points.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateError as JinjaError
from jinja2.sandbox import SandboxedEnvironment

from nurture.config import Settings
from nurture.errors import NotFound, NurtureError, PermissionDenied, TemplateError
from nurture.models import (EXIT_OUTCOMES, OUTCOMES, PRIORITIES, TASK_KINDS, Campaign, Condition,
                            Contact, FollowUpRule, Rep, Scoring, Task)
from nurture.render import template_vars
from nurture.routing import local_day_start, route, shift_start, on_shift
from nurture.store.tasks import MANAGER
from nurture.timeutil import zone

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
#: Clicks per transaction in the loop (~65 ms of writer time at ~0.65 ms a click).
BATCH = 100


class OutcomeError(NurtureError):
    """An outcome that cannot be recorded: unknown, on a closed task, or a bad snooze time."""

BANT_FIELDS = ("budget", "authority", "need", "timeline")


# -- notes ----------------------------------------------------------------------------------------

def _ordinal(n: int) -> str:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_note_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_note_env.filters["ordinal"] = _ordinal
_subject_env = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)


@functools.lru_cache(maxsize=512)
def _compiled(template: str, *, lenient: bool = False) -> Template:
    """Compiling costs ~1 ms; rules and subjects are few, so keep them compiled."""
    return (_subject_env if lenient else _note_env).from_string(template)


def render_note(template: str, variables: Mapping[str, Any]) -> str:
    """Render a follow-up rule's ``note`` (sandboxed Jinja, undefined names are errors).

    Variables: ``contact``, ``step`` (id, subject), ``link`` (name, url), ``campaign``
    (id, name), ``clicks_this_week``, ``minutes_ago``; filter ``ordinal`` (3 → "3rd").
    """
    try:
        return _compiled(template).render(**variables).strip()
    except JinjaError as e:
        raise TemplateError(f"follow-up note: {e}", variable=getattr(e, "name", None)) from None


def default_note(v: Mapping[str, Any]) -> str:
    ago = v["minutes_ago"]
    when = "just now" if ago < 1 else f"{ago} min ago"
    return (f"Clicked {v['link']['name']} in '{v['step']['subject']}', {when}; "
            f"{_ordinal(v['clicks_this_week'])} click this week")


def _subject(campaign: Campaign, step_id: str, contact: Contact) -> str:
    try:
        step = campaign.step(step_id)
    except KeyError:
        return step_id
    cvars, data = template_vars(campaign, contact)  # the same variables the mail was rendered with
    data.update(contact=cvars, campaign={"id": campaign.id, "name": campaign.name},
                step={"id": step.id})
    try:
        return _compiled(step.subject, lenient=True).render(**data)
    except JinjaError:
        return step.subject


# -- rules and scores -----------------------------------------------------------------------------

def condition_matches(cond: Condition, *, link: str | None, step: str) -> bool:
    """Does a human click on ``link`` in ``step`` satisfy ``cond``?"""
    if cond.step is not None and cond.step != step:
        return False
    return cond.clicked == "any" or cond.clicked == link


def _specificity(cond: Condition) -> int:
    return (2 if cond.clicked != "any" else 0) + (1 if cond.step else 0)


def match_rule(campaign: Campaign, *, link: str | None, step: str) -> FollowUpRule | None:
    """The most specific matching follow-up rule (YAML order breaks ties), or None."""
    best: FollowUpRule | None = None
    for rule in campaign.follow_up:
        if condition_matches(rule.when, link=link, step=step):
            if best is None or _specificity(rule.when) > _specificity(best.when):
                best = rule
    return best


def decayed(score: float, score_at: datetime | None, *, now: datetime, half_life: timedelta) -> float:
    """Exponential decay: the score halves every ``half_life``."""
    if score_at is None or score == 0 or half_life.total_seconds() <= 0:
        return score
    age = max(0.0, (now - score_at).total_seconds())
    return score * 0.5 ** (age / half_life.total_seconds())


def _raise(priority: str, levels: int = 1) -> str:
    return PRIORITIES[max(0, PRIORITIES.index(priority) - levels)]


def _more_urgent(a: str, b: str) -> str:
    return PRIORITIES[min(PRIORITIES.index(a), PRIORITIES.index(b))]


def _stronger_kind(a: str, b: str) -> str:
    return TASK_KINDS[min(TASK_KINDS.index(a), TASK_KINDS.index(b))]


def apply_score(store: Any, *, contact_id: int, scoring: Scoring, link: str | None, step: str,
                campaign_id: str, now: datetime) -> bool:
    """Add the points of every matching score rule; True when the contact just turned hot."""
    points = sum(r.points for r in scoring.rules if condition_matches(r.when, link=link, step=step))
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


# -- clicks → tasks -------------------------------------------------------------------------------

def _task_payload(task_id: int, contact: Contact, *, campaign_id: str, rep_id: str | None,
                  kind: str, priority: str, due_at: datetime, reason: str) -> dict[str, Any]:
    return {
        "task_id": task_id, "contact_id": contact.id, "name": contact.name,
        "company": contact.company, "email": contact.email, "phone": contact.phone,
        "campaign_id": campaign_id, "rep_id": rep_id, "kind": kind, "priority": priority,
        "due_at": due_at.isoformat(), "reason": reason,
    }


def process_clicks(store: Any, campaigns: Mapping[str, Campaign], settings: Settings, *,
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
                log.error("click %s: no follow-up (%s)", click["click_id"], e)
                continue
            if task_id is not None and task_id not in touched:
                touched.append(task_id)
        store.mark_clicks_handled(c["click_id"] for c in clicks)
    return touched


def _one_click(store: Any, campaigns: Mapping[str, Campaign], settings: Settings,
               click: Mapping[str, Any], *, now: datetime) -> int | None:
    campaign = campaigns.get(click["campaign_id"])
    if campaign is None or click["honeypot"]:
        return None
    contact_id, step_id, link = click["contact_id"], click["step_id"], click["link_name"]
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


def _task_for(store: Any, campaign: Campaign, settings: Settings, rule: FollowUpRule,
              click: Mapping[str, Any], *, now: datetime) -> int:
    contact = store.get_contact(click["contact_id"])
    clicked_at = click["at"] if isinstance(click["at"], datetime) else _from_epoch(click["at"])
    subject = _subject(campaign, click["step_id"], contact)
    variables = {
        "contact": contact.as_template_vars(),
        "step": {"id": click["step_id"], "subject": subject},
        "link": {"name": click["link_name"] or "a link", "url": click["link_url"] or ""},
        "campaign": {"id": campaign.id, "name": campaign.name},
        "clicks_this_week": store.human_click_count(contact.id, since=now - WEEK),
        "minutes_ago": max(0, int((now - clicked_at).total_seconds() // 60)),
    }
    try:
        note = render_note(rule.note, variables) if rule.note else default_note(variables)
    except TemplateError as e:
        log.warning("%s:%s: %s", campaign.path, rule.line, e)
        note = default_note(variables)
    entry = {"at": clicked_at.isoformat(), "click_id": click["click_id"],
             "link": click["link_name"], "url": click["link_url"], "step": click["step_id"],
             "subject": subject, "note": note}
    existing = store.open_task_for(contact.id, campaign.id)
    if existing is None:
        reps = settings.reps
        r = route(contact=contact, reps=reps, territories=settings.territories, kind=rule.task,
                  # Without reps nothing is assigned, and the lookup would read every task.
                  due=rule.due, now=now, last_rep=store.last_assigned_rep() if reps else None,
                  assigned_today=store.assigned_since({p.id: local_day_start(p, now) for p in reps}))
        context = {"timeline": [entry], "route": r.reason}
        task_id = store.insert_task(contact_id=contact.id, campaign_id=campaign.id, rep_id=r.rep_id,
                                    kind=rule.task, priority=rule.priority, due_at=r.due_at,
                                    reason=note, context=context, now=now)
        store.append_event("task.created", _task_payload(
            task_id, contact, campaign_id=campaign.id, rep_id=r.rep_id, kind=rule.task,
            priority=rule.priority, due_at=r.due_at, reason=note), now=now)
        return task_id
    due_at = now + rule.due
    rep = _rep(settings, existing.rep_id)
    if rep is not None and rule.task == "call_now" and not on_shift(rep, now):
        due_at = shift_start(rep, now) + rule.due
    context = dict(existing.context)
    context["timeline"] = [*context.get("timeline", []), entry]
    store.update_open_task(
        existing.id, kind=_stronger_kind(existing.kind, rule.task),
        priority=_raise(_more_urgent(existing.priority, rule.priority)),
        due_at=min(existing.due_at, due_at), reason=note, context=context, now=now)
    return existing.id


def _from_epoch(value: float) -> datetime:
    from nurture.timeutil import from_epoch

    return from_epoch(value)  # type: ignore[return-value]


def _rep(settings: Settings, rep_id: str | None) -> Rep | None:
    try:
        return settings.rep(rep_id) if rep_id else None
    except KeyError:
        return None


# -- SLA --------------------------------------------------------------------------------------------

def escalate_overdue(store: Any, settings: Settings, *, now: datetime) -> list[int]:
    """Flag open tasks past due (once each) and append a ``task.overdue`` event for each."""
    flagged = []
    with store.transaction():
        for task in store.overdue_unescalated(now=now):
            if not store.mark_escalated(task.id, now=now):
                continue
            contact = store.get_contact(task.contact_id)
            payload = _task_payload(task.id, contact, campaign_id=task.campaign_id,
                                    rep_id=task.rep_id, kind=task.kind, priority=task.priority,
                                    due_at=task.due_at, reason=task.reason)
            payload["overdue_minutes"] = int((now - task.due_at).total_seconds() // 60)
            store.append_event("task.overdue", payload, now=now)
            flagged.append(task.id)
    return flagged


# -- outcomes ---------------------------------------------------------------------------------------

def visible_task(store: Any, *, task_id: int, rep_id: str | None) -> Task:
    """The task, if ``rep_id`` may see it (None = the operator's CLI; manager sees all).

    Another rep's task is reported as not found, so ids cannot be probed.
    """
    task = store.get_task(task_id)
    if rep_id is not None and rep_id != MANAGER and task.rep_id != rep_id:
        raise NotFound(f"no task with id {task_id}")
    return task


def record_outcome(store: Any, *, task_id: int, outcome: str, now: datetime,
                   rep_id: str | None = None, notes: str | None = None,
                   snooze_until: datetime | None = None,
                   bant: Mapping[str, str] | None = None) -> Task:
    """Record a call outcome (one of :data:`nurture.models.OUTCOMES`).

    ``snoozed`` keeps the task open until ``snooze_until``; ``not_interested`` and
    ``qualified`` also exit the contact from the campaign, and ``qualified`` records the
    hand-off to field sales (event ``contact.qualified``). Appends ``task.done``.
    """
    if outcome not in OUTCOMES:
        raise OutcomeError(f'"{outcome}" is not an outcome (use {", ".join(OUTCOMES)})')
    if rep_id == MANAGER:
        raise PermissionDenied("the manager view is read-only")
    if outcome == "snoozed" and (snooze_until is None or snooze_until <= now):
        raise OutcomeError("snooze needs a time in the future")
    with store.transaction():
        task = visible_task(store, task_id=task_id, rep_id=rep_id)
        if task.status != "open":
            raise OutcomeError(f"task {task_id} is already done ({task.outcome})")
        if bant:
            merged = store.task_bant(task_id)
            merged.update({k: str(v) for k, v in bant.items() if k in BANT_FIELDS})
            store.set_task_bant(task_id, merged, now=now)
        store.complete_task(task_id, outcome=outcome, notes=notes, now=now, snooze_until=snooze_until)
        contact = store.get_contact(task.contact_id)
        if outcome in EXIT_OUTCOMES:
            store.exit_enrollments(task.contact_id, campaign_id=task.campaign_id,
                                   reason=outcome, now=now)
        if outcome == "qualified":
            store.append_event("contact.qualified", {
                "task_id": task_id, "contact_id": contact.id, "name": contact.name,
                "company": contact.company, "email": contact.email, "phone": contact.phone,
                "rep_id": task.rep_id, "campaign_id": task.campaign_id,
                "bant": store.task_bant(task_id), "notes": notes,
            }, now=now)
        if outcome != "snoozed":
            payload = _task_payload(task_id, contact, campaign_id=task.campaign_id,
                                    rep_id=task.rep_id, kind=task.kind, priority=task.priority,
                                    due_at=task.due_at, reason=task.reason)
            payload.update(outcome=outcome, notes=notes, bant=store.task_bant(task_id))
            store.append_event("task.done", payload, now=now)
        return store.get_task(task_id)


# -- what a rep sees ----------------------------------------------------------------------------

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
    clicks: tuple[Mapping[str, Any], ...] = ()
    sends: tuple[Mapping[str, Any], ...] = ()


def task_card(store: Any, campaigns: Mapping[str, Campaign], settings: Settings, *,
              task_id: int, now: datetime, rep_id: str | None = None,
              full: bool = True) -> TaskCard:
    """Build the card for one task (``full`` adds clicks and mail history)."""
    task = visible_task(store, task_id=task_id, rep_id=rep_id)
    return _card(store, campaigns, settings, task, now=now, full=full)


def task_cards(store: Any, campaigns: Mapping[str, Campaign], settings: Settings, *,
               now: datetime, rep_id: str | None = None, status: str = "open",
               include_snoozed: bool = True) -> list[TaskCard]:
    """The sorted list (overdue first, then priority, then due time) as cards."""
    tasks = store.list_tasks(now=now, rep_id=rep_id, status=status, include_snoozed=include_snoozed)
    return [_card(store, campaigns, settings, t, now=now, full=False) for t in tasks]


def _card(store: Any, campaigns: Mapping[str, Campaign], settings: Settings, task: Task, *,
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
    clicks: tuple = ()
    sends: tuple = ()
    if full:
        clicks = tuple(store.contact_clicks(contact.id))
        sends = tuple({**s, "subject": _send_subject(campaigns, s, contact)}
                      for s in store.contact_sends(contact.id))
    return TaskCard(
        task=task, contact=contact, rep=_rep(settings, task.rep_id),
        score=score, hot=hot and score >= scoring.hot_threshold,
        overdue=task.status == "open" and task.due_at < now, contact_tz=tz_name,
        contact_local_time=local, campaign_name=campaign.name if campaign else task.campaign_id,
        bant=store.task_bant(task.id), clicks=clicks, sends=sends,
    )


def _send_subject(campaigns: Mapping[str, Campaign], send: Mapping[str, Any], contact: Contact) -> str:
    campaign = campaigns.get(send["campaign_id"])
    return _subject(campaign, send["step_id"], contact) if campaign else send["step_id"]


# -- rep tokens -----------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    """Tokens and session ids are stored only as their SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_rep_token(store: Any, settings: Settings, *, rep_id: str, now: datetime,
                    manager: bool = False) -> str:
    """A new login token for ``rep_id`` (or a manager token); only its hash is stored."""
    if manager:
        rep_id = MANAGER
    elif rep_id not in {r.id for r in settings.reps}:
        known = ", ".join(r.id for r in settings.reps) or "none configured"
        raise NotFound(f'no rep "{rep_id}" in the config (reps: {known})')
    token = "nrt_" + secrets.token_urlsafe(24)
    store.add_rep_token(token_hash=hash_token(token), rep_id=rep_id, now=now)
    return token


# -- the loop for ``nurture run`` ---------------------------------------------------------------------

async def followup_loop(*, store: Any, settings: Settings, campaigns: Mapping[str, Campaign],
                        now: Callable[[], datetime], stop: asyncio.Event,
                        interval: float = 0.5, wake: asyncio.Event | None = None) -> None:
    """Process human clicks and escalate overdue tasks every ``interval`` seconds until ``stop``.

    Setting ``wake`` (e.g. right after a settle pass stored human verdicts) starts the next
    round at once instead of at the end of the interval.
    """
    while not stop.is_set():
        try:
            # Small batches, one store hop each: the tracker's click commits share the
            # writer thread and must not wait behind a long backlog.
            for _ in range(100):
                await store.run(lambda s: process_clicks(s, campaigns, settings, now=now(), limit=BATCH))
                if not await store.run(lambda s: bool(s.unhandled_human_clicks(limit=1))):
                    break
            await store.run(lambda s: escalate_overdue(s, settings, now=now()))
        except Exception:  # keep the loop alive; the next round retries from the DB state
            log.exception("follow-up round failed")
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        _, pending = await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        if wake is not None:
            wake.clear()
