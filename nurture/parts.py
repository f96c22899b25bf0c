"""The composition root: every long-running part of nurture, declared once.

A part is an async function over a :class:`Context` (settings, store, campaigns, clock, stop
event and the wake-ups shared between parts) that runs until ``stop`` is set. Each command
picks its parts by name from :data:`PARTS` and runs them with :func:`run_parts`:

========================  ===========================================================
``nurture run``           :data:`RUN`: everything in one process
``nurture send``          :data:`SEND`: the scheduler and the sender
``nurture serve``         :data:`SERVE_FIRST` in worker 0, :data:`SERVE_OTHERS` in the rest
``nurture demo``          :data:`RUN`, on the demo's clock
========================  ===========================================================

The wake-ups make a click's way to a task quick without tight polling: the click ledger's
commit sets ``clicked`` (settle judges the new clicks once their window has passed), a settle
pass that stored verdicts sets ``settled`` (follow-up raises the tasks at once). In a
``nurture serve`` with several workers the other workers' commits reach worker 0's settle
pass through :class:`WakeChannel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
from aiohttp import web

from nurture.config import Settings, parse_listen
from nurture.followup import followup_round
from nurture.inbound import InboundResult, receive
from nurture.inbound.forward import forward_round
from nurture.inbound.imap import ImapReader, run_reader
from nurture.inbound.smtp import start_listener
from nurture.models import Campaign
from nurture.periodic import periodic
from nurture.render import Renderer
from nurture.render_pool import RenderPool
from nurture.scheduler import tick as scheduler_tick
from nurture.sender import Build, SenderOptions, SendSummary, renderer_build, run_sender
from nurture.settle import settle_clicks
from nurture.signing import Signer
from nurture.smtp_pool import SmtpConnection
from nurture.store import AsyncStore, Store, open_async_store
from nurture.timeutil import utcnow
from nurture.web.httpserver import runner_options
from nurture.web.reps import create_reps_app
from nurture.web.tracker import create_tracker_app
from nurture.webhooks import deliver_once

log = logging.getLogger("nurture.parts")


@dataclass(frozen=True, slots=True)
class Wakes:
    """Events one part sets to start another's next round early."""

    #: The click ledger committed clicks: the settle pass may have work.
    clicked: asyncio.Event = field(default_factory=asyncio.Event)
    #: A settle pass stored verdicts: follow-up may have human clicks to turn into tasks.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    #: An inbound message was applied: a reply may wait to be forwarded to its rep.
    received: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Options:
    """How one process runs its parts. The defaults are those of ``nurture run``."""

    settle_every: float = 2.0
    followup_every: float = 0.5
    webhooks_every: float = 0.5
    forwards_every: float = 5.0
    #: Listen addresses instead of ``tracking.listen`` / ``reps_app.listen`` (0: any free port).
    tracker_host: str | None = None
    tracker_port: int | None = None
    reps_host: str | None = None
    reps_port: int | None = None
    #: Several ``nurture serve`` workers share the tracker's port (SO_REUSEPORT).
    reuse_port: bool = False
    access_log: bool = False
    sender: SenderOptions = SenderOptions()
    #: Processes that render, build MIME and sign for the sender (0: its render thread);
    #: None: one when the machine has a second core (see :func:`render_processes`).
    render_processes: int | None = None
    #: ``nurture send --once``: the sender queues and sends what is due, then returns.
    once: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """What every part is made from."""

    settings: Settings
    store: AsyncStore[Store]
    campaigns: Mapping[str, Campaign]
    stop: asyncio.Event
    now: Callable[[], datetime] = utcnow
    wakes: Wakes = field(default_factory=Wakes)
    options: Options = Options()
    #: ``ready(part, url)`` when a listener is up ("tracker", "reps").
    ready: Callable[[str, str], None] | None = None
    #: Called with the sender's running counters, and with the final ones.
    sender_progress: Callable[[SendSummary], None] | None = None
    sender_done: Callable[[SendSummary], None] | None = None
    #: Called after each commit of clicks besides waking this process's settle pass
    #: (a ``nurture serve`` worker other than 0 tells worker 0 through :class:`WakeChannel`).
    clicked: Callable[[], None] | None = None


Part = Callable[[Context], Awaitable[None]]


# -- the parts ------------------------------------------------------------------------------------

def render_processes(configured: int | None = None) -> int:
    """How many processes render for the sender: ``configured``, else one when this process
    may use a second core (the sending interpreter keeps its own for SMTP), else none."""
    if configured is not None:
        return max(0, configured)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if cores > 1 else 0


