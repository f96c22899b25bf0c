"""The sender: claims due outbox rows, renders them, delivers them over a pool of reused SMTP
connections under one global rate limit, and records what happened.

One batch at a time is claimed (with a lease), rendered off the store's writer thread (in the
worker processes of a :class:`~nurture.render_pool.RenderPool`, or on the sender's render
thread; click commits never wait behind templates, MIME or DKIM) and given its Message-ID in
one hop to the store thread before any attempt; the chunks of a batch are rendered ahead
while earlier ones are delivered;
``pool_size`` workers each own one SMTP connection and mark every result before taking the
next message, so at most ``pool_size`` mails are ever delivered but not yet marked. That
bounds what a kill -9 can double, and those carry the same Message-ID. How many connections
and how fast is learned from the relay (:mod:`nurture.relay`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nurture.config import Settings
from nurture.diskfull import is_disk_full, unwritable
from nurture.errors import NurtureError, SendError
from nurture.liveness import LeaseHolder, is_gone, this_process
from nurture.metrics import THROTTLE_EVENTS
from nurture.models import Campaign, Contact, Send
from nurture.ratelimit import RateLimiter
from nurture.relay import RelayGovernor, RelayView
from nurture.render import campaign_step
from nurture.render_pool import LinkKey, RenderPool
from nurture.smtp_pool import ConnectRefused, SmtpConnection, is_rate_refusal
from nurture.store import AsyncStore, Store
from nurture.store.relay import RelayState, relay_name
from nurture.timeutil import Rate, utcnow

if TYPE_CHECKING:
    from nurture.render import Renderer

T = TypeVar("T")
#: The scheduler's tick, run on the store thread before claiming.
Tick = Callable[[Store, datetime], object]

log = logging.getLogger("nurture.sender")

#: ``(link name, url, is_honeypot) -> link id`` for the send's campaign and step.
LinkIds = Callable[[str, str, bool], int]


class Outgoing(Protocol):
    """What a builder returns; :class:`nurture.render.RenderedMessage` is one."""

    @property
    def message_id(self) -> str: ...
    @property
    def to(self) -> str: ...
    def to_bytes(self) -> bytes: ...


class Build(Protocol):
    """Renders one send. Runs on the sender's render thread, never on the store's writer
    thread (``link_ids`` hops there when a link is new); ``message_id`` is the stored one
    (reuse it when not None)."""

    def __call__(self, send: Send, contact: Contact, *, link_ids: LinkIds, now: datetime,
                 message_id: str | None) -> Outgoing: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, capped, times 0.5–1.5."""

    base: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=2)
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        r = (rng or random).random()
        raw = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** max(0, attempt - 1))
        return timedelta(seconds=raw * (1 - self.jitter + 2 * self.jitter * r))


