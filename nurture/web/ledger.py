"""The click ledger: group commit of clicks, the settle pass, and the tracker's lookup cache.

Every click is in SQLite before its 302 leaves: :class:`ClickLedger` queues clicks, one task
writes all that arrived in a single transaction on the store's writer thread, then resolves
each request's future. Under load many clicks share one commit, so the server stays fast.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.clicks import Scanners, judge, parse_scanners
from nurture.config import Settings
from nurture.errors import ConfigError
from nurture.models import Link
from nurture.store.tracking import NewClick, SettledVerdict

log = logging.getLogger("nurture.tracker")

#: What :meth:`ClickLedger.record` returns when the database refused the write.
NOT_RECORDED = -1

class ClickLedger:
    """Group commit: ``await ledger.record(click)`` returns once the click is committed.

    One task writes every click that queued up while the previous commit ran, in one
    transaction. ``interval`` (seconds, ``tracking.group_commit_ms``) is the shortest time
    between the starts of two commits, so under load each commit carries more clicks; before
    a commit starts, the clicks of requests already read (up to one interval) join it.
    """

    def __init__(self, *, store: Any, interval: float = 0.002, max_batch: int = 4096,
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
        try:
            ids: list[int | None] = await self._store.record_clicks(clicks)
        except Exception:
            # The recipient still gets the redirect; the guarantee covers crashes, not a
            # database that refuses writes (disk full), which must be loud in the log.
            log.exception("could not record %d clicks", len(clicks))
            return [NOT_RECORDED] * len(clicks)
        self.commits += 1
        self.committed += len(clicks)
        if self._on_commit is not None:
            self._on_commit()
        return ids


class LookupCache:
    """An in-memory LRU of links (few, and never changing), so a redirect reads nothing."""

    def __init__(self, *, store: Any, size: int = 100_000) -> None:
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
        value = await self._store.get_link(link_id)
        if value is not None:  # unknown ids are not cached: a forger cannot fill the cache
            self._links[link_id] = value
            if len(self._links) > self._size:
                self._links.popitem(last=False)
        return value


@dataclass(frozen=True, slots=True)
class SettleResult:
    human: int = 0
    scanner: int = 0
    pending: int = 0


def settle_clicks(store: Any, settings: Settings, *, now: datetime,
                  scanners: Scanners | None = None, limit: int = 2000) -> SettleResult:
    """Judge pending clicks and store their verdicts. Synchronous: runs on the store thread
    (``await astore.run(lambda s: settle_clicks(s, settings, now=now))``)."""
    scanners = scanners if scanners is not None else load_scanners(settings.tracking.scanner_networks_file)
    settle = timedelta(seconds=settings.tracking.settle_seconds)
    verdicts: list[SettledVerdict] = []
    counts = {"human": 0, "scanner": 0, "pending": 0}
    # Only clicks whose window has passed: each is decided once, none is re-read every pass.
    for item in store.pending_clicks(before=now - settle, limit=limit):
        v = judge(item.click, delivered_at=item.delivered_at, other_clicks_of_send=item.other_clicks,
                  honeypot_hit=item.honeypot_hit, ip_recipients_count=item.ip_recipients,
                  networks=scanners, now=now, settle=settle, link_count=item.link_count,
                  honeypot_link=item.honeypot_link)
        counts[v.verdict] += 1
        verdicts.append(SettledVerdict(item.click.id, v.verdict, v.score, v.reasons))
    if verdicts:
        store.save_verdicts(verdicts, now=now)
    return SettleResult(**counts)


async def settle_loop(store: Any, settings: Settings, *, stop: asyncio.Event,
                      clock: Callable[[], datetime], every: float = 5.0, batch: int = 1000,
                      wake: asyncio.Event | None = None,
                      on_settled: Callable[[SettleResult], None] | None = None) -> None:
    """Run :func:`settle_clicks` every ``every`` seconds (sooner while a backlog remains)
    until ``stop`` is set. ``store`` should be an AsyncStore of its own, so that a long pass
    never delays the click ledger's commits.

    ``wake`` (set by the tracker's ledger after each commit) brings the next pass forward to
    ``tracking.settle`` after the new clicks, when that is sooner than ``every``: with a short
    window a click's verdict no longer waits for the next round. ``on_settled`` gets every
    pass that stored human or scanner verdicts (``nurture run`` wakes follow-up with it).
    """
    scanners = load_scanners(settings.tracking.scanner_networks_file)
    window = settings.tracking.settle_seconds
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        wait = every
        try:
            done = await store.run(lambda s: settle_clicks(s, settings, now=clock(), scanners=scanners,
                                                           limit=batch))
            if on_settled is not None and done.human + done.scanner:
                on_settled(done)
            if done.human + done.scanner + done.pending >= batch:
                wait = 0.05  # a backlog: keep going, but let the loop breathe
        except Exception:
            log.exception("settle pass failed")
        woken = await _first(stop, wake if window < wait else None, timeout=wait)
        if woken and window > 0:
            await _first(stop, None, timeout=window)  # the new clicks can be judged from then


async def _first(stop: asyncio.Event, wake: asyncio.Event | None, *, timeout: float) -> bool:
    """Wait until ``stop`` or ``wake`` is set, or ``timeout``; True when woken (not stopped)."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return wake is not None and wake.is_set() and not stop.is_set()


@functools.lru_cache(maxsize=8)
def load_scanners(path: str | None = None) -> Scanners:
    """The scanner list: ``path`` (``tracking.scanner_networks``) or the one shipped in
    ``nurture/data/scanners.txt``. Raises ConfigError on a bad file."""
    try:
        if path:
            text, source = Path(path).read_text(encoding="utf-8"), path
        else:
            res = importlib.resources.files("nurture").joinpath("data/scanners.txt")
            text, source = res.read_text(encoding="utf-8"), "nurture/data/scanners.txt"
        return parse_scanners(text, source=source)
    except OSError as e:
        raise ConfigError(f"cannot read the scanner list: {e}", field="tracking.scanner_networks") from None
    except ValueError as e:
        raise ConfigError(str(e), field="tracking.scanner_networks") from None