async def sender(ctx: Context) -> None:
    """The scheduler and the sender: queue due steps, deliver them over SMTP."""
    campaigns = ctx.campaigns
    processes = render_processes(ctx.options.render_processes)
    build: Build | RenderPool
    if processes:
        pool = RenderPool(settings=ctx.settings, campaigns=campaigns, processes=processes)
        await asyncio.to_thread(pool.start)
        build = pool
    else:
        pool = None
        build = renderer_build(Renderer.from_settings(ctx.settings), campaigns)

    def tick(store: Store, now: datetime) -> object:
        return scheduler_tick(store, campaigns, now=now, reps=ctx.settings.reps, closures=ctx.settings.closures)

    try:
        summary = await run_sender(
            store=ctx.store, settings=ctx.settings, build=build, now=ctx.now, stop=ctx.stop,
            once=ctx.options.once, progress=ctx.sender_progress, tick=tick, options=ctx.options.sender,
            campaign_rates={c.id: c.rate for c in campaigns.values() if c.rate is not None})
    finally:
        if pool is not None:
            await asyncio.to_thread(pool.close)
    if ctx.sender_done is not None:
        ctx.sender_done(summary)


async def tracker(ctx: Context) -> None:
    """The public tracker (/c, /u, /o, /healthz); every click committed before its redirect."""
    wake, also = ctx.wakes.clicked, ctx.clicked

    def on_commit() -> None:
        wake.set()
        if also is not None:
            also()

    app = create_tracker_app(settings=ctx.settings, store=ctx.store, signer=Signer.from_settings(ctx.settings.tracking),
                             now=ctx.now, on_commit=on_commit, campaigns=ctx.campaigns)
    host, port = parse_listen(ctx.settings.tracking.listen)
    o = ctx.options
    await serve_app(app, name="tracker", ctx=ctx, host=o.tracker_host or host,
                    port=port if o.tracker_port is None else o.tracker_port,
                    reuse_port=o.reuse_port, access_log=o.access_log, shutdown_timeout=5.0)


async def settle(ctx: Context) -> None:
    """Judge pending clicks (human or scanner) once their settle window has passed."""
    settings, now, settled = ctx.settings, ctx.now, ctx.wakes.settled
    batch = 1000
    # A connection and writer thread of its own: a long pass must not hold up click commits.
    own = ctx.store.path != ":memory:"
    store = open_async_store(ctx.store.path) if own else ctx.store

    async def step() -> bool:
        done = await store.run(lambda s: settle_clicks(s, settings, now=now(), limit=batch))
        if done.human + done.scanner:
            settled.set()
        return done.human + done.scanner + done.pending >= batch

    try:
        await periodic(ctx.stop, ctx.options.settle_every, ctx.wakes.clicked, step=step, name="settle",
                       after_wake=settings.tracking.settle_seconds)
    finally:
        if own:
            await store.aclose()


async def followup(ctx: Context) -> None:
    """Turn human clicks into tasks for reps; escalate tasks past their SLA."""
    async def step() -> bool:
        return await followup_round(store=ctx.store, settings=ctx.settings, campaigns=ctx.campaigns, now=ctx.now)

    await periodic(ctx.stop, ctx.options.followup_every, ctx.wakes.settled, step=step, name="follow-up")


async def webhooks(ctx: Context) -> None:
    """Deliver the event log to the configured webhooks (signed, retried, restart-safe)."""
    if not ctx.settings.webhooks:
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def step() -> bool:
            await deliver_once(store=ctx.store, settings=ctx.settings, session=session, now=ctx.now)
            return False

        await periodic(ctx.stop, ctx.options.webhooks_every, step=step, name="webhooks")


async def reps(ctx: Context) -> None:
    """The reps' app: task lists, contact cards, outcomes, the manager view and the API."""
    app = create_reps_app(settings=ctx.settings, store=ctx.store, now=ctx.now, campaigns=ctx.campaigns)
    host, port = parse_listen(ctx.settings.reps_app.listen)
    o = ctx.options
    await serve_app(app, name="reps", ctx=ctx, host=o.reps_host or host,
                    port=port if o.reps_port is None else o.reps_port, shutdown_timeout=2.0)


async def inbound_smtp(ctx: Context) -> None:
    """The inbound SMTP listener (``inbound.smtp.listen``): bounces, feedback reports and replies
    for the bounce and reply domains only; each message to ``receive`` before its 250."""
    cfg = ctx.settings.inbound.smtp
    if cfg.listen is None:
        return
    settings, campaigns, now, store = ctx.settings, ctx.campaigns, ctx.now, ctx.store

    async def deliver(raw: bytes, recipients: tuple[str, ...]) -> InboundResult:
        result = await store.run(lambda s: receive(s, raw, settings=settings, campaigns=campaigns, now=now(),
                                                   source="smtp", envelope_recipients=recipients))
        ctx.wakes.received.set()
        return result

    host, port = parse_listen(cfg.listen)
    listener = await start_listener(settings=cfg, deliver=deliver, host=host, port=port)
    try:
        if ctx.ready is not None:
            ctx.ready("inbound_smtp", f"smtp://{listener.host}:{listener.port}")
        await ctx.stop.wait()
    finally:
        await listener.aclose()