@dataclass
class SendSummary:
    """Counters for one run; ``errors`` keeps the last few failure texts."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    blocked: int = 0
    suppressed: int = 0
    skipped: int = 0
    released: int = 0
    connections: int = 0  # SMTP sessions opened
    recovered: int = 0  # rows taken back from senders that were gone
    refused: int = 0  # connections the relay refused (no message charged)
    throttled: int = 0  # rate refusals (421, 450/451 4.7.x) retried without charging an attempt
    relay: RelayView | None = None  # what the sender believes about the relay now
    errors: list[str] = field(default_factory=list)
    #: At the end of a ``once`` run: rows other (live) senders still hold, by owner.
    held: list[LeaseHolder] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.retried + self.failed + self.bounced + self.blocked

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in
                ("sent", "retried", "failed", "bounced", "blocked", "suppressed", "skipped", "released",
                 "recovered")}

    def _note(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-20]


@dataclass(frozen=True, slots=True)
class Built:
    """A rendered message and its bytes, made on the render thread or in a render process."""

    msg: Outgoing
    data: bytes


@dataclass(frozen=True, slots=True)
class _Job:
    send: Send
    recipient: str
    data: bytes
    message_id: str
    envelope_from: str | None = None
    claimed: float = 0.0  # monotonic time of the claim
    throttles: int = 0  # rate refusals so far, not charged as attempts


@dataclass(frozen=True, slots=True)
class SenderOptions:
    """Knobs with sensible defaults; tests and the bench shorten them."""

    lease: timedelta = timedelta(minutes=10)
    backoff: Backoff = Backoff()
    batch: int = 64
    idle: float = 1.0  # seconds between polls when nothing is due (loop mode)
    tick_every: float = 5.0  # the scheduler runs at least this often while busy (loop mode)
    shared_rate: bool = True  # also take tokens from the database's bucket (several senders)
    slow_factor: float = 0.5  # the shared bucket's slowdown (nurture.store.rate)
    idle_quit: float = 5.0  # QUIT a pooled session idle this long: it holds one of the relay's slots
    free_throttles: int = 10  # rate refusals of one message before they count as attempts
    relay_window: float = 60.0  # the window a relay's "too much mail" cap is assumed to count over
    grow_after: float = 30.0  # accepted sending before the pool tries one more connection
    relay_pause: float = 5.0  # the first pause after a rate refusal with nothing accepted in the window
    heartbeat: float = 10.0  # seconds between renewals of this sender's heartbeat
    stale_after: timedelta = timedelta(seconds=60)  # another machine's sender without a beat is gone


#: With ``once``, connections refused in a row (none open) before the run gives its mail back.
UNREACHABLE_ONCE = 3

#: Messages rendered per hop to the store thread.
RENDER_CHUNK = 8


def sender_owner() -> str:
    """A lease owner name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def run_sender(
    *,
    store: AsyncStore[Store],
    settings: Settings,
    build: Build | RenderPool,
    now: Callable[[], datetime] = utcnow,
    stop: asyncio.Event,
    once: bool,
    progress: Callable[[SendSummary], None] | None = None,
    tick: Tick | None = None,
    options: SenderOptions = SenderOptions(),
    limiter: RateLimiter | None = None,
    owner: str | None = None,
    campaign_rates: Mapping[str, Rate] | None = None,
) -> SendSummary:
    """Send due mail until ``stop`` is set (or, with ``once``, until nothing is due).

    ``store`` is the :class:`nurture.store.AsyncStore`; ``build`` renders a send on the store
    thread; ``tick(store, now)``, if given, runs on the store thread before claiming (the
    scheduler), once at start with ``once`` and on every idle poll otherwise. Setting
    ``stop`` drains: rows claimed but not started go back to the queue, sends in flight
    finish and are marked, then connections close. ``campaign_rates`` caps single campaigns
    (their ``rate:``) on top of the global ``settings.smtp.rate``. Returns the run's counters.
    """
    return await _Run(store=store, settings=settings, build=build, now=now, stop=stop, once=once,
                      progress=progress, tick=tick, options=options,
                      limiter=limiter or RateLimiter([settings.smtp.rate]),
                      owner=owner or sender_owner(), campaign_rates=campaign_rates).run()


