"""Tasks as a CRM takes them: the export JSON (``nurture tasks --json``, the ``task.done``
webhook) and CSV shapes that import as Salesforce Tasks or HubSpot calls (``--csv``,
``--csv hubspot``).

Salesforce's Data Import Wizard and Data Loader map columns to Task fields: ``Subject``,
``ActivityDate`` (a date), ``Status`` and ``Priority`` (the default picklists: Not Started /
Completed, High / Normal / Low), ``CallDisposition``, ``Description``, ``TaskSubtype`` and
``CallType``; ``Who (email)`` is matched to the contact or lead. HubSpot's import of calls maps
``Call title``, ``Activity date``, ``Call direction``, ``Call outcome`` (its default
dispositions: Connected, Left voicemail, No answer …), ``Call status``, ``Call notes`` and the
contact's ``Email`` for the association.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nurture.cards import TaskCard

#: ``nurture tasks --csv`` (Salesforce Tasks).
SALESFORCE_COLUMNS = ("Subject", "Who (email)", "ActivityDate", "Status", "Priority", "CallDisposition",
                      "Description", "TaskSubtype", "CallType", "Owner (email)", "Nurture Task ID",
                      "Lead Score", "Campaign")
#: ``nurture tasks --csv hubspot`` (HubSpot calls).
HUBSPOT_COLUMNS = ("Call title", "Activity date", "Call direction", "Call outcome", "Call status",
                   "Call notes", "Email", "First name", "Last name", "Company name", "Phone number",
                   "Activity assigned to", "Nurture Task ID", "Lead Score")

_SF_PRIORITY = {"urgent": "High", "high": "High", "normal": "Normal", "low": "Low"}
_HUBSPOT_OUTCOME = {"connected": "Connected", "qualified": "Connected", "not_interested": "Connected",
                    "voicemail": "Left voicemail", "no_answer": "No answer", "unreachable": "No answer"}
_KIND = {"call_now": "Call now", "call": "Call", "email": "Email"}


def raised_by(card: TaskCard) -> Mapping[str, Any] | None:
    """The click (or reply) that raised the task: the first entry of its timeline."""
    timeline = card.task.context.get("timeline") or []
    return timeline[0] if timeline else None


def export_fields(card: TaskCard) -> dict[str, Any]:
    """What ``--json`` and the ``task.done`` webhook add to a task: notes, BANT, outcome,
    attempts, done_at, the rep, the contact's score and what raised it."""
    t, rep = card.task, card.rep
    return {
        "notes": t.notes, "bant": dict(card.bant), "outcome": t.outcome,
        "attempts": t.attempts, "max_attempts": t.max_attempts, "attempt_log": list(t.attempt_log),
        "done_at": t.done_at.isoformat() if t.done_at else None,
        "rep": {"id": rep.id, "name": rep.name, "email": rep.email} if rep else
               ({"id": t.rep_id, "name": None, "email": None} if t.rep_id else None),
        "score": round(card.score, 1), "hot": card.hot, "raised_by": raised_by(card),
    }


def description(card: TaskCard) -> str:
    """The why, the notes, BANT and the attempts, as one text for a CRM's description field."""
    t = card.task
    parts = [card.reason or t.reason]
    if t.notes:
        parts.append(f"Notes: {t.notes}")
    bant = "; ".join(f"{k.capitalize()}: {v}" for k, v in card.bant.items() if v)
    if bant:
        parts.append(bant)
    if t.attempt_log:
        parts.append("Attempts: " + "; ".join(f"{a['n']}. {str(a['outcome']).replace('_', ' ')} {a['at']}"
                                              for a in t.attempt_log))
    return "\n".join(parts)


def _subject(card: TaskCard) -> str:
    return f"{_KIND.get(card.task.kind, 'Call')}: {card.contact.name} ({card.campaign_name})"


def salesforce_row(card: TaskCard) -> dict[str, Any]:
    t, c = card.task, card.contact
    when = t.done_at if t.status == "done" and t.done_at else t.due_at
    return {
        "Subject": _subject(card), "Who (email)": c.email, "ActivityDate": when.date().isoformat(),
        "Status": "Completed" if t.status == "done" else "Not Started",
        "Priority": _SF_PRIORITY.get(t.priority, "Normal"),
        "CallDisposition": (t.outcome or "").replace("_", " "), "Description": description(card),
        "TaskSubtype": "Email" if t.kind == "email" else "Call",
        "CallType": "" if t.kind == "email" else "Outbound",
        "Owner (email)": card.rep.email if card.rep else "", "Nurture Task ID": t.id,
        "Lead Score": round(card.score), "Campaign": card.campaign_name,
    }


def hubspot_row(card: TaskCard) -> dict[str, Any]:
    t, c = card.task, card.contact
    when = t.done_at if t.status == "done" and t.done_at else t.due_at
    return {
        "Call title": _subject(card), "Activity date": when.isoformat(timespec="seconds"),
        "Call direction": "OUTBOUND",
        "Call outcome": _HUBSPOT_OUTCOME.get(t.outcome or "", "") if t.status == "done" or t.attempts else "",
        "Call status": "COMPLETED" if t.status == "done" else "QUEUED",
        "Call notes": description(card), "Email": c.email, "First name": c.first_name,
        "Last name": c.last_name, "Company name": c.company, "Phone number": c.phone,
        "Activity assigned to": card.rep.email if card.rep else "", "Nurture Task ID": t.id,
        "Lead Score": round(card.score),
    }
