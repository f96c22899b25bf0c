"""Call outcomes: what a rep (or the operator) records on a task, and who may see which task.

Synchronous; runs on the store's writer thread (``await astore.run(lambda s: record_outcome(s, ...))``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from nurture.cadence import ATTEMPT_OUTCOMES, Cadence, next_attempt_at, retry_entry
from nurture.config import Settings
from nurture.errors import NotFound, NurtureError, PermissionDenied
from nurture.followup import configured_rep, task_payload
from nurture.models import EXIT_OUTCOMES, OUTCOMES, Campaign, Scoring, Task, one_of
from nurture.repauth import MANAGER
from nurture.rules import decayed, live_text
from nurture.scheduler import enroll
from nurture.store import Store
from nurture.store.contacts import email_key

#: The qualification notes a rep keeps on a task (budget, authority, need, timeline).
BANT_FIELDS = ("budget", "authority", "need", "timeline")

log = logging.getLogger(__name__)


class OutcomeError(NurtureError):
    """An outcome that cannot be recorded: unknown, on a closed task, or a bad snooze time."""


def visible_task(store: Store, *, task_id: int, rep_id: str | None) -> Task:
    """The task, if ``rep_id`` may see it (None = the operator's CLI; manager sees all).

    Another rep's task is reported as not found, so ids cannot be probed.
    """
    task = store.get_task(task_id)
    if rep_id is not None and rep_id != MANAGER and task.rep_id != rep_id:
        raise NotFound(f"no task with id {task_id}")
    return task


def record_outcome(store: Store, *, task_id: int, outcome: str, now: datetime,
                   rep_id: str | None = None, notes: str | None = None,
                   snooze_until: datetime | None = None,
                   bant: Mapping[str, str] | None = None, settings: Settings | None = None,
                   campaigns: Mapping[str, Campaign] | None = None) -> Task:
    """Record a call outcome (one of :data:`nurture.models.OUTCOMES`).

    ``snoozed`` keeps the task open until ``snooze_until``; ``voicemail`` and ``no_answer``
    count an attempt and, while the task's cadence has attempts left, bring it back at the
    next retry time (inside the rep's working hours, from ``settings``; event
    ``task.attempt``); the last one closes it as ``unreachable`` and runs the rule's fallback
    (a step of the campaign, or another campaign from ``campaigns``). ``not_interested`` and
    ``qualified`` also exit the contact from the campaign, and ``qualified`` records the
    hand-off to field sales (event ``contact.qualified``). Appends ``task.done``.
    """
    chosen = one_of(outcome, OUTCOMES)
    if chosen is None:
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
        contact = store.get_contact(task.contact_id)
        cadence = Cadence.from_json(store.get_task_cadence(task_id))
        called = outcome
        if outcome in ATTEMPT_OUTCOMES:
            if task.attempts + 1 < cadence.attempts:
                rep = configured_rep(settings, task.rep_id) if settings else None
                next_at = next_attempt_at(retry_entry(cadence.retry, task.attempts + 1), now=now,
                                          contact_tz=contact.timezone or cadence.timezone, rep=rep)
                n = store.record_attempt(task_id, outcome=outcome, notes=notes, next_at=next_at, now=now)
                payload = task_payload(task_id, contact, campaign_id=task.campaign_id,
                                       rep_id=task.rep_id, kind=task.kind, priority=task.priority,
                                       due_at=next_at, reason=live_text(task.reason, now))
                payload.update(outcome=outcome, notes=notes, attempt=n, attempts=cadence.attempts,
                               next_at=next_at.isoformat())
                store.append_event("task.attempt", payload, now=now)
                return store.get_task(task_id)
            store.log_final_attempt(task_id, outcome=outcome, notes=notes, now=now)
            outcome = chosen = "unreachable"
        store.complete_task(task_id, outcome=chosen, notes=notes, now=now, snooze_until=snooze_until)
        if outcome == "unreachable" and cadence.unreachable:
            _fallback(store, task, cadence, campaigns or {}, now=now)
        if chosen in EXIT_OUTCOMES:
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
            payload = task_payload(task_id, contact, campaign_id=task.campaign_id,
                                   rep_id=task.rep_id, kind=task.kind, priority=task.priority,
                                   due_at=task.due_at, reason=live_text(task.reason, now))
            payload.update(_done_fields(store, store.get_task(task_id), settings, campaigns or {}, now=now))
            if called != outcome:
                payload["last_call"] = called
            store.append_event("task.done", payload, now=now)
        return store.get_task(task_id)


def _done_fields(store: Store, task: Task, settings: Settings | None,
                 campaigns: Mapping[str, Campaign], *, now: datetime) -> dict[str, object]:
    """The ``task.done`` webhook's fields beyond the task itself: the same ones as
    ``nurture tasks --json`` (:func:`nurture.exports.export_fields`)."""
    rep = configured_rep(settings, task.rep_id) if settings else None
    campaign = campaigns.get(task.campaign_id)
    scoring = campaign.scoring if campaign else Scoring()
    raw, raw_at, hot = store.contact_score(task.contact_id)
    score = decayed(raw, raw_at, now=now, half_life=scoring.half_life)
    timeline = task.context.get("timeline") or []
    return {
        "outcome": task.outcome, "notes": task.notes, "bant": store.task_bant(task.id),
        "attempts": task.attempts, "max_attempts": task.max_attempts, "attempt_log": list(task.attempt_log),
        "done_at": task.done_at.isoformat() if task.done_at else None,
        "rep": {"id": rep.id, "name": rep.name, "email": rep.email} if rep else
               ({"id": task.rep_id, "name": None, "email": None} if task.rep_id else None),
        "score": round(score, 1), "hot": hot and score >= scoring.hot_threshold,
        "raised_by": timeline[0] if timeline else None,
    }


def _fallback(store: Store, task: Task, cadence: Cadence, campaigns: Mapping[str, Campaign], *,
              now: datetime) -> None:
    """The rule's ``unreachable:`` fallback: continue at a step now, or enroll elsewhere."""
    fb = cadence.unreachable or {}
    if fb.get("step"):
        if not store.restart_enrollment_at(campaign_id=task.campaign_id, contact_id=task.contact_id,
                                           step_id=str(fb["step"]), now=now):
            log.info("task %s: no running enrollment to move to step %s", task.id, fb["step"])
    elif fb.get("enroll"):
        other = campaigns.get(str(fb["enroll"]))
        if other is None:
            log.warning("task %s: fallback campaign %s is not loaded", task.id, fb["enroll"])
            return
        enroll(store, other, now=now, email_keys=[email_key(store.get_contact(task.contact_id).email)])