class _Run:
    def __init__(self, *, store: AsyncStore[Store], settings: Settings, build: Build | RenderPool,
                 now: Callable[[], datetime], stop: asyncio.Event, once: bool,
                 progress: Callable[[SendSummary], None] | None, tick: Tick | None, options: SenderOptions,
                 limiter: RateLimiter, owner: str, campaign_rates: Mapping[str, Rate] | None) -> None:
        self.store, self.settings, self.build, self.now = store, settings, build, now
        self.stop, self.once, self.progress, self.tick = stop, once, progress, tick
        self.opt, self.limiter, self.owner = options, limiter, owner
        self.summary = SendSummary()
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.busy = 0
        self.last_tick = 0.0
        self.wake = asyncio.Event()
        self.marks = _GroupCommit(store)
        self.campaign_limiters = {c: RateLimiter([r]) for c, r in (campaign_rates or {}).items()}
        self.pending: dict[str, collections.deque[_Job]] = {}
        # How many rows of a rate-limited campaign may wait here: what its rate sends in half a lease.
        half_lease = options.lease.total_seconds() / 2
        self.allowance = {c: max(1, int(r.per_second * half_lease)) for c, r in (campaign_rates or {}).items()}
        self.crash: BaseException | None = None
        self.pool = [SmtpConnection(settings.smtp) for _ in range(max(1, settings.smtp.max_connections))]
        self.relay = self._governor(None)
        self.render_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurture-render")
        self.links = _LinkIds(store)
        self.slot_retry: dict[int, float] = {}  # slot -> no connection attempt before (monotonic)
        self.slot_backoff: dict[int, float] = {}
        self.closing = False
        self.stored_relay: RelayState | None = None  # the latest row seen at a claim
        self.relay_saved = 0.0
        self.envelope_from = parseaddr(settings.sender.from_address)[1] or settings.sender.from_address
        rate = settings.smtp.rate.per_second
        # Claim no more than the rate lets out in a few seconds, so leases never run short.
        self.claim_limit = max(1, min(options.batch, int(rate * 3) + 1))
        self.low_water = max(len(self.pool), min(self.claim_limit, 2 * len(self.pool)))
        self.me = this_process()
        self.last_recover = 0.0
        #: Rows delivered or claimed whose mark could not be written (disk full): released at the end.
        self.unmarked: list[int] = []
        #: Rows claimed and not yet queued (being rendered): released at the end if still here.
        self.unqueued: set[int] = set()

    def _governor(self, state: RelayState | None) -> RelayGovernor:
        smtp = self.settings.smtp
        return RelayGovernor(name=relay_name(smtp.host, smtp.port), max_rate=smtp.rate.per_second,
                             max_pool=len(self.pool), state=state, window=self.opt.relay_window,
                             grow_after=self.opt.grow_after, pause=self.opt.relay_pause)

    async def run(self) -> SendSummary:
        await self._beat()
        # What the last run learned about the relay: a restart does not start at full speed.
        self.relay = self._governor(await self.store.call(Store.relay_state, self.relay.name))
        beats = asyncio.create_task(self._heartbeats())
        workers = [asyncio.create_task(self._worker(i, c)) for i, c in enumerate(self.pool)]
        try:
            await self._produce()
        except Exception as e:
            if not is_disk_full(e):
                raise
            self.crash = self.crash or unwritable(e, doing="claiming or rendering sends")
        finally:
            beats.cancel()
            leftover = [j.send.id for d in self.pending.values() for j in d]
            leftover += self._drain()
            self.closing = True
            for _ in workers:
                self.queue.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
            leftover += self.unmarked
            leftover += sorted(self.unqueued)  # a render that failed or was stopped half-way
            self.unqueued.clear()
            leftover += self._drain()  # put back by a worker while stopping
            await self._save_relay(force=True)
            self.render_thread.shutdown(wait=False)
            if leftover:
                try:
                    self.summary.released += await self.store.call(Store.release_sends, leftover, owner=self.owner)
                except Exception as e:
                    if not is_disk_full(e):
                        raise
                    # Still leased to this process: the next sender takes them back once it is gone.
                    log.error("could not give %d claimed row(s) back to the queue: %s", len(leftover),
                              str(e).splitlines()[0])
            await asyncio.gather(*(c.quit() for c in self.pool), return_exceptions=True)
            self.summary.connections = sum(c.opened for c in self.pool)
            await self._unregister()
            self._report(final=True)
        if self.crash is not None:
            raise self.crash
        return self.summary

    def _drain(self) -> list[int]:
        ids = []
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if job is not None:
                ids.append(job.send.id)
        return ids

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _beat(self) -> None:
        me, owner, now = self.me, self.owner, self.now()
        await self.store.run(lambda s: s.register_sender(owner, process=me, now=now))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.opt.heartbeat)
            try:
                await self._beat()
            except Exception as e:  # noqa: BLE001 - a missed beat is retried; the lease still holds
                log.warning("sender heartbeat not written: %s", e)

    async def _unregister(self) -> None:
        owner = self.owner
        try:
            if self.once:
                self.summary.held = [h for h in await self.store.run(lambda s: s.lease_holders())
                                     if h.owner != owner]
            await self.store.run(lambda s: s.unregister_sender(owner))
        except Exception as e:  # noqa: BLE001 - the run's own error (if any) matters more
            log.warning("sender not unregistered: %s", e)

    async def _recover(self) -> int:
        """Take back the rows of lease owners that are gone (killed, crashed); how many."""
        self.last_recover = time.monotonic()
        now, me, owner, stale = self.now(), self.me, self.owner, self.opt.stale_after

        def recover(st: Any) -> tuple[int, list[str]]:
            gone = [h.owner for h in st.lease_holders()
                    if h.owner != owner and is_gone(h, now=now, stale_after=stale, me=me)]
            return (st.recover_leases(gone, now=now) if gone else 0), gone

        count, gone = await self.store.run(recover)
        if count:
            self.summary.recovered += count
            log.warning("took back %d row(s) leased by %d sender(s) that are gone: %s",
                        count, len(gone), ", ".join(gone))
        return int(count)

    async def _tick(self) -> None:
        tick = self.tick
        if tick is not None:
            self.last_tick = time.monotonic()
            await self.store.run(lambda s: tick(s, self.now()))

    async def _produce(self) -> None:
        await self._tick()
        await self._recover()
        while not self.stop.is_set():
            if self.once and self.relay.unreachable >= UNREACHABLE_ONCE:
                self.summary._note(f"relay unreachable: {self.relay.last_reply}")
                return
            if not self.once and time.monotonic() - self.last_tick >= self.opt.tick_every:
                await self._tick()  # a long busy spell must not hold up the scheduler
            if time.monotonic() - self.last_recover >= self.opt.heartbeat:
                await self._recover()
            wait = self._dispatch()
            if self.queue.qsize() >= self.low_water:
                self.wake.clear()
                try:  # a worker wakes us when the queue runs low
                    await asyncio.wait_for(self.wake.wait(), timeout=0.05 if wait is None else max(wait, 0.001))
                except TimeoutError:
                    pass
                continue
            skip = self._backlog()
            claimed, todo, contacts, now, rate_wait = await self.store.run(functools.partial(self._claim, skip=skip))
            seen = self.stored_relay
            if seen is not None and seen.updated_at > self.relay_saved:
                self.relay.adopt(seen)  # another sender on this relay learned something since
            await self._render_all([todo[i:i + RENDER_CHUNK] for i in range(0, len(todo), RENDER_CHUNK)],
                                   contacts, now)
            if claimed:
                continue
            if rate_wait > 0:  # rows are due but the shared bucket is empty
                await self._sleep(min(rate_wait, self.opt.idle))
                continue
            if self.once:
                if self.queue.empty() and self.busy == 0 and not self._backlog():
                    if await self._recover():
                        continue  # a sender died since the last look: its rows are due now
                    return
                await self._sleep(min(0.005 if wait is None else max(wait, 0.001), 0.05))
                continue
            if self.queue.empty() and self.busy == 0:
                await self._tick()
            await self._sleep(self.opt.idle if wait is None else min(max(wait, 0.001), self.opt.idle))

    def _backlog(self) -> list[str]:
        """Campaigns with claimed rows waiting for their own rate limit."""
        return [c for c, d in self.pending.items() if d]

    def _dispatch(self) -> float | None:
        """Move rate-limited campaigns' rows into the worker queue as their buckets allow.
        Returns the shortest wait for the next token, or None when nothing waits."""
        shortest = None
        for campaign_id in self._backlog():
            jobs, limiter = self.pending[campaign_id], self.campaign_limiters[campaign_id]
            while jobs and self.queue.qsize() < self.low_water:
                wait = limiter.try_take()
                if wait:
                    shortest = wait if shortest is None else min(shortest, wait)
                    break
                self.queue.put_nowait(jobs.popleft())
        return shortest

    def _claim(self, store: Store, skip: list[str]) -> tuple[int, list[Send], dict[int, Contact], datetime, float]:
        """On the store thread: claim a batch and load its contacts."""
        now = self.now()
        wait = 0.0
        if self.opt.shared_rate:
            # The bucket in the database bounds what all sender processes together claim.
            rated = store.claim_sends_rated(owner=self.owner, now=now, lease=self.opt.lease,
                                            limit=self.claim_limit, rate=Rate(self.relay.rate, 1.0),
                                            slow_factor=self.opt.slow_factor, skip_campaigns=skip)
            sends, wait = rated.sends, rated.wait
            self.stored_relay = store.relay_state(self.relay.name)
        else:
            sends = store.claim_sends(owner=self.owner, now=now, lease=self.opt.lease, limit=self.claim_limit,
                                      skip_campaigns=skip)
        if not sends:
            return 0, [], {}, now, wait
        todo: list[Send] = []
        extra: list[int] = []
        kept = collections.Counter[str]()
        for s in sends:
            if s.status != "sending":
                continue
            allowance = self.allowance.get(s.campaign_id)
            if allowance is not None and kept[s.campaign_id] >= allowance:
                extra.append(s.id)  # more than its own rate can send within the lease
                continue
            kept[s.campaign_id] += 1
            todo.append(s)
        if extra:
            store.release_sends(extra, owner=self.owner)
        for s in sends:
            if s.status == "suppressed":
                self.summary.suppressed += 1
            elif s.status == "skipped":
                self.summary.skipped += 1
        return len(sends), todo, store.outbox_contacts(s.contact_id for s in todo), now, wait

    async def _render_all(self, chunks: list[list[Send]], contacts: dict[int, Contact], now: datetime) -> None:
        """Render a claimed batch in small chunks, all submitted at once so rendering runs
        ahead of the workers; each chunk's Message-IDs are stored (and what cannot be rendered
        marked) in one hop to the store thread, then its jobs are queued, so every Message-ID is
        durable before the first attempt and the workers' marks never wait behind a whole batch."""
        self.unqueued.update(s.id for chunk in chunks for s in chunk)
        tasks = [asyncio.ensure_future(self._render(chunk, contacts, now)) for chunk in chunks]
        try:
            for i, task in enumerate(tasks):
                if self.stop.is_set():  # give the rest back now rather than at lease expiry
                    rest = [s.id for chunk in chunks[i:] for s in chunk]
                    self.summary.released += await self.store.call(Store.release_sends, rest, owner=self.owner)
                    self.unqueued.difference_update(rest)
                    return
                built = await task
                jobs = await self.store.run(functools.partial(self._record, built=built, now=now))
                self.unqueued.difference_update(s.id for s in chunks[i])
                for job in jobs:
                    if job.send.campaign_id in self.campaign_limiters:
                        self.pending.setdefault(job.send.campaign_id, collections.deque()).append(job)
                    else:
                        self.queue.put_nowait(job)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _render(self, todo: list[Send], contacts: dict[int, Contact],
                      now: datetime) -> list[tuple[Send, Built | Exception]]:
        """One chunk: in the render pool's processes, else on the render thread (templates,
        MIME and DKIM are CPU work that must not hold up the store's writer thread)."""
        if isinstance(self.build, RenderPool):
            made = await self.build.build(todo, contacts, now=now, resolve=self._store_links)
            return [(s, m if isinstance(m, Exception) else Built(m, m.data)) for s, m in made]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.render_thread, self._build_all, todo, contacts, now, loop)

    async def _store_links(self, keys: Sequence[LinkKey]) -> dict[LinkKey, int]:
        """The ids of links a render process met first (created in one transaction)."""
        def store(st: Store) -> dict[LinkKey, int]:
            with st.transaction():
                return {k: st.link_id(*k) for k in keys}
        return await self.store.run(store)

    def _build_all(self, todo: list[Send], contacts: dict[int, Contact], now: datetime,
                   loop: asyncio.AbstractEventLoop) -> list[tuple[Send, Built | Exception]]:
        assert not isinstance(self.build, RenderPool)
        made: list[tuple[Send, Outgoing | Exception]] = []
        for s in todo:
            try:
                made.append((s, self.build(s, contacts[s.contact_id], now=now, message_id=s.message_id,
                                           link_ids=self.links.for_send(s, loop))))
            except (NurtureError, KeyError, ValueError) as e:
                made.append((s, e))
        out: list[tuple[Send, Built | Exception]] = []
        for s, msg in made:
            if isinstance(msg, Exception):
                out.append((s, msg))
                continue
            try:
                out.append((s, Built(msg, msg.to_bytes())))
            except (NurtureError, KeyError, ValueError) as e:
                out.append((s, e))
        return out

    def _record(self, store: Store, *, built: list[tuple[Send, Built | Exception]], now: datetime) -> list[_Job]:
        jobs: list[_Job] = []
        with store.transaction():
            for s, made in built:
                if isinstance(made, Exception):
                    # A send that cannot be rendered (template error, campaign gone) is failed,
                    # not retried forever; the error says why.
                    store.mark_failed(s.id, now=now, code=None, enhanced=None, error=f"render: {made}",
                                      bounce=False)
                    self.summary.failed += 1
                    self.summary._note(f"send {s.id}: render: {made}")
                    log.error("send %s (%s/%s) cannot be rendered: %s", s.id, s.campaign_id, s.step_id, made)
                    continue
                msg, data = made.msg, made.data
                if s.message_id != msg.message_id:
                    store.set_message_id(s.id, msg.message_id)
                recipient = msg.to if "<" not in msg.to else (parseaddr(msg.to)[1] or msg.to)
                # The VERP return path (inbound.return_path) when the renderer made one.
                verp = getattr(msg, "return_path", None)
                jobs.append(_Job(send=s, recipient=recipient, data=data, message_id=msg.message_id,
                                 envelope_from=verp if isinstance(verp, str) else None, claimed=time.monotonic()))
        return jobs

    async def _worker(self, slot: int, conn: SmtpConnection) -> None:
        while True:
            if slot >= self.relay.pool:  # the relay takes fewer connections: this slot rests
                if conn.is_open:
                    await conn.quit()
                if self.closing:
                    return
                await asyncio.sleep(0.1)
                continue
            job = await self._next_job(conn)
            if job is None:
                return
            self.busy += 1
            try:
                wait = self.slot_retry.get(slot, 0.0) - time.monotonic()
                if slot >= self.relay.pool or (wait > 0 and not conn.is_open):
                    # Shrunk while this slot waited, or its last connection was refused just now:
                    # an open session takes the message meanwhile.
                    await self._requeue(job)
                    await asyncio.sleep(min(max(wait, 0.0), 0.5) or 0.01)
                    continue
                await self._attempt(slot, conn, job)
            except Exception as e:  # a bug or a broken database: stop cleanly, then re-raise
                if is_disk_full(e):
                    # Delivered (or not) but not marked: given back to the queue at the end, so it
                    # goes again (with its Message-ID) rather than sit leased.
                    self.unmarked.append(job.send.id)
                    if self.crash is None:
                        log.error("sender stopped: the database cannot be written: %s", str(e).splitlines()[0])
                    self.crash = self.crash or unwritable(e, doing="marking a send")
                else:
                    log.exception("sender worker failed")
                    self.crash = self.crash or e
                self.stop.set()
            finally:
                self.busy -= 1

    async def _next_job(self, conn: SmtpConnection) -> _Job | None:
        if not self.queue.empty():
            job = self.queue.get_nowait()
        elif conn.is_open:
            try:
                job = await asyncio.wait_for(self.queue.get(), timeout=self.opt.idle_quit)
            except TimeoutError:
                await conn.quit()  # an idle session would hold one of the relay's connections
                job = await self.queue.get()
        else:
            job = await self.queue.get()
        if self.queue.qsize() < self.low_water:
            self.wake.set()
        return job

    async def _requeue(self, job: _Job) -> None:
        """Back to the queue without an attempt (or to the database when stopping)."""
        if self.stop.is_set() or self.closing:
            self.summary.released += await self.store.call(Store.release_sends, [job.send.id], owner=self.owner)
        else:
            self.queue.put_nowait(job)

    async def _attempt(self, slot: int, conn: SmtpConnection, job: _Job) -> None:
        if time.monotonic() - job.claimed > self.opt.lease.total_seconds() / 2:
            # Held back (the relay paused us) for half its lease: give it back rather than outlive it.
            self.summary.released += await self.store.call(Store.release_sends, [job.send.id], owner=self.owner)
            return
        if self.once and self.relay.unreachable >= UNREACHABLE_ONCE:
            # --once and no connection at all: give the mail back uncharged and finish.
            self.summary.released += await self.store.call(Store.release_sends, [job.send.id], owner=self.owner)
            return
        if not conn.is_open and self.relay.connect_wait() > 0:  # every connection was refused
            await self._sleep(self.relay.connect_wait())
        while (wait := self.relay.wait()) > 0 and not self.stop.is_set():
            if conn.is_open and wait > self.opt.idle_quit:
                # A long pause: free the relay's connection slot meanwhile (and Postfix's anvil
                # starts its next window at a new connection).
                await conn.quit()
            await self._sleep(min(wait, 1.0))
        if self.stop.is_set() or not await self.relay.acquire(self.stop) or not await self.limiter.acquire(self.stop):
            self.summary.released += await self.store.call(Store.release_sends, [job.send.id], owner=self.owner)
            return
        await self._deliver(slot, conn, job)

    async def _deliver(self, slot: int, conn: SmtpConnection, job: _Job) -> None:
        s = job.send
        try:
            await conn.send(sender=job.envelope_from or self.envelope_from, recipient=job.recipient, data=job.data)
        except ConnectRefused as e:
            # About the connection, not the message: the pool shrinks, the message waits.
            others = sum(1 for c in self.pool if c is not conn and (c.is_open or c.connecting))
            self.relay.connection_refused(e.message, open_now=others)
            self.summary.refused += 1
            # This slot waits before it tries again, so the sessions settle and the pool
            # converges on the relay's cap instead of hammering it.
            self.slot_backoff[slot] = min(30.0, self.slot_backoff.get(slot, 0.5) * 2)
            self.slot_retry[slot] = time.monotonic() + self.slot_backoff[slot]
            log.info("relay refused a connection (%s); pool now %d", e.message, self.relay.pool)
            await self._save_relay(force=True)
            await self._requeue(job)
        except SendError as e:
            self.relay.connected()
            if is_rate_refusal(e) and job.throttles < self.opt.free_throttles:
                THROTTLE_EVENTS.inc()
                if self.relay.rate_refused(e.message):
                    view = self.relay.view()
                    log.warning("relay asked to slow down (%s); rate now %.3g/s, pausing %.0fs",
                                e.message, view.rate, view.hold)
                self.summary.throttled += 1
                await self._save_relay(force=True)
                await self._requeue(dataclasses.replace(job, throttles=job.throttles + 1))
            else:
                await self._failed(job, e)
        else:
            at = self.now()
            self.slot_backoff.pop(slot, None)
            self.relay.connected()
            self.relay.accepted()
            await self.marks.submit(lambda st: st.mark_sent(s.id, now=at))
            self.summary.sent += 1
            await self._save_relay()
        self._report()

    async def _save_relay(self, *, force: bool = False) -> None:
        """Store the belief when it changed: at once after a refusal (``force``), else at most
        every few seconds."""
        if not force and (not self.relay.changed or time.time() - self.relay_saved < 5.0):
            return
        state = self.relay.state()
        self.relay_saved = state.updated_at
        await self.marks.submit(lambda st: st.save_relay_state(state))

    async def _failed(self, job: _Job, e: SendError) -> None:
        s = job.send
        now = self.now()
        attempt = s.attempts + 1
        if e.transient and attempt < self.settings.smtp.max_attempts:
            next_at = now + self.opt.backoff.delay(attempt)
            await self.marks.submit(lambda st: st.mark_retry(s.id, next_at=next_at, code=e.code,
                                                             error=e.message, enhanced=e.enhanced))
            self.summary.retried += 1
            return
        # A sender-side refusal (MAIL FROM) is never the recipient's bounce.
        bounce = e.hard_bounce and e.recipient is not None
        kind = await self.marks.submit(lambda st: st.mark_failed(s.id, now=now, code=e.code, enhanced=e.enhanced,
                                                                 error=e.message, bounce=bounce))
        if kind == "bounced":
            self.summary.bounced += 1
        elif kind == "blocked":
            self.summary.blocked += 1
            log.warning("send %s to %s blocked by policy: %s", s.id, job.recipient, e.message)
        elif kind == "failed":
            self.summary.failed += 1
        self.summary._note(f"send {s.id} to {job.recipient}: {e.message}")

    def _report(self, *, final: bool = False) -> None:
        if self.progress is None and not final:
            return
        self.summary.relay = self.relay.view()
        if self.progress is not None:
            self.progress(self.summary)