async def imap(ctx: Context) -> None:
    """The IMAP reader (``inbound.imap``): new mail in a mailbox such as the sales inbox to
    ``receive``, each marked with a keyword; IDLE or polling; nothing moved or deleted."""
    cfg = ctx.settings.inbound.imap
    if cfg is None:
        return
    settings, campaigns, now, store = ctx.settings, ctx.campaigns, ctx.now, ctx.store

    async def deliver(raw: bytes, dedupe_key: str | None) -> InboundResult:
        result = await store.run(lambda s: receive(s, raw, settings=settings, campaigns=campaigns, now=now(),
                                                   source="imap", dedupe_key=dedupe_key))
        ctx.wakes.received.set()
        return result

    await run_reader(ImapReader(settings=cfg, deliver=deliver, now=now), stop=ctx.stop)


async def forwards(ctx: Context) -> None:
    """Replies that came to a ``reply+`` address, forwarded to their rep over the relay
    (``inbound.reply_domain`` with ``inbound.forward_replies``); off the store's writer thread."""
    settings = ctx.settings
    if not (settings.inbound.reply_domain and settings.inbound.forward_replies):
        return
    conn = SmtpConnection(settings.smtp)
    sign = Renderer.from_settings(settings).sign_dkim if settings.dkim is not None else None

    async def step() -> bool:
        return await forward_round(store=ctx.store, send=conn.send, now=ctx.now, sign=sign)

    try:
        await periodic(ctx.stop, ctx.options.forwards_every, ctx.wakes.received, step=step, name="forwards")
    finally:
        await conn.quit()


PARTS: Mapping[str, Part] = {
    "sender": sender, "tracker": tracker, "settle": settle, "followup": followup,
    "webhooks": webhooks, "reps": reps, "inbound_smtp": inbound_smtp, "imap": imap, "forwards": forwards,
}
RUN = ("sender", "tracker", "settle", "followup", "webhooks", "reps", "inbound_smtp", "imap", "forwards")
SEND = ("sender",)
SERVE_FIRST = ("tracker", "settle", "followup", "webhooks", "reps", "inbound_smtp", "imap", "forwards")
SERVE_OTHERS = ("tracker",)


# -- running them ---------------------------------------------------------------------------------

async def run_parts(names: Iterable[str], ctx: Context) -> None:
    """Run the named parts until ``ctx.stop`` is set; when one fails, stop the others and
    raise its error. Every part has finished (sends drained, clicks flushed) on return."""
    chosen = list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    tasks = {asyncio.create_task(_awaited(PARTS[n](ctx)), name=f"nurture-{n}"): n for n in chosen}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed:
            ctx.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            error = failed[0].exception()
            assert error is not None
            raise error
    finally:
        ctx.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)


async def _awaited(job: Awaitable[None]) -> None:
    await job


async def serve_app(app: web.Application, *, name: str, ctx: Context, host: str, port: int,
                    reuse_port: bool = False, access_log: bool = False, shutdown_timeout: float = 5.0) -> None:
    """Serve ``app`` on ``host:port`` until ``ctx.stop`` is set; tells ``ctx.ready(name, url)``."""
    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access") if access_log else None,
                           shutdown_timeout=shutdown_timeout, **runner_options(name))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
        await site.start()
        if ctx.ready is not None:
            bound = runner.addresses[0] if runner.addresses else (host, port)
            ctx.ready(name, f"http://{bound[0]}:{bound[1]}")
        await ctx.stop.wait()
    finally:
        await runner.cleanup()


class WakeChannel:
    """Commits in other ``nurture serve`` workers wake worker 0's settle pass, as in ``nurture run``.

    Made before the workers fork: a datagram socket pair, one byte a commit (coalesced; a
    full buffer drops the byte, the settle timer still runs).
    """

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self._read, self._write):
            s.setblocking(False)

    def notify(self) -> None:
        """In a worker other than 0: after each commit of clicks."""
        with contextlib.suppress(OSError):
            self._write.send(b"c")

    def listen(self, wake: asyncio.Event) -> Callable[[], None]:
        """In worker 0: set ``wake`` on every notice; returns the function that stops listening."""
        loop = asyncio.get_running_loop()

        def readable() -> None:
            with contextlib.suppress(OSError):
                while self._read.recv(64):
                    wake.set()

        fd = self._read.fileno()
        loop.add_reader(fd, readable)

        def unlisten() -> None:
            loop.remove_reader(fd)

        return unlisten
