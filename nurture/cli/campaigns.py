"""``nurture validate``, ``nurture preview`` and ``nurture schema``: the marketer's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from nurture.campaigns import campaign_json_schema, find_campaign, find_sample, sample_contact
from nurture.cli.app import console, handle_errors, main, project_settings, settings_of
from nurture.config import Settings
from nurture.errors import LocatedError, NotFound, NurtureError, TemplateError
from nurture.models import Campaign, Contact
from nurture.render import Renderer, memory_link_ids
from nurture.timeutil import utcnow
from nurture.validate import check


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (ok, problems with file, line, column, field and message, counts).")
@click.option("--strict", is_flag=True, help="Fail on sending-hygiene warnings too.")
@click.pass_context
@handle_errors
def validate(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, strict: bool) -> None:
    """Check campaign files and their templates; print every problem.

    PATHS are campaign files or folders (default: the campaigns folder from config.yaml).
    Each problem is printed as file:line:col: field: message and the exit code is 1;
    with none, a one-line summary and exit code 0. --json prints the same as one JSON
    object on stdout, for CI, with the same exit codes. Sending-hygiene warnings (no DKIM, a
    sender not aligned with dkim.domain, tracking not on https, no postal address) are
    printed too (in --json as "hygiene"), and fail the run with --strict.
    """
    report = check(list(paths) or None, settings=settings_of(ctx) if paths else project_settings(ctx))
    failed = bool(report.errors) or (strict and bool(report.hygiene))
    if as_json:
        click.echo(json.dumps({"ok": not failed, "problems": [_problem(e) for e in report.errors],
                               "hygiene": list(report.hygiene),
                               "campaigns": report.campaigns, "steps": report.steps, "links": report.links,
                               "samples": report.samples}, indent=2, ensure_ascii=False))
        sys.exit(1 if failed else 0)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not report.errors:  # sending hygiene once the campaigns themselves are sound
        for w in report.hygiene:
            click.echo(f"warning: {w}", err=True)
        if strict and report.hygiene:
            n = len(report.hygiene)
            click.echo(f"{n} sending-hygiene warning{'s' if n != 1 else ''} (--strict)", err=True)
            sys.exit(1)
    if report.errors:
        for err in report.errors:
            click.echo(str(err), err=True)
        n = len(report.errors)
        click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
        sys.exit(1)
    click.echo(report.summary())


def _problem(err: NurtureError) -> dict[str, object]:
    """One problem for ``validate --json``: where it is (when known) and what it says."""
    if isinstance(err, LocatedError):
        return {"file": err.file, "line": err.line, "column": err.column, "field": err.field,
                "message": err.message, "text": str(err)}
    if isinstance(err, TemplateError):
        return {"file": err.template, "line": err.line, "column": None, "field": None,
                "message": err.message, "text": str(err)}
    return {"file": None, "line": None, "column": None, "field": None, "message": str(err), "text": str(err)}


@main.command()
@click.argument("campaign_id", metavar="CAMPAIGN")
@click.argument("step_id", metavar="STEP")
@click.option("--contact", "contact_key", metavar="EMAIL_OR_SAMPLE",
              help="A sample's email or number (default: the first sample), or a contact's email "
                   "in the database.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("preview"),
              show_default=True, help="Folder for the .eml and .html files.")
@click.pass_context
@handle_errors
def preview(ctx: click.Context, campaign_id: str, step_id: str, contact_key: str | None, out_dir: Path) -> None:
    """Render one step of a campaign for one contact, exactly as it would be sent.

    Writes OUT/CAMPAIGN-STEP.eml (the real MIME message, both parts) and .html, and prints
    the subject, headers, links and paths. Uses send id 0 and link ids kept in memory, so
    the tracked links in a preview do not work on the tracker.
    """
    settings = project_settings(ctx)
    campaign = find_campaign(settings.campaigns_dir, campaign_id, root=Path.cwd())
    try:
        step = campaign.step(step_id)
    except KeyError:
        known = ", ".join(s.id for s in campaign.steps)
        raise NotFound(f'no step "{step_id}" in campaign "{campaign.id}" (steps: {known})') from None
    contact = _contact(settings, campaign, contact_key)
    msg = Renderer.from_settings(settings).render(
        campaign=campaign, step=step, contact=contact, send_id=0, link_ids=memory_link_ids(), now=utcnow())
    out_dir.mkdir(parents=True, exist_ok=True)
    eml = out_dir / f"{campaign.id}-{step.id}.eml"
    html = out_dir / f"{campaign.id}-{step.id}.html"
    eml.write_bytes(msg.to_bytes())
    html.write_text(msg.html, encoding="utf-8")

    console.print(f"[bold]{escape(msg.subject)}[/bold]")
    if msg.preheader:
        console.print(f"[dim]inbox preview:[/dim] {escape(msg.preheader)}")
    console.print(f"preview of {escape(campaign.id)} / {escape(step.id)} for {escape(contact.email)}: "
                  "send id 0, link ids in memory (tracked links in a preview do not resolve)")
    if settings.tracking.development_secret:
        console.print("[dim]links signed with the built-in development secret: fine for a preview; "
                      f"run, serve and send need {settings.tracking.secret_env} or tracking.secret_file[/dim]")
    headers = Table(show_header=False, box=None, pad_edge=False)
    for name, value in msg.headers:
        headers.add_row(f"[dim]{escape(name)}[/dim]", escape(value))
    console.print(headers)
    links = Table("link", "goes to", box=None, pad_edge=False)
    for link in msg.links:
        trap = " (hidden trap for link scanners)" if link.honeypot else ""
        links.add_row(escape(link.name + trap), escape(link.url))
    console.print(links)
    console.print(f"wrote {escape(str(eml))} ({len(msg.to_bytes())} bytes) and {escape(str(html))}")


@main.command()
@handle_errors
def schema() -> None:
    """Print the JSON Schema of campaign files (for editors and CI checks)."""
    click.echo(json.dumps(campaign_json_schema(), indent=2))


def _contact(settings: Settings, campaign: Campaign, key: str | None) -> Contact:
    try:
        return sample_contact(find_sample(campaign, key))
    except NotFound:
        if key is None or "@" not in key or not Path(settings.database).exists():
            raise
    from nurture.store import open_store  # only when a real contact is asked for

    found = open_store(settings.database).get_contact_by_email(key)
    if found is None:
        raise NotFound(f'no sample or contact "{key}" (samples: '
                       f'{", ".join(str(s.get("email")) for s in campaign.samples) or "none"})')
    return found