class _GroupCommit:
    """Runs the workers' marks on the store thread, those that arrive together in one
    transaction. Each worker still waits for its own mark to commit before it sends again,
    so no more than the pool size are ever delivered but unmarked."""

    def __init__(self, store: AsyncStore[Store]) -> None:
        self.store = store
        # Marks of different result types wait together: each future gets its own fn's result.
        self.pending: list[tuple[Callable[[Store], object], asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[[Store], T]) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.pending.append((fn, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []

            try:
                results = await self.store.run(functools.partial(_in_one_transaction, [fn for fn, _ in batch]))
            except BaseException as e:  # noqa: BLE001 - handed to every waiting worker
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)


def _in_one_transaction(fns: list[Callable[[Store], object]], store: Store) -> list[object]:
    with store.transaction():
        return [fn(store) for fn in fns]


class _LinkIds:
    """Link ids for the render thread: from memory, or (first use of a link) from the store
    thread, waited for. Links never change, so the memory cannot go stale."""

    def __init__(self, store: AsyncStore[Store]) -> None:
        self.store = store
        self.known: dict[tuple[str, str, str, str, bool], int] = {}

    def for_send(self, send: Send, loop: asyncio.AbstractEventLoop) -> LinkIds:
        def link_ids(name: str, url: str, honeypot: bool) -> int:
            key = (send.campaign_id, send.step_id, name, url, honeypot)
            found = self.known.get(key)
            if found is None:
                call = self.store.call(Store.link_id, send.campaign_id, send.step_id, name, url, honeypot)
                found = self.known[key] = asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)
            return found
        return link_ids


def renderer_build(renderer: Renderer, campaigns: Mapping[str, Campaign]) -> Build:
    """A :class:`Build` over the real :class:`nurture.render.Renderer` and loaded campaigns
    (``campaigns`` maps campaign id to :class:`nurture.models.Campaign`)."""

    def build(send: Send, contact: Contact, *, link_ids: LinkIds, now: datetime,
              message_id: str | None) -> Outgoing:
        campaign, step = campaign_step(campaigns, send.campaign_id, send.step_id)
        return renderer.render(campaign=campaign, step=step, contact=contact, send_id=send.id,
                               link_ids=link_ids, now=now, message_id=message_id)

    return build
