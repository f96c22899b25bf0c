"""``nurture tasks`` (list, export, close) and ``nurture reps`` (login tokens, the team)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click
from rich.markup import escape

from nurture import csvsafe
from nurture.cards import TaskCard, card_json, task_cards
from nurture.cli.app import console, handle_errors, main, settings_of
from nurture.cli.tables import reps_view, tasks_view
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.exports import HUBSPOT_COLUMNS, SALESFORCE_COLUMNS, export_fields, hubspot_row, salesforce_row
from nurture.models import OUTCOMES, Campaign, one_of
from nurture.outcomes import record_outcome
from nurture.repauth import issue_rep_token
from nurture.routing import local_day_start, on_shift
from nurture.store import open_store
from nurture.store.tasks import TASK_FILTERS
from nurture.timeutil import utcnow

#: Columns of ``nurture tasks --csv basic`` (``--csv`` alone is Salesforce Tasks, nurture.exports).
CSV_COLUMNS = ("Task ID", "First Name", "Last Name", "Company", "Email", "Phone", "Priority",
               "Due (ISO 8601)", "Reason", "Campaign", "Lead Score", "Owner")


def _campaigns(settings: Settings) -> dict[str, Campaign]:
    from nurture.campaigns import load_campaigns

    try:
        return {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    except NurtureError:  # listing tasks must not depend on every campaign file being valid
        return {}


def csv_row(card: TaskCard) -> dict[str, Any]:
    t, c = card.task, card.contact
    return {"Task ID": t.id, "First Name": c.first_name, "Last Name": c.last_name,
            "Company": c.company, "Email": c.email, "Phone": c.phone, "Priority": t.priority,
            "Due (ISO 8601)": t.due_at.isoformat(timespec="seconds"), "Reason": card.reason,
            "Campaign": card.campaign_name, "Lead Score": round(card.score),
            "Owner": t.rep_id or ""}


@main.group(invoke_without_command=True)
@click.option("--rep", "rep", metavar="REP", help="Only this rep's tasks.")
@click.option("--status", type=click.Choice(TASK_FILTERS), default="open",
              show_default=True, help="Which tasks to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object with a tasks list).")
@click.option("--csv", "as_csv", type=click.Choice(["salesforce", "hubspot", "basic"]), is_flag=False,
              flag_value="salesforce", default=None, metavar="[salesforce|hubspot|basic]",
              help="Print CSV: Salesforce Tasks columns (the default), HubSpot calls, or the basic list.")
@click.pass_context
@handle_errors
def tasks(ctx: click.Context, rep: str | None, status: str, as_json: bool, as_csv: str | None) -> None:
    """Reps' follow-up tasks: most urgent first (overdue, then priority, then due time).

    Without a subcommand, lists tasks as a table, --json or --csv (for a CRM import).
    """
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = settings_of(ctx)
    if rep is not None and rep not in {r.id for r in settings.reps}:
        known = ", ".join(r.id for r in settings.reps) or "none configured"
        raise click.BadParameter(f'no rep "{rep}" (reps: {known})', param_hint="--rep")
    now = utcnow()
    store = open_store(settings.database)
    try:
        cards = task_cards(store, _campaigns(settings), settings, now=now, rep_id=rep,
                           status=one_of(status, TASK_FILTERS) or "open")
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"tasks": [{**card_json(c, now), **export_fields(c)} for c in cards]},
                              indent=2, ensure_ascii=False))
        return
    if as_csv:
        columns, row = {"salesforce": (SALESFORCE_COLUMNS, salesforce_row),
                        "hubspot": (HUBSPOT_COLUMNS, hubspot_row)}.get(as_csv, (CSV_COLUMNS, csv_row))
        w = csvsafe.dict_writer(sys.stdout, fieldnames=columns, lineterminator="\r\n")
        w.writeheader()
        for c in cards:
            w.writerow(row(c))
        return
    if not cards:
        console.print(f"No {status} tasks{f' for {rep}' if rep else ''}.")
        return
    console.print(tasks_view(cards, now=now))


@tasks.command("done")
@click.argument("task_id", type=int)
@click.option("--outcome", required=True, type=click.Choice(OUTCOMES),
              help="What happened on the call.")
@click.option("--note", help="Notes for the record.")
@click.option("--snooze-until", "snooze", metavar="ISO-TIME",
              help="With --outcome snoozed: when to bring the task back (e.g. 2026-11-25T09:00+09:00).")
@click.pass_context
@handle_errors
def tasks_done(ctx: click.Context, task_id: int, outcome: str, note: str | None, snooze: str | None) -> None:
    """Record the outcome of task TASK_ID (not_interested and qualified also exit the campaign)."""
    settings = settings_of(ctx)
    until = None
    if snooze:
        try:
            until = datetime.fromisoformat(snooze)
        except ValueError:
            raise click.BadParameter(f'"{snooze}" is not an ISO 8601 time', param_hint="--snooze-until") from None
        if until.tzinfo is None:
            raise click.BadParameter("give a UTC offset, e.g. +09:00 or Z", param_hint="--snooze-until")
    store = open_store(settings.database)
    try:
        t = record_outcome(store, task_id=task_id, outcome=outcome, notes=note, now=utcnow(),
                           snooze_until=until, settings=settings, campaigns=_campaigns(settings))
    finally:
        store.close()
    if t.status == "open" and outcome != "snoozed":
        console.print(f"Task {t.id}: {outcome.replace('_', ' ')}, attempt {t.attempts} of "
                      f"{t.max_attempts}; next call {t.due_at:%Y-%m-%d %H:%M} UTC.")
    elif t.status == "open":
        console.print(f"Task {t.id} snoozed until {t.due_at:%Y-%m-%d %H:%M} UTC.")
    else:
        console.print(f"Task {t.id}: {outcome.replace('_', ' ')}.")


@main.group()
def reps() -> None:
    """The reps in config.yaml and their logins to the reps' app."""


