"""``nurture serve`` (the public tracker, in one or more worker processes) and ``nurture clicks``."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

import click
from rich.table import Table

from nurture.cli.app import console, handle_errors, main, settings_of
from nurture.config import Settings, parse_listen
from nurture.errors import ConfigError, NurtureError
from nurture.timeutil import utcnow

VERDICTS = ("human", "scanner", "pending")


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
    settles pending clicks into human or scanner verdicts and serves the reps' app.
    Stop with Ctrl-C or SIGTERM.
    """
    settings = settings_of(ctx)
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
    ctx_mp = multiprocessing.get_context("fork")
    procs = [ctx_mp.Process(target=_worker, args=(settings, host, port, i, access_log),
                            kwargs={"reuse_port": True, "reps": reps_app and i == 0},
                            name=f"nurture-tracker-{i}") for i in range(workers)]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: Any) -> None:
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
            reuse_port: bool, reps: bool = False) -> None:
    from nurture.store import open_async_store
    from nurture.web.tracker import serve_public

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        store = open_async_store(settings.database)
        reps_runner = await _start_reps(settings, store) if reps else None
        # Worker 0 also turns judged clicks into tasks and delivers webhooks, so a split
        # deployment (`nurture send` + `nurture serve`) raises the same tasks as `nurture run`.
        background = _followup_jobs(settings, store, stop) if index == 0 else []
        try:
            await serve_public(settings=settings, store=store, stop=stop, host=host, port=port,
                               reuse_port=reuse_port, settle=index == 0, access_log=access_log,
                               ready=lambda url: print(f"worker {index}: tracker listening on {url}", flush=True))
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            if reps_runner is not None:
                await reps_runner.cleanup()
            await store.aclose()

    asyncio.run(run())


def _followup_jobs(settings: Settings, store: Any, stop: asyncio.Event) -> list[asyncio.Task[Any]]:
    from nurture.campaigns import load_campaigns
    from nurture.followup import followup_loop
    from nurture.timeutil import utcnow
    from nurture.webhooks import run_webhooks

    try:
        campaigns = {c.id: c for c in load_campaigns(settings.campaigns_dir)}
    except NurtureError as e:  # the tracker still serves; no campaign rules, no tasks
        print(f"worker 0: no follow-up tasks: {e}", file=sys.stderr, flush=True)
        campaigns = {}
    jobs = [asyncio.create_task(followup_loop(store=store, settings=settings, campaigns=campaigns,
                                              now=utcnow, stop=stop))]
    if settings.webhooks:
        jobs.append(asyncio.create_task(run_webhooks(store=store, settings=settings, now=utcnow, stop=stop)))
    return jobs


async def _start_reps(settings: Settings, store: Any) -> Any:
    from aiohttp import web

    from nurture.web.reps import create_reps_app

    host, port = parse_listen(settings.reps_app.listen)
    runner = web.AppRunner(create_reps_app(settings=settings, store=store), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    print(f"reps' app listening on http://{bound[0]}:{bound[1]}", flush=True)
    return runner


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@main.command("clicks")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per click) instead of a table.")
@click.option("--campaign", metavar="ID", help="Only this campaign's clicks.")
@click.option("--verdict", type=click.Choice(VERDICTS), help="Only clicks with this verdict.")
@click.option("--kind", type=click.Choice(["click", "open", "all"]), default="click", show_default=True,
              help="Clicks, opens, or both.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Newest N.")
@click.option("--settle", is_flag=True, help="Judge pending clicks now before listing.")
@click.pass_context
@handle_errors
def clicks_cmd(ctx: click.Context, as_json: bool, campaign: str | None, verdict: str | None,
               kind: str, limit: int, settle: bool) -> None:
    """List recorded clicks with their verdict (human / scanner / pending) and the reasons.

    Only human clicks count for follow-up tasks, conditions and scores.
    """
    from nurture.store import open_store
    from nurture.web.ledger import settle_clicks

    settings = settings_of(ctx)
    store = open_store(settings.database)
    try:
        if settle:
            settle_clicks(store, settings, now=utcnow())
        rows = store.list_clicks(campaign_id=campaign, verdict=verdict,
                                 kind=None if kind == "all" else kind, limit=limit)
    finally:
        store.close()
    if as_json:
        out = [{**r, **{k: r[k].isoformat() if r[k] else None for k in ("at", "settled_at", "sent_at")}}
               for r in rows]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print("no clicks")
        return
    table = Table(show_lines=False)
    for col in ("id", "at (UTC)", "campaign / step", "link", "recipient", "ip", "method", "verdict", "score", "reasons"):
        table.add_column(col, overflow="fold")
    colour = {"human": "green", "scanner": "red", "pending": "yellow"}
    for r in rows:
        table.add_row(str(r["id"]), r["at"].strftime("%Y-%m-%d %H:%M:%S"),
                      f"{r['campaign_id']} / {r['step_id']}",
                      ("(open)" if r["kind"] == "open" else (r["link"] or "?")) + (" [honeypot]" if r["honeypot"] else ""),
                      r["email"], r["ip"] or "", r["method"],
                      f"[{colour.get(r['verdict'], 'white')}]{r['verdict']}[/]", f"{r['score']:.2f}",
                      "; ".join(r["reasons"]))
    console.print(table)
