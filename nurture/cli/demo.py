"""``nurture demo`` (the whole loop on a compressed clock) and ``nurture report``."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from nurture.cli.app import console, handle_errors, main, settings_of
from nurture.timeutil import zone


@main.command("demo")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default="nurture-demo",
              show_default=True, help="Workspace for the demo's database and received mail (recreated).")
@click.option("--speed", type=click.FloatRange(min=1), default=80_000, show_default=True,
              help="How much faster simulated time runs while nothing is happening "
                   "(the default plays the three weekly steps in about a minute).")
@click.option("--contacts", type=click.IntRange(3, 5000), default=60, show_default=True,
              help="How many fictional merchants to enroll.")
@click.option("--exit", "exit_after", is_flag=True,
              help="Exit after the play instead of serving the reps' app until Ctrl-C.")
@click.option("--tracker-port", type=int, default=8080, show_default=True,
              help="Tracker port (a taken port is an error; 0 picks any free port).")
@click.option("--reps-port", type=int, default=8081, show_default=True,
              help="Reps' app port (a taken port is an error; 0 picks any free port).")
@click.pass_context
@handle_errors
def demo_command(ctx: click.Context, workdir: Path, speed: float, contacts: int, exit_after: bool,
                 tracker_port: int, reps_port: int) -> None:
    """Play a whole nurture campaign on this machine, end to end.

    Starts an embedded SMTP sink (every message lands as a .eml file in DIR/mail), the
    tracker and the reps' app on localhost; imports fictional e-commerce merchants,
    enrolls them in campaigns/ec-payments.yaml and plays the campaign on a compressed
    clock. Simulated recipients read, click and ignore; corporate mail scanners sweep
    some messages. Human pricing clicks become call-now tasks for reps; scanner sweeps
    become none. Then it prints the reps' page with login links and serves it until Ctrl-C.
    """
    from nurture.demo import play
    from nurture.project import demo_sources

    settings, campaigns_dir = demo_sources(settings_of(ctx))
    state: dict[str, Any] = {}

    async def run(live: Live) -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def update(view: dict[str, Any]) -> None:
            state["view"] = view
            live.update(_live_view(view, settings))

        def ready(result: Any) -> None:
            live.update(_live_view(state.get("view", {}), settings, final=True))
            live.stop()
            _print_finale(result, serving=not exit_after)

        return await play(base=settings, workdir=workdir, campaigns_dir=campaigns_dir, speed=speed,
                          contacts=contacts, keep_serving=not exit_after, tracker_port=tracker_port,
                          reps_port=reps_port, on_update=update, on_ready=ready, stop=stop)

    console.print(f"[bold]nurture demo[/bold]: {contacts} fictional merchants, campaign "
                  f"ec-payments, workspace {workdir}/")
    with Live(Text("starting…"), console=console, refresh_per_second=6) as live:
        asyncio.run(run(live))
    console.print("demo stopped.")


def _live_view(view: dict[str, Any], settings: Any, *, final: bool = False) -> Panel:
    act = view.get("activity", {})
    sends, clicks, tasks = act.get("sends", {}), act.get("clicks", {}), act.get("tasks", {})
    now = view.get("now")
    when = now.astimezone(zone("Asia/Tokyo")).strftime("%a %d %b %H:%M Tokyo") if now else "…"
    head = Text.assemble(("simulated time ", "dim"), (when, "bold"), ("   ", ""),
                         (view.get("phase", ""), "italic"))
    mail = Table.grid(padding=(0, 2))
    mail.add_row("mails delivered", f"[bold]{sends.get('sent', 0)}[/bold]",
                 "failed", str(sends.get("failed", 0)), "skipped", str(sends.get("skipped", 0)),
                 "waiting", str(sends.get("queued", 0) + sends.get("retry", 0) + sends.get("sending", 0)))
    mail.add_row("clicks: people", f"[bold green]{clicks.get('human', 0)}[/bold green]",
                 "scanners", f"[yellow]{clicks.get('scanner', 0)}[/yellow]",
                 "being judged", str(clicks.get("pending", 0)), "", "")
    reps = Table("rep", "call now", "call", "done", box=None, header_style="dim", padding=(0, 2))
    names = {r.id: r.name for r in settings.reps}
    for rep_id, counts in sorted(tasks.items()):
        reps.add_row(names.get(rep_id, rep_id or "(unassigned)"),
                     f"[bold red]{counts.get('open_call_now', 0)}[/bold red]",
                     str(counts.get("open_call", 0) + counts.get("open_email", 0)),
                     str(counts.get("done", 0)))
    title = "nurture demo — done" if final else "nurture demo — playing"
    back = [Text("came back: " + line, style="magenta") for line in view.get("inbound", [])[-4:]]
    return Panel(Group(head, Text(""), mail, *([Text(""), *back] if back else []), Text(""), reps), title=title,
                 border_style="blue")


def _print_finale(result: Any, *, serving: bool) -> None:
    act = result.activity
    open_now = sum(c.get("open_call_now", 0) for c in act["tasks"].values())
    cfg = f"nurture --config {result.workdir}/config.yaml"
    console.print(f"\n[bold green]✓[/bold green] {act['sends'].get('sent', 0)} mails delivered to the sink "
                  f"({result.workdir}/mail), {act['clicks'].get('human', 0)} human clicks, "
                  f"{act['clicks'].get('scanner', 0)} scanner clicks filtered, "
                  f"[bold]{open_now} call-now task(s)[/bold] waiting for reps.\n")
    if result.inbound:
        console.print("[bold]What came back[/bold] (replies, out-of-office, bounces after acceptance):")
        for line in result.inbound:
            console.print(f"  {line}", soft_wrap=True, markup=False)
        console.print("")
    console.print(f"[dim]The play ran on a simulated clock; its times were moved by {_span(result.shifted)} "
                  "onto the real clock, so the reps' app and every command on the workspace agree.[/dim]")
    if serving:
        console.print("[bold]Reps' task lists[/bold] (each link logs one rep in; the manager sees every queue):")
        names = {r.id: r.name for r in result.settings.reps}
        for rep_id, token in result.tokens.items():
            console.print(f"  {names.get(rep_id, rep_id):<14} {result.reps_url}/login?token={token}",
                          soft_wrap=True)
        console.print(f"\nCampaign report: {result.reps_url}/report/ec-payments (after logging in), "
                      f"or `{cfg} report ec-payments`", soft_wrap=True)
        console.print(f"Tracker: {result.tracker_url}   Database: {result.settings.database}", soft_wrap=True)
        return
    # With --exit the servers are gone: no login links that would not open.
    console.print(f"The workspace stays: `{cfg} tasks`, `… report ec-payments`; to see the reps' app, "
                  f"`{cfg} serve` and a login link from `{cfg} reps token aoki`.", soft_wrap=True)
    console.print(f"Database: {result.settings.database}", soft_wrap=True)


def _span(delta: Any) -> str:
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{int(hours)} h {int(rest // 60):02d} min"


@main.command("report")
@click.argument("campaign_id", metavar="CAMPAIGN")
@click.option("--json", "as_json", is_flag=True, help="Print the funnel as JSON.")
@click.pass_context
@handle_errors
def report_command(ctx: click.Context, campaign_id: str, as_json: bool) -> None:
    """Show a campaign's funnel per step: delivered, failed, clicked by people, scanner
    clicks filtered, tasks and outcomes (connected, qualified)."""
    from nurture.campaigns import find_campaign
    from nurture.report import COLUMNS, rows
    from nurture.store import open_store

    settings = settings_of(ctx)
    campaign = find_campaign(settings.campaigns_dir, campaign_id)
    store = open_store(settings.database)
    try:
        funnel = store.funnel(campaign.id)
    finally:
        store.close()
    step_rows = rows(campaign, funnel)
    if as_json:
        click.echo(json.dumps({"campaign": campaign.id, "steps": [
            {"step": r.step_id, **{k: r.get(k) for k, _ in COLUMNS}, "click_rate": round(r.click_rate, 4),
             "complaint_rate": round(r.complaint_rate, 5)}
            for r in step_rows]}, indent=2))
        return
    from nurture.cli.tables import report_view

    console.print(report_view(title=f"{campaign.name} ({campaign.id})", step_rows=step_rows))
