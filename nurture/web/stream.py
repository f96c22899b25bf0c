"""Server-Sent Events for the reps' app: ``GET /api/stream`` pushes one ``task`` event per
new or changed task to the open pages, so a hot lead shows within a second of its verdict.

The source is the database's task change sequence (``task_changes``, written by every task
change in :mod:`nurture.store.tasks`), not one process's memory, so a change made by any
``nurture serve`` worker or by ``nurture tasks done`` reaches every page. Each app runs one
:class:`ChangeFeed` that reads the newest change id every ``every`` seconds (one indexed
``max(id)``) and wakes the streams; each stream then reads its own rep's changes. The event
id is the change id, so a browser reconnecting with ``Last-Event-ID`` misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from aiohttp import web

from nurture.cards import card_json, task_card
from nurture.errors import NotFound
from nurture.repauth import MANAGER
from nurture.store import AsyncStore, Store
from nurture.web import keys

log = logging.getLogger("nurture.reps.stream")

#: A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT = 15.0
#: Changes are kept this long; a page away for longer reloads its list when it reconnects.
KEEP = timedelta(days=1)


class ChangeFeed:
    """Watches the newest task change id and wakes every waiting stream when it moves."""

    def __init__(self, store: AsyncStore[Store], *, now: Callable[[], datetime],
                 every: float = 0.05) -> None:
        self.store = store
        self.now = now
        self.every = every
        self.last = 0
        self.closed = False
        self._moved = asyncio.Event()   # replaced after each move: waiters hold the old one
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Look now (this process just changed a task)."""
        self._poke.set()

    async def wait(self, timeout: float) -> None:
        """Return after the next move of the change id, when the feed closes, or after ``timeout``."""
        moved = self._moved
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(moved.wait(), timeout)

    def _wake(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pruned = loop.time()
        while not self.closed:
            try:
                last = await self.store.call(Store.last_task_change)
                if last != self.last:
                    self.last = last
                    self._wake()
                if loop.time() - pruned > 3600:
                    pruned = loop.time()
                    await self.store.call(Store.prune_task_changes, before=self.now() - KEEP)
            except Exception:  # a failed read must not end the feed; the next one may work
                log.exception("task change feed")
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.every)

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return  # one app served twice (tests): one feed
        self.closed = False
        self.last = await self.store.call(Store.last_task_change)
        self._task = asyncio.create_task(self._run(), name="nurture-task-feed")

    async def stop(self) -> None:
        self.closed = True
        self._wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def add_feed(app: web.Application, *, every: float = 0.05) -> None:
    """Run a :class:`ChangeFeed` while ``app`` runs, and serve ``GET /api/stream``."""
    app[keys.REPS_FEED] = ChangeFeed(app[keys.STORE], now=app[keys.CLOCK], every=every)

    async def start(app: web.Application) -> None:
        await app[keys.REPS_FEED].start()

    async def stop(app: web.Application) -> None:
        await app[keys.REPS_FEED].stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.router.add_get("/api/stream", stream)


def poke(app: web.Application) -> None:
    """Tell the feed this process changed a task (its pages then hear at once)."""
    if keys.REPS_FEED in app:
        app[keys.REPS_FEED].poke()


def _start_id(request: web.Request, feed: ChangeFeed) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or ""
    try:
        return max(0, int(raw))
    except ValueError:
        return feed.last


async def stream(request: web.Request) -> web.StreamResponse:
    """``GET /api/stream``: ``event: task`` with ``id:`` the change id and ``data:`` the task as
    ``/api/tasks`` shows it (``{"id": …, "status": "gone"}`` when it left this rep's list)."""
    app = request.app
    feed: ChangeFeed = app[keys.REPS_FEED]
    rep_id = request[keys.REP_ID]
    mine = None if rep_id == MANAGER else rep_id
    after = _start_id(request, feed)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    store: AsyncStore[Store] = app[keys.STORE]
    try:
        await resp.write(b"retry: 2000\n: connected\n\n")
        while not feed.closed:
            changes = await store.call(Store.task_changes_after, after, rep_id=mine)
            if not changes:
                before = feed.last
                await feed.wait(HEARTBEAT)
                if feed.last == before and not feed.closed:
                    await resp.write(b": ping\n\n")
                continue
            latest: dict[int, int] = {}
            for change_id, task_id in changes:
                latest[task_id] = change_id  # several changes of one task: send it once
            for task_id, change_id in sorted(latest.items(), key=lambda kv: kv[1]):
                data = await _task_data(request, task_id, rep_id)
                await resp.write(f"id: {change_id}\nevent: task\ndata: {json.dumps(data)}\n\n".encode())
            after = changes[-1][0]
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp


async def _task_data(request: web.Request, task_id: int, rep_id: str) -> dict[str, object]:
    app = request.app
    now = app[keys.CLOCK]()
    try:
        card = await app[keys.STORE].run(lambda s: task_card(
            s, app[keys.REPS_CAMPAIGNS], app[keys.SETTINGS], task_id=task_id, now=now,
            rep_id=rep_id, full=False))
    except NotFound:
        return {"id": task_id, "status": "gone"}
    data = card_json(card, now)
    if card.task.snooze_until is not None and card.task.snooze_until > now:
        data["snoozed"] = True
    return data
