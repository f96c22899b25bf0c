"""``nurture send``: the scheduler plus the sender, once or in a loop."""

from __future__ import annotations

import asyncio

import click
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nurture.cli.app import console, handle_errors, main, production_settings, stop_on_signals
from nurture.config import Settings
from nurture.errors import ConfigError
from nurture.sender import SendSummary

_LABELS = (("sent", "sent (250 from the server)"), ("retried", "retried later (4xx, timeouts, dropped)"),
           ("failed", "failed (permanent)"), ("bounced", "bounced (address suppressed)"),
           ("blocked", "blocked by policy (5.7.x)"), ("suppressed", "suppressed at claim time"),
           ("skipped", "skipped (enrollment exited)"), ("released", "given back to the queue on stop"),
           ("recovered", "taken back from senders that were gone"),

           ("throttled", "slowed down by the relay (not charged)"),
           ("refused", "connections refused by the relay (not charged)"))


def _line(s: SendSummary) -> Text:
    parts = [f"{k} {getattr(s, k)}" for k in ("sent", "retried", "failed", "bounced", "blocked", "suppressed",
                                             "throttled", "refused")]
    text = "sending… " + " · ".join(parts)
    if s.relay is not None:  # what the sender believes about the relay now
        text += "\nrelay: " + s.relay.describe()
    return Text(text)


def preflight(settings: Settings, *, strict: bool) -> None:
    """Print the sending-hygiene warnings (nurture.validate.hygiene_warnings); with
    ``strict``, refuse to start when there are any."""
    from nurture.campaigns import load_campaigns
    from nurture.validate import hygiene_warnings

    warnings = hygiene_warnings(settings, load_campaigns(settings.campaigns_dir))
    for w in warnings:
        console.print(f"[yellow]warning[/yellow] {w}", markup=True, highlight=False)
    if strict and warnings:
        raise ConfigError(f"{len(warnings)} sending-hygiene warning(s) and --strict: not sending")


def summary_table(summary: SendSummary, counts: dict[str, int]) -> Table:
    table = Table(title="nurture send", show_header=True, header_style="bold")
    table.add_column("result")
    table.add_column("count", justify="right")
    for key, label in _LABELS:
        table.add_row(label, str(getattr(summary, key)))
    waiting = counts.get("queued", 0) + counts.get("retry", 0)
    table.add_row("still waiting in the outbox", str(waiting))
    table.add_row("held by other running senders", str(sum(h.rows for h in summary.held)))
    if summary.relay is not None:
        table.caption = "relay: " + summary.relay.describe()
    return table


def held_lines(summary: SendSummary) -> list[str]:
    """Who still holds rows when a ``--once`` run ends, and until when."""
    return [f"{h.rows} message(s) leased by the running sender {h.owner}"
            + (f" until {h.until:%Y-%m-%d %H:%M:%S} UTC" if h.until else "") for h in summary.held]


async def _send(settings: Settings, *, once: bool, live: Live | None) -> tuple[SendSummary, dict[str, int]]:
    from nurture.campaigns import load_campaigns
    from nurture.parts import SEND, Context, Options, run_parts
    from nurture.store import Store, open_async_store

    campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    store = open_async_store(settings.database)
    stop = asyncio.Event()
    results: list[SendSummary] = []
    progress = (lambda s: live.update(_line(s))) if live is not None else None
    try:
        with stop_on_signals(stop):
            await run_parts(SEND, Context(settings=settings, store=store, campaigns=campaigns, stop=stop,
                                          options=Options(once=once), sender_progress=progress,
                                          sender_done=results.append))
        counts = await store.call(Store.outbox_counts)
    finally:
        await store.aclose()
    return (results[0] if results else SendSummary()), counts


@main.command("send")
@click.option("--once", is_flag=True, help="Queue and send what is due now, print a summary, exit.")
@click.option("--strict", is_flag=True, help="Do not send when there are sending-hygiene warnings.")
@click.pass_context
@handle_errors
def send_command(ctx: click.Context, once: bool, strict: bool) -> None:
    """Queue due campaign steps and deliver them over SMTP.

    Runs the scheduler, then sends every due message through the SMTP server in
    config.yaml (pool of smtp.max_connections, rate smtp.rate), retrying temporary
    failures. Without --once it keeps running, checking about once a second. Ctrl-C or
    SIGTERM stops it cleanly: sends in flight finish, nothing is sent twice.
    """
    settings = production_settings(ctx, "send")
    preflight(settings, strict=strict)
    with Live(_line(SendSummary()), console=console, refresh_per_second=8, transient=True) as live:
        summary, counts = asyncio.run(_send(settings, once=once, live=live))
    console.print(summary_table(summary, counts))
    if summary.blocked:
        console.print(f"[yellow]{summary.blocked} message(s) refused by the server's policy (5.7.x); "
                      "check sender authentication (SPF/DKIM) and content[/yellow]")
    for line in held_lines(summary):
        console.print(line, markup=False)
    for err in summary.errors[-5:]:
        console.print(f"  {err}", markup=False)