@reps.command("token")
@click.argument("rep", required=False)
@click.option("--manager", is_flag=True, help="A manager token: sees every rep's queue (read-only).")
@click.pass_context
@handle_errors
def reps_token(ctx: click.Context, rep: str | None, manager: bool) -> None:
    """Print a new login token for REP (only its hash is stored; older tokens keep working)."""
    if not rep and not manager:
        raise click.UsageError("name a rep (nurture reps token aoki) or use --manager")
    settings = settings_of(ctx)
    store = open_store(settings.database)
    try:
        token = issue_rep_token(store, settings, rep_id=rep or "", now=utcnow(), manager=manager)
    finally:
        store.close()
    click.echo(token)
    click.echo(f"Log in at {settings.reps_app.base_url}/login?token={token}", err=True)


@reps.command("revoke")
@click.argument("rep")
@click.pass_context
@handle_errors
def reps_revoke(ctx: click.Context, rep: str) -> None:
    """Revoke every token of REP (use *manager* for manager tokens) and end their sessions."""
    settings = settings_of(ctx)
    store = open_store(settings.database)
    try:
        n = store.revoke_rep_tokens(rep, now=utcnow())
    finally:
        store.close()
    console.print(f"Revoked {n} token{'s' if n != 1 else ''} of {escape(rep)}.")


@reps.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def reps_list(ctx: click.Context, as_json: bool) -> None:
    """The reps: hours, whether on shift now, open and overdue tasks, capacity used today."""
    settings = settings_of(ctx)
    now = utcnow()
    store = open_store(settings.database)
    try:
        counts = store.queue_counts(now=now, since=now)
        today = store.assigned_since({r.id: local_day_start(r, now) for r in settings.reps})
        tokens = store.rep_token_counts()
    finally:
        store.close()
    rows: list[dict[str, Any]] = [  # the JSON objects; the table below is drawn from them
        {"id": r.id, "name": r.name, "email": r.email, "timezone": r.timezone,
         "hours": str(r.hours) if r.hours else None, "on_shift": on_shift(r, now),
         "open": counts.get(r.id, {}).get("open", 0), "overdue": counts.get(r.id, {}).get("overdue", 0),
         "assigned_today": today.get(r.id, 0), "capacity": r.capacity,
         "territory": list(r.territory), "tokens": tokens.get(r.id, 0)} for r in settings.reps]
    if as_json:
        click.echo(json.dumps({"reps": rows}, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print("No reps configured (add them under reps: in config.yaml).")
        return
    console.print(reps_view(rows))
