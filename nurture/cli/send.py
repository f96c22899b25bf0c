"""``nurture send``: the scheduler plus the sender, once or in a loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nurture.cli.app import console, handle_errors, main, settings_of
from nurture.config import Settings
from nurture.sender import Build, SendSummary, renderer_build, run_sender
from nurture.timeutil import Rate

Tick = Callable[[Any, datetime], Any]

_LABELS = (("sent", "sent (250 from the server)"), ("retried", "retried later (4xx, timeouts, dropped)"),
           ("failed", "failed (permanent)"), ("bounced", "bounced (address suppressed)"),
           ("blocked", "blocked by policy (5.7.x)"), ("suppressed", "suppressed at claim time"),
           ("skipped", "skipped (enrollment exited)"), ("released", "given back to the queue on stop"))


@dataclass(frozen=True, slots=True)
class SendParts:
    build: Build
    tick: Tick
    campaign_rates: Mapping[str, Rate]


def send_parts(settings: Settings) -> SendParts:
    """The real message builder (Renderer over the campaigns folder), the scheduler tick and
    the campaigns' own rates, as :func:`nurture.sender.run_sender` takes them. ``nurture run``
    uses this too: ``run_sender(store=..., settings=..., build=p.build, tick=p.tick,
    campaign_rates=p.campaign_rates, stop=..., once=False)``."""
    from nurture.campaigns import load_campaigns
    from nurture.render import Renderer
    from nurture.scheduler import tick as scheduler_tick

    campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    build = renderer_build(Renderer.from_settings(settings), campaigns)

    def tick(store: Any, now: datetime) -> Any:
        return scheduler_tick(store, campaigns, now=now)

    return SendParts(build=build, tick=tick,
                     campaign_rates={c.id: c.rate for c in campaigns.values() if c.rate is not None})


def _line(s: SendSummary) -> Text:
    parts = [f"{k} {getattr(s, k)}" for k in ("sent", "retried", "failed", "bounced", "blocked", "suppressed")]
    return Text("sending… " + " · ".join(parts))


def summary_table(summary: SendSummary, counts: dict[str, int]) -> Table:
    table = Table(title="nurture send", show_header=True, header_style="bold")
    table.add_column("result")
    table.add_column("count", justify="right")
    for key, label in _LABELS:
        table.add_row(label, str(getattr(summary, key)))
    waiting = counts.get("queued", 0) + counts.get("retry", 0)
    table.add_row("still waiting in the outbox", str(waiting))
    return table


async def _send(settings: Settings, *, once: bool, live: Live | None) -> tuple[SendSummary, dict[str, int]]:
    from nurture.store import open_async_store

    parts = send_parts(settings)
    store = open_async_store(settings.database)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (RuntimeError, ValueError):  # not the main thread (embedded, tests)
            pass
    progress = (lambda s: live.update(_line(s))) if live is not None else None
    try:
        summary = await run_sender(store=store, settings=settings, build=parts.build, stop=stop, once=once,
                                   progress=progress, tick=parts.tick, campaign_rates=parts.campaign_rates)
        counts = await store.outbox_counts()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await store.aclose()
    return summary, counts


@main.command("send")
@click.option("--once", is_flag=True, help="Queue and send what is due now, print a summary, exit.")
@click.pass_context
@handle_errors
def send_command(ctx: click.Context, once: bool) -> None:
    """Queue due campaign steps and deliver them over SMTP.

    Runs the scheduler, then sends every due message through the SMTP server in
    config.yaml (pool of smtp.max_connections, rate smtp.rate), retrying temporary
    failures. Without --once it keeps running, checking about once a second. Ctrl-C or
    SIGTERM stops it cleanly: sends in flight finish, nothing is sent twice.
    """
    settings = settings_of(ctx)
    with Live(_line(SendSummary()), console=console, refresh_per_second=8, transient=True) as live:
        summary, counts = asyncio.run(_send(settings, once=once, live=live))
    console.print(summary_table(summary, counts))
    if summary.blocked:
        console.print(f"[yellow]{summary.blocked} message(s) refused by the server's policy (5.7.x); "
                      "check sender authentication (SPF/DKIM) and content[/yellow]")
    for err in summary.errors[-5:]:
        console.print(f"  {err}", markup=False)
