"""The click ledger: group commit of clicks, and the tracker's lookup cache.

Every click is in SQLite before its 302 leaves: :class:`ClickLedger` queues clicks, one task
writes all that arrived in a single transaction on the store's writer thread, then resolves
each request's future. Under load many clicks share one commit, so the server stays fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from nurture.metrics import LEDGER_BATCH_CLICKS, LEDGER_COMMIT_SECONDS
from nurture.models import Link
from nurture.store import AsyncStore, Store
from nurture.store.tracking import NewClick

log = logging.getLogger("nurture.tracker")

#: What :meth:`ClickLedger.record` returns when the database refused the write.
NOT_RECORDED = -1
#: Seconds between the log lines about clicks that could not be written.
LOG_EVERY = 10.0

class ClickLedger:
    """Group commit: ``await ledger.record(click)`` returns once the click is committed.

    One task writes every click that queued up while the previous commit ran, in one
    transaction. ``interval`` (seconds, ``tracking.group_commit_ms``) is the shortest time
    between the starts of two commits, so under load each commit carries more clicks; before
    a commit starts, the clicks of requests already read (up to one interval) join it.
    """

    def __init__(self, *, store: AsyncStore[Store], interval: float = 0.002, max_batch: int = 4096,
                 on_commit: Callable[[], None] | None = None) -> None:
        self._store = store
        self._on_commit = on_commit  # e.g. wakes the settle loop of ``nurture run``
        self._interval = interval
        self._max_batch = max_batch
        self._items: list[tuple[NewClick, asyncio.Future[int | None]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.committed = 0
        #: The last write's error while the database refuses writes (``/healthz`` says 503), else None.
        self.unwritable: str | None = None
        self.lost = 0  # clicks redirected but not recorded, since start
        self._lost_unlogged = 0
        self._last_log = -LOG_EVERY

    async def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="nurture-click-ledger")

    async def record(self, click: NewClick) -> int | None:
        """Commit ``click``. Its row id; None if the store rejected it (unknown send, or a
        send of another campaign/step than the link); :data:`NOT_RECORDED` if the database
        refused the write (logged)."""
        if self._task is None or self._task.done():
            return (await self._write([click]))[0]
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._items.append((click, fut))
        self._wake.set()
        return await fut

    async def close(self) -> None:
        """Write everything queued, then stop (the app's cleanup calls this: shutdown flushes)."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        await self._task

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        last_start = 0.0
        while True:
            await self._wake.wait()
            # At most one commit per interval: a lone click is written at once, while under
            # load clicks queue up behind the running commit and share the next one.
            delay = last_start + self._interval - loop.time()
            if delay > 0 and not self._stopping:
                await asyncio.sleep(delay)
            # Let the requests already read reach the queue first (a handler runs an iteration
            # after its data), for at most one interval: the commit then carries them all and
            # starts while the loop is idle, instead of fighting the busy loop for the GIL on
            # the writer thread while later requests wait for the next commit.
            queued, until = -1, loop.time() + self._interval
            while (queued != len(self._items) and len(self._items) < self._max_batch
                   and not self._stopping and loop.time() < until):
                queued = len(self._items)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            last_start = loop.time()
            self._wake.clear()
            batch, self._items = self._items[:self._max_batch], self._items[self._max_batch:]
            if self._items:
                self._wake.set()
            if batch:
                ids = await self._write([c for c, _ in batch])
                for (_, fut), row_id in zip(batch, ids, strict=True):
                    if not fut.done():
                        fut.set_result(row_id)
            if self._stopping and not self._items:
                return

    async def _write(self, clicks: list[NewClick]) -> list[int | None]:
        started = time.perf_counter()
        try:
            ids = await self._store.call(Store.record_clicks, clicks)
        except Exception as e:
            # The recipient still gets the redirect; the guarantee covers crashes, not a
            # database that refuses writes (disk full): one log line per LOG_EVERY seconds with
            # the count, and /healthz answers 503 until a commit goes through again.
            self._refused(e, len(clicks))
            return [NOT_RECORDED] * len(clicks)
        LEDGER_COMMIT_SECONDS.observe(time.perf_counter() - started)
        LEDGER_BATCH_CLICKS.observe(len(clicks))
        if self.unwritable is not None:
            log.warning("click ledger writes again; %d click(s) were redirected but not recorded",
                        self.lost)
            self.unwritable = None
        self.commits += 1
        self.committed += len(clicks)
        if self._on_commit is not None:
            self._on_commit()
        return ids


    def _refused(self, error: Exception, count: int) -> None:
        self.unwritable = (str(error).splitlines() or [type(error).__name__])[0] or type(error).__name__
        self.lost += count
        self._lost_unlogged += count
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            log.error("could not record %d click(s) in the last %.0f s (redirected anyway): %s: %s",
                      self._lost_unlogged, min(LOG_EVERY, now - self._last_log), type(error).__name__,
                      self.unwritable)
            self._last_log, self._lost_unlogged = now, 0


class LookupCache:
    """An in-memory LRU of links (few, and never changing), so a redirect reads nothing."""

    def __init__(self, *, store: AsyncStore[Store], size: int = 100_000) -> None:
        self._store = store
        self._size = size
        self._links: OrderedDict[int, Link] = OrderedDict()

    def cached_link(self, link_id: int) -> Link | None:
        """The link if it is in memory (no await on the hot path), else None."""
        return self._links.get(link_id)

    async def link(self, link_id: int) -> Link | None:
        value = self._links.get(link_id)
        if value is not None:
            self._links.move_to_end(link_id)
            return value
        value = await self._store.call(Store.get_link, link_id)
        if value is not None:  # unknown ids are not cached: a forger cannot fill the cache
            self._links[link_id] = value
            if len(self._links) > self._size:
                self._links.popitem(last=False)
        return value
