"""``nurture contacts import``, ``enroll``, ``plan``, ``simulate`` and ``stats`` (the other ``contacts``
commands are in :mod:`nurture.cli.people`)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from nurture.cli.app import console, err_console, handle_errors, main, project_settings, settings_of
from nurture.config import Settings
from nurture.errors import NotFound
from nurture.models import Campaign, Contact
from nurture.timeutil import utcnow

if TYPE_CHECKING:
    from nurture.scheduler import TimelineEntry
    from nurture.store import Store

#: Bad rows listed after an import (all are counted).
SHOW_ERRORS = 20


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    from nurture.store import open_store

    store = open_store(settings.database)
    try:
        yield store
    finally:
        store.close()


def _campaign(settings: Settings, campaign_id: str) -> Campaign:
    from nurture.campaigns import find_campaign

    return find_campaign(settings.campaigns_dir, campaign_id, root=Path.cwd())


@contextmanager
def _progress(path: Path, label: str) -> Iterator[Any]:
    total = path.stat().st_size if path.exists() else None
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(escape(label), total=total)
        yield lambda done: bar.update(task, completed=done)


def _report_errors(summary: Any) -> None:
    for err in summary.errors[:SHOW_ERRORS]:
        err_console.print(f"[yellow]skipped[/yellow] {escape(str(err))}")
    if summary.skipped > SHOW_ERRORS:
        err_console.print(f"… and {summary.skipped - SHOW_ERRORS} more bad rows")


@main.group("contacts")
def contacts_group() -> None:
    """Import, look up, edit, export, suppress and erase contacts."""


@contacts_group.command("import")
@click.argument("file", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--map", "maps", metavar='"HEADER=FIELD"', multiple=True,
              help='Read column HEADER as FIELD (a field, an attribute name, or - to leave it out); repeatable.')
@click.option("--mapping", "mapping_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="A file of HEADER=FIELD lines, for an export you import often.")
@click.option("--encoding", metavar="NAME", help="The file's encoding (default: detected: UTF-8, UTF-16, Shift_JIS).")
@click.option("--dry-run", is_flag=True, help="Show how the file would be read, and its bad rows; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@handle_errors
def import_command(ctx: click.Context, file: Path, maps: tuple[str, ...], mapping_file: Path | None,
                   encoding: str | None, dry_run: bool, as_json: bool) -> None:
    """Add or update contacts from a CSV file (matched by email, in any letter case).

    Headers of HubSpot, Salesforce, Pipedrive, Zoho and Japanese business-card exports
    (Sansan, Eight) are recognised; --map "Company Name=company" names any other. Columns
    that are not fields are kept for templates as contact.<name>. How each column is read
    is printed before anything is written. Bad rows are listed as FILE:ROW: FIELD: MESSAGE
    with the row number a spreadsheet shows, and skipped. Empty cells leave stored values
    unchanged.
    """
    summary = _import(ctx, file, maps=maps, mapping_file=mapping_file, encoding=encoding, dry_run=dry_run,
                      as_json=as_json)
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2, ensure_ascii=False))
        return
    _report_errors(summary)
    if summary.dry_run:
        console.print(escape(str(summary)))
        return
    console.print(f"{escape(str(file))}: imported {summary.new} new, updated {summary.updated}, "
                  f"skipped {summary.skipped} bad row{'s' if summary.skipped != 1 else ''}")


def _import(ctx: click.Context, file: Path, *, maps: Sequence[str] = (), mapping_file: Path | None = None,
            encoding: str | None = None, dry_run: bool = False, as_json: bool = False,
            on_batch: Any = None) -> Any:
    """Import with the options every import command shares; prints the column plan first."""
    from nurture.contacts import import_contacts, rep_owners
    from nurture.csvmap import ColumnMap, load_map_file, merge, parse_map
    from nurture.erasure import erased_filter

    settings = settings_of(ctx)
    mapping = merge(load_map_file(mapping_file) if mapping_file else ColumnMap.empty(), parse_map(maps))

    def show_plan(plan: Any) -> None:
        if not as_json:
            for line in plan.lines():
                console.print(escape(line))

    with _store(settings) as store, _progress(file, f"importing {file.name}") as progress:
        return import_contacts(store, file, now=utcnow(), progress=progress, display_name=str(file),
                               mapping=mapping, encoding=encoding, dry_run=dry_run, on_plan=show_plan,
                               erased=erased_filter(store, keys=settings.tracking.keys),
                               owners=rep_owners(settings.reps), on_batch=on_batch)


def _where(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter("use FIELD=VALUE, e.g. --where industry=apparel", param_hint="--where")
    return name.strip().lower(), value.strip()


@main.command()
@click.argument("campaign_id", metavar="CAMPAIGN")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Import this CSV file (as `contacts import` does) and enroll its contacts.")
@click.option("--all", "all_contacts", is_flag=True, help="Enroll every active contact.")
@click.option("--where", "where", metavar="FIELD=VALUE",
              help="Enroll contacts whose column or extra attribute FIELD equals VALUE (any letter case).")
@click.pass_context
@handle_errors
def enroll(ctx: click.Context, campaign_id: str, csv_file: Path | None, all_contacts: bool, where: str | None) -> None:
    """Start contacts on a campaign's first step.

    Choose the contacts with exactly one of --csv, --all or --where. Enrolling is
    idempotent (contacts already in the campaign are left alone) and skips suppressed,
    unsubscribed and bounced addresses. Applies the campaign's current YAML first (see
    `nurture plan`).
    """
    from nurture.scheduler import enroll as enroll_contacts

    if sum((csv_file is not None, all_contacts, where is not None)) != 1:
        raise click.UsageError("choose the contacts with exactly one of --csv FILE, --all or --where FIELD=VALUE")
    settings = settings_of(ctx)
    campaign = _campaign(settings, campaign_id)
    now = utcnow()
    with _store(settings) as store:
        if csv_file is None:
            r = enroll_contacts(store, campaign, now=now, all_contacts=all_contacts, where=_where(where))
            enrolled, already, suppressed = r.enrolled, r.already, r.suppressed
        else:
            totals = [0, 0, 0]

            def on_batch(keys: Sequence[str]) -> None:
                r = enroll_contacts(store, campaign, now=now, email_keys=keys)
                totals[0] += r.enrolled
                totals[1] += r.already
                totals[2] += r.suppressed

            summary = _import(ctx, csv_file, on_batch=on_batch)
            _report_errors(summary)
            console.print(f"{escape(str(csv_file))}: imported {summary.new} new, updated {summary.updated}, "
                          f"skipped {summary.skipped} bad row{'s' if summary.skipped != 1 else ''}")
            enrolled, already, suppressed = totals
    console.print(f"enrolled {enrolled} contact{'s' if enrolled != 1 else ''} in {escape(campaign.id)} "
                  f"({already} already enrolled, {suppressed} suppressed or unsubscribed skipped)")


@main.command()
@click.argument("campaign_id", metavar="CAMPAIGN")
@click.pass_context
@handle_errors
def plan(ctx: click.Context, campaign_id: str) -> None:
    """Show what the campaign's YAML would change for running enrollments, without applying it.

    Enrollments continue by step id; those waiting for a removed step move to the step
    that now follows the last step they passed. Changes are applied by the next
    `nurture enroll`, `nurture send` or `nurture run`.
    """
    from nurture.scheduler import plan_change

    settings = settings_of(ctx)
    campaign = _campaign(settings, campaign_id)
    with _store(settings) as store:
        p = plan_change(store, campaign)
    if p.stored_version is None:
        console.print(f"{escape(campaign.id)} is new: version 1 will be stored on the first enroll; "
                      f"steps {escape(', '.join(s.id for s in campaign.steps))}")
        return
    if not p.changed:
        console.print(f"{escape(campaign.id)}: no changes (version {p.stored_version} is applied)")
        return
    console.print(f"{escape(campaign.id)}: version {p.stored_version} → {p.stored_version + 1}")
    for step in p.added:
        console.print(f"  + new step {escape(step)}")
    for step in p.removed:
        console.print(f"  - removed step {escape(step)}")
    if not p.changes:
        console.print("  no running enrollments")
    for ch in p.changes:
        flight = f" ({ch.in_flight} with the previous mail still being sent)" if ch.in_flight else ""
        if ch.step is None:
            continue
        if ch.target == ch.step:
            console.print(f"  {ch.count} at step {escape(ch.step)} continue{flight}")
        elif ch.target is None:
            console.print(f"  {ch.count} at removed step {escape(ch.step)} complete (no step follows){flight}")
        else:
            console.print(f"  {ch.count} at removed step {escape(ch.step)} move to {escape(ch.target)}{flight}")
    console.print("apply with: nurture enroll / nurture send / nurture run")


def _sim_contact(settings: Settings, campaign: Campaign, key: str | None) -> Contact:
    from nurture.campaigns import find_sample, sample_contact

    if key and "@" in key and Path(settings.database).exists():
        with _store(settings) as store:
            found = store.get_contact_by_email(key)
        if found is not None:
            return found
    try:
        return sample_contact(find_sample(campaign, key))
    except NotFound:
        if key is None:
            return Contact(id=0, email="sample@example.com")
        raise


@main.command()
@click.argument("campaign_id", metavar="CAMPAIGN")
@click.option("--contact", "contact_key", metavar="EMAIL",
              help="A contact in the database, or a sample's email or number (default: the first sample).")
@click.option("--click", "clicks", metavar="STEP:LINK@+2h", multiple=True,
              help="Pretend the contact clicks LINK in STEP this long after it arrives (repeatable).")
@click.option("--start", "start", metavar="TIME",
              help='When the contact is enrolled, e.g. "2026-12-04 17:30" (in the contact\'s time zone '
                   "unless it has an offset; default: now).")
@click.option("--team", "team", type=int, metavar="N",
              help="Instead: send the first step to N contacts at once and play the reps' days "
                   "(config.yaml's reps, else 3 × 16): mail sent and held (pace: reps), tasks, calls, waits.")
@click.option("--click-rate", "click_rate", type=float, default=0.15, show_default=True,
              help="With --team: the share of contacts who click a call-now link.")
@click.pass_context
@handle_errors
def simulate(ctx: click.Context, campaign_id: str, contact_key: str | None, clicks: tuple[str, ...],
             start: str | None, team: int | None, click_rate: float) -> None:
    """Play a campaign for one contact on a simulated clock and print the timeline.

    Runs the real scheduler against a throwaway in-memory database (the real one is only
    read): each step with when it would go out in the contact's local time, what it would
    skip and why (outside the send window, a public holiday, a closure), and which
    follow-up task a --click would raise. With --team N: one send to N contacts and the
    reps' day plans, day by day.
    """
    from nurture.scheduler import parse_click
    from nurture.scheduler import simulate as run_simulation

    settings = project_settings(ctx)
    campaign = _campaign(settings, campaign_id)
    try:
        parsed = [parse_click(c) for c in clicks]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--click") from None
    contact = _sim_contact(settings, campaign, contact_key)
    from nurture.rules import match_rule
    from nurture.scheduler import contact_zone

    now = utcnow()
    if start is not None:
        try:
            moment = datetime.fromisoformat(start)
        except ValueError:
            raise click.BadParameter(f'"{start}" is not a time (try "2026-12-04 17:30")',
                                     param_hint="--start") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=contact_zone(contact.timezone, campaign.timezone))
        now = moment.astimezone(UTC)
    if team is not None:
        _simulate_team(settings, campaign, contacts=team, start=now, click_rate=click_rate)
        return
    tl = run_simulation(campaign, contact=contact, now=now, clicks=parsed, rule_for=match_rule,
                        closures=settings.closures)
    subjects = _subjects(settings, campaign, contact, [e for e in tl.entries if e.kind == "sent"])
    console.print(f"[bold]{escape(campaign.id)}[/bold] for {escape(contact.name)} <{escape(contact.email)}>, "
                  f"times in {tl.timezone.key}")
    table = Table("when", "step", "what", "", box=None, pad_edge=False, header_style="dim")
    styles = {"sent": "green", "skipped": "yellow", "exited": "red", "task": "bold magenta", "click": "cyan"}
    for entry in tl.entries:
        when = entry.at.astimezone(tl.timezone).strftime("%a %d %b %Y %H:%M %Z")
        text = subjects.get(entry.step, entry.text) if entry.kind == "sent" else entry.text
        if entry.due is not None:
            text += f" (by {entry.due.astimezone(tl.timezone):%a %d %b %H:%M})"
        style = styles.get(entry.kind, "")
        kind = f"[{style}]{entry.kind}[/{style}]" if style else entry.kind
        table.add_row(when, escape(entry.step or ""), kind, escape(text))
    console.print(table)


def _simulate_team(settings: Settings, campaign: Campaign, *, contacts: int, start: datetime,
                   click_rate: float) -> None:
    from nurture.pacing import paced_steps
    from nurture.teamsim import default_team, simulate_team

    if contacts < 1:
        raise click.BadParameter("give at least one contact", param_hint="--team")
    reps = settings.reps or default_team()
    links = [r.when.clicked for r in campaign.follow_up if r.task == "call_now" and not r.when.replied]
    result = simulate_team(campaign, reps=reps, contacts=contacts, start=start, click_rate=click_rate,
                           link=links[0] if links else "any", timezone=reps[0].timezone)
    paced = ", ".join(sorted(paced_steps(campaign))) or "nothing"
    console.print(f"[bold]{escape(campaign.id)}[/bold]: {campaign.steps[0].id} to {contacts} contacts, "
                  f"{len(reps)} reps ({', '.join(f'{r.id} × {r.capacity}' for r in reps)}), "
                  f"{click_rate:.0%} click; pace: {escape(campaign.pace or 'none')} (holds {escape(paced)})")
    table = Table("day", "sent", "held", "tasks", "calls", box=None, pad_edge=False, header_style="dim")
    for d in result.days:
        table.add_row(f"{d.day:%a %d %b}", str(d.sent), str(d.held), str(d.tasks), str(d.calls))
    console.print(table)
    for h in result.holidays:
        console.print(f"[yellow]skipped[/yellow] {escape(h)}")
    console.print(f"call-now tasks: {len(result.waits)}; called past due by more than one working day: "
                  f"{result.late}; longest wait past due: {result.max_wait:.2f} working days; "
                  f"never called: {result.open_at_end}")


def _subjects(settings: Settings, campaign: Campaign, contact: Contact,
              sent: Sequence[TimelineEntry]) -> dict[str | None, str]:
    """Each sent step's subject as the contact would see it (the raw template if it cannot render)."""
    from nurture.errors import NurtureError
    from nurture.render import Renderer, memory_link_ids

    out: dict[str | None, str] = {}
    try:
        renderer = Renderer.from_settings(settings)
        for e in sent:
            if e.step is None:
                continue
            msg = renderer.render(campaign=campaign, step=campaign.step(e.step), contact=contact, send_id=0,
                                  link_ids=memory_link_ids(), now=e.at)
            out[e.step] = msg.subject
    except NurtureError as err:
        err_console.print(f"[yellow]note[/yellow] subjects shown unrendered: {escape(str(err))}")
    return out


