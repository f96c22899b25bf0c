"""``nurture run``: the main job in one process."""

from __future__ import annotations

import asyncio

import click

from nurture.cli.app import console, handle_errors, main, production_settings, stop_on_signals
from nurture.config import Settings


async def _run(settings: Settings) -> None:
    from nurture.campaigns import load_campaigns
    from nurture.parts import RUN, Context, run_parts
    from nurture.store import open_async_store

    campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    store = open_async_store(settings.database)
    stop = asyncio.Event()

    def ready(part: str, url: str) -> None:
        label = {"tracker": "tracker (public links)", "reps": "reps' app"}[part]
        console.print(f"[green]●[/green] {label} listening on [bold]{url}[/bold]")

    try:
        with stop_on_signals(stop):
            console.print(f"nurture run: {len(campaigns)} campaign(s), database {settings.database}, "
                          f"SMTP {settings.smtp.host}:{settings.smtp.port}. Ctrl-C stops cleanly.")
            await run_parts(RUN, Context(settings=settings, store=store, campaigns=campaigns, stop=stop,
                                         ready=ready))
    finally:
        await store.aclose()
    console.print("stopped: in-flight sends finished, click ledger flushed.")


@main.command("run")
@click.option("--strict", is_flag=True, help="Do not start when there are sending-hygiene warnings.")
@click.pass_context
@handle_errors
def run_command(ctx: click.Context, strict: bool) -> None:
    """Run the main job: scheduler, sender, tracker, reps' app, follow-up and webhooks.

    Everything in one process on the database from config.yaml. SIGTERM or Ctrl-C
    drains in-flight sends and flushes recorded clicks before exiting. To split the
    parts across processes or machines, use `nurture send` and `nurture serve`.
    """
    from nurture.cli.send import preflight

    settings = production_settings(ctx, "run")
    preflight(settings, strict=strict)
    asyncio.run(_run(settings))
