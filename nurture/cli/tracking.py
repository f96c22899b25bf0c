"""``nurture serve`` (the public tracker, in one or more worker processes) and ``nurture clicks``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys

import click

from nurture.campaigns import load_campaigns
from nurture.cli.app import console, handle_errors, main, production_settings, settings_of, stop_on_signals
from nurture.cli.tables import clicks_view
from nurture.config import Settings, parse_listen
from nurture.errors import ConfigError, NurtureError
from nurture.models import CLICK_KINDS, Campaign, ClickVerdict, one_of
from nurture.parts import SERVE_FIRST, SERVE_OTHERS, Context, Options, WakeChannel, run_parts
from nurture.timeutil import utcnow

#: The order ``nurture clicks --verdict`` offers them in.
VERDICTS: tuple[ClickVerdict, ...] = ("human", "scanner", "pending")


@main.command()
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes sharing the port (SO_REUSEPORT).")
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default: tracking.listen).")
@click.option("--access-log", is_flag=True, help="Log every request (off by default: click URLs are personal).")
@click.option("--reps-app/--no-reps-app", default=True, show_default=True,
              help="Also serve the reps' app on reps_app.listen (in worker 0).")
@click.pass_context
@handle_errors
def serve(ctx: click.Context, workers: int, listen: str | None, access_log: bool, reps_app: bool) -> None:
    """Run the public tracker (/c, /u, /o, /healthz) and the reps' app, without the sender.

    Every click is committed to the database before its redirect is sent. Worker 0 also
    settles pending clicks into human or scanner verdicts, raises follow-up tasks, delivers
    webhooks and serves the reps' app, as `nurture run` does.
    Stop with Ctrl-C or SIGTERM.
    """
    settings = production_settings(ctx, "serve")
    try:
        host, port = parse_listen(listen or settings.tracking.listen)
    except ValueError as e:
        raise ConfigError(str(e), field="--listen" if listen else "tracking.listen") from None
    try:
        parse_listen(settings.reps_app.listen)
    except ValueError as e:
        raise ConfigError(str(e), field="reps_app.listen") from None
    from nurture.web.tracker import check_settings

    check_settings(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if workers == 1:
        _worker(settings, host, port, 0, access_log, reuse_port=False, reps=reps_app)
        return
    if port == 0:
        port = _free_port(host)
    channel = WakeChannel()  # made before the fork: the workers' commits wake worker 0's settle pass
    ctx_mp = multiprocessing.get_context("fork")
    procs = [ctx_mp.Process(target=_worker, args=(settings, host, port, i, access_log),
                            kwargs={"reuse_port": True, "reps": reps_app and i == 0, "channel": channel},
                            name=f"nurture-tracker-{i}") for i in range(workers)]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    codes = [p.exitcode for p in procs]
    if any(codes):
        console.print(f"tracker workers exited with {codes}")
        sys.exit(1)


def _worker(settings: Settings, host: str, port: int, index: int, access_log: bool, *,
            reuse_port: bool, reps: bool = False, channel: WakeChannel | None = None) -> None:
    """One ``nurture serve`` process: worker 0 runs :data:`SERVE_FIRST`, the others the tracker."""
    from nurture.store import open_async_store

    names = [n for n in (SERVE_FIRST if index == 0 else SERVE_OTHERS) if reps or n != "reps"]
    campaigns: dict[str, Campaign] = {}
    if "followup" in names:
        try:
            campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
        except NurtureError as e:  # the tracker still serves; no campaign rules, no tasks
            print(f"worker 0: no follow-up tasks: {e}", file=sys.stderr, flush=True)

    def ready(part: str, url: str) -> None:
        line = (f"worker {index}: tracker listening on {url}" if part == "tracker"
                else f"reps' app listening on {url}")
        sys.stdout.write(line + "\n")  # one write a line: several workers share this stream
        sys.stdout.flush()

    async def run() -> None:
        stop = asyncio.Event()
        store = open_async_store(settings.database)
        ctx = Context(settings=settings, store=store, campaigns=campaigns, stop=stop, ready=ready,
                      options=Options(tracker_host=host, tracker_port=port, reuse_port=reuse_port,
                                      access_log=access_log),
                      clicked=channel.notify if channel is not None and index > 0 else None)
        unlisten = channel.listen(ctx.wakes.clicked) if channel is not None and index == 0 else None
        try:
            with stop_on_signals(stop):
                await run_parts(names, ctx)
        finally:
            if unlisten is not None:
                unlisten()
            await store.aclose()

    asyncio.run(run())


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@main.command("clicks")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per click) instead of a table.")
@click.option("--campaign", metavar="ID", help="Only this campaign's clicks.")
@click.option("--verdict", type=click.Choice(VERDICTS), help="Only clicks with this verdict.")
@click.option("--kind", type=click.Choice(["click", "open", "unsubscribe", "all"]), default="click",
              show_default=True, help="Clicks, opens, unsubscribe-page fetches (evidence only), or all.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Newest N.")
@click.option("--settle", is_flag=True, help="Judge pending clicks now before listing.")
@click.pass_context
@handle_errors
def clicks_cmd(ctx: click.Context, as_json: bool, campaign: str | None, verdict: str | None,
               kind: str, limit: int, settle: bool) -> None:
    """List recorded clicks with their verdict (human / scanner / pending) and the reasons.

    Only human clicks count for follow-up tasks, conditions and scores.
    """
    from nurture.settle import settle_clicks
    from nurture.store import open_store

    settings = settings_of(ctx)
    store = open_store(settings.database)
    try:
        if settle:
            settle_clicks(store, settings, now=utcnow())
        rows = store.list_clicks(campaign_id=campaign, verdict=one_of(verdict, VERDICTS) if verdict else None,
                                 kind=one_of(kind, CLICK_KINDS), limit=limit)
    finally:
        store.close()
    if as_json:
        out = [{**dataclasses.asdict(r), **{k: v.isoformat() if v else None for k, v in
                                            (("at", r.at), ("settled_at", r.settled_at), ("sent_at", r.sent_at))}}
               for r in rows]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print("no clicks")
        return
    console.print(clicks_view(rows))