@main.command()
@click.argument("campaign_id", metavar="CAMPAIGN", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@handle_errors
def stats(ctx: click.Context, campaign_id: str | None, as_json: bool) -> None:
    """Sends per campaign and step: queued, sent, failed, bounced, skipped, suppressed, and
    what came back: bounced later, complaints (with the rate), replies, out of office.

    "queued" includes mail being sent and waiting for a retry; "bounced" counts hard
    bounces at sending (not in "failed"), "bounced later" those reported after the relay
    accepted; "skipped" steps were passed over by a condition or an exit.
    """
    settings = settings_of(ctx)
    with _store(settings) as store:
        report = _stats(store, campaign_id)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for r in report["relays"]:
        console.print(_relay_line(r), markup=False)
    if not report["campaigns"]:
        console.print("no campaigns applied yet (nurture enroll applies one)")
        return
    from nurture.cli.tables import stats_view

    console.print(stats_view(report, columns=_COLUMNS))
    for c in report["campaigns"]:
        p = c.get("pacing")
        if p:
            since = f" since {p['held_since']}" if p["held_since"] else ""
            console.print(f"{escape(c['id'])}: pace: reps: {p['held']} held{since}, {p['released']} released, "
                          f"{p['free_slots']} calls free on the reps' next working day, "
                          f"{p['expect'] * 100:.1f} % call-now tasks per mail")


_COLUMNS = ("queued", "sent", "failed", "bounced", "skipped", "suppressed", "bounced_later", "complaints",
            "replies", "out_of_office")
#: Figures of Store.inbound_counts shown by stats, by their column name.
_INBOUND = {"bounced_later": "async_bounces", "complaints": "complaints", "replies": "replies",
            "out_of_office": "out_of_office"}


def _relay_line(r: dict[str, Any]) -> str:
    """What the senders learned about a relay (pool, rate, pause, last throttle reply)."""
    text = f"relay {r['name']}: pool {r['pool']} · rate {r['rate']:.3g}/s"
    if r["hold_until"] is not None and r["hold_until"] > time.time():
        text += f" · paused {r['hold_until'] - time.time():.0f}s more"
    if r["last_reply"]:
        text += f" · last reply {r['last_reply']!r}"
    return text


def _stats(store: Store, campaign_id: str | None) -> dict[str, Any]:
    ids = [campaign_id] if campaign_id else store.stored_campaign_ids()
    per_step = store.send_stats(campaign_id)
    states = store.enrollment_counts(campaign_id)
    came_back = store.inbound_counts(campaign_id)
    pacing = {p.campaign_id: p for p in store.pacing_status()}
    out = []
    for cid in ids:
        stored = store.get_stored_campaign(cid)
        if stored is None:
            raise NotFound(f'campaign "{cid}" has not been applied yet (nurture enroll {cid} applies it)')
        rows = {s.step_id: s for s in per_step if s.campaign_id == cid}
        order = list(stored.steps) + sorted(k for k in rows if k not in stored.steps)
        steps: list[dict[str, Any]] = []
        for step in order:
            s = rows.get(step)
            back = came_back.get(cid, {}).get(step, {})
            steps.append({"step": step, "current": step in stored.steps,
                          **{col: back.get(_INBOUND[col], 0) if col in _INBOUND else (getattr(s, col) if s else 0)
                             for col in _COLUMNS}})
        sent = sum(x["sent"] for x in steps)
        rate = sum(x["complaints"] for x in steps) / sent if sent else 0.0
        pace = pacing.get(cid)
        out.append({"id": cid, "version": stored.version, "enrollments": states.get(cid, {}), "steps": steps,
                    "complaint_rate": round(rate, 5),
                    **({"pacing": {"held": pace.held, "released": pace.released, "free_slots": pace.free_slots,
                                   "expect": round(pace.expect, 4),
                                   "held_since": pace.held_since.isoformat() if pace.held_since else None}}
                       if pace else {})})
    return {"campaigns": out, "relays": [dataclasses.asdict(r) for r in store.relay_states()]}


__all__ = ["contacts_group", "enroll", "plan", "simulate", "stats"]
