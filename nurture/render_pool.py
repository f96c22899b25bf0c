"""Rendering in worker processes: templates, MIME and DKIM off the sending interpreter.

Everything a message costs before SMTP (Jinja, CSS inlining, MIME, RSA signing) is pure CPU.
On the sender's own interpreter it competes with the event loop that speaks SMTP to the
relay (and, in ``nurture run``, with the tracker's redirects), so with a second core the
sender renders in ``processes`` worker processes instead. Each worker is given the settings
and campaigns once, keeps its own :class:`~nurture.render.Renderer` (template cache, DKIM
keys), and is sent chunks of (send, contact) pairs; it returns the bytes to send.

Link ids come from the database, which a worker cannot reach. A worker renders with the ids
the sender already knows; when a message needs a link the sender has not seen yet (the first
message of a step, or a URL made from a contact's field), the worker reports the links
instead of the message, the sender stores them in one hop to the store thread and sends the
message again. Links never change, so what a worker was told never goes stale.

The worker processes come from a ``forkserver`` (``spawn`` where there is none): never a fork
of the sender itself, whose store and event-loop threads must not be copied.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import threading
import time
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING

from nurture.errors import NurtureError
from nurture.liveness import ProcessId, process_alive, this_process
from nurture.models import Campaign, Contact, Send
from nurture.render import campaign_step, dkim_keys

if TYPE_CHECKING:  # pragma: no cover
    from nurture.config import Settings
    from nurture.render import Renderer

__all__ = ["LinkKey", "Made", "RenderFailed", "RenderPool", "ResolveLinks"]

#: (campaign id, step id, link name, url, is honeypot): what a link id stands for.
LinkKey = tuple[str, str, str, str, bool]
#: Stores links the sender has not seen and returns their ids (one hop to the store thread).
ResolveLinks = Callable[[Sequence[LinkKey]], Awaitable[Mapping[LinkKey, int]]]

#: A message that still needs unknown links after this many rounds is a bug, not a race.
_MAX_ROUNDS = 4


def _mapping_proxy(items: dict[object, object]) -> types.MappingProxyType[object, object]:
    return types.MappingProxyType(items)


def _reduce_mapping_proxy(
        proxy: types.MappingProxyType[object, object],
) -> tuple[Callable[[dict[object, object]], types.MappingProxyType[object, object]], tuple[dict[object, object]]]:
    return _mapping_proxy, (dict(proxy),)


# Settings and campaigns are frozen dataclasses holding read-only mappings; the standard
# pickler refuses ``mappingproxy``, so the pickler that multiprocessing uses is taught it.
ForkingPickler.register(types.MappingProxyType, _reduce_mapping_proxy)


@dataclass(frozen=True, slots=True)
class Made:
    """A message built in a worker: what the sender stores and sends."""

    message_id: str
    to: str
    data: bytes
    #: The envelope sender (VERP) when ``inbound.return_path`` is set.
    return_path: str | None = None

    def to_bytes(self) -> bytes:
        return self.data


class RenderFailed(NurtureError):
    """A send that cannot be rendered (template error, campaign or step gone); the text is the
    worker's error message, which names the template and the problem."""


@dataclass(frozen=True, slots=True)
class _Failed:
    error: str


@dataclass(frozen=True, slots=True)
class _Missing:
    keys: tuple[LinkKey, ...]


_Result = Made | _Failed | _Missing


class RenderPool:
    """Renders sends in ``processes`` worker processes.

    ``await pool.build(sends, contacts, now=..., resolve=...)`` returns, in order, each send
    with its :class:`Made` message or a :class:`RenderFailed`. Chunks submitted together are
    rendered one after another per worker while the caller awaits earlier ones, so a sender can
    keep its queue full. Start the processes with :meth:`start` (blocking: call it from a
    thread) and stop them with :meth:`close`.
    """

    def __init__(self, *, settings: Settings, campaigns: Mapping[str, Campaign], processes: int = 1) -> None:
        self.settings = settings
        self.campaigns = dict(campaigns)
        self.processes = max(1, processes)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        #: Link ids the workers may be told, by (campaign, step).
        self._known: dict[tuple[str, str], dict[LinkKey, int]] = {}

    def start(self) -> None:
        """Start the worker processes and wait until each has loaded nurture. An unusable DKIM
        key is a :class:`~nurture.errors.ConfigError` here, in the sender's process."""
        if self.settings.dkim is not None:
            dkim_keys(self.settings.dkim)
        executor = self._pool()
        for f in [executor.submit(_ready) for _ in range(self.processes)]:
            f.result()

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    async def build(self, sends: Sequence[Send], contacts: Mapping[int, Contact], *, now: datetime,
                    resolve: ResolveLinks) -> list[tuple[Send, Made | RenderFailed]]:
        """Render ``sends`` (``contacts`` by id must hold each one's contact)."""
        done: dict[int, Made | RenderFailed] = {}
        todo = list(sends)
        for _ in range(_MAX_ROUNDS):
            results = await self._submit(todo, contacts, now)
            missing: list[LinkKey] = []
            again: list[Send] = []
            for send, result in zip(todo, results, strict=True):
                if isinstance(result, _Missing):
                    missing.extend(k for k in result.keys if k not in missing)
                    again.append(send)
                elif isinstance(result, _Failed):
                    done[send.id] = RenderFailed(result.error)
                else:
                    done[send.id] = result
            if not again:
                break
            for key, link_id in (await resolve(missing)).items():
                self._known.setdefault(key[:2], {})[key] = link_id
            todo = again
        else:
            for send in todo:
                done[send.id] = RenderFailed("the message kept asking for new links")
        return [(s, done[s.id]) for s in sends]

    async def _submit(self, sends: Sequence[Send], contacts: Mapping[int, Contact], now: datetime) -> list[_Result]:
        pairs = [(s, contacts[s.contact_id]) for s in sends]
        known: dict[LinkKey, int] = {}
        for step in {(s.campaign_id, s.step_id) for s in sends}:
            known.update(self._known.get(step, {}))
        loop = asyncio.get_running_loop()
        executor = self._pool()
        try:
            return await loop.run_in_executor(executor, _build_in_worker, pairs, now, known)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start new ones and try this chunk once more.
            # Other chunks in flight see the same broken pool; only the first replaces it.
            self._discard(executor)
            return await loop.run_in_executor(self._pool(), _build_in_worker, pairs, now, known)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.processes, mp_context=_context(),
                    initializer=_init_worker, initargs=(self.settings, self.campaigns, this_process()))
            return self._executor

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = None


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has nurture's rendering imported already.
        ctx.set_forkserver_preload(["nurture.render_pool", "nurture.render"])
        return ctx
    return multiprocessing.get_context("spawn")


# -- in the worker ----------------------------------------------------------------------------

class _Worker:
    def __init__(self, settings: Settings, campaigns: Mapping[str, Campaign]) -> None:
        from nurture.render import Renderer

        self.renderer: Renderer = Renderer.from_settings(settings)
        self.campaigns = campaigns
        self.links: dict[LinkKey, int] = {}

    def build(self, pairs: Iterable[tuple[Send, Contact]], now: datetime,
              known: Mapping[LinkKey, int]) -> list[_Result]:
        self.links.update(known)
        return [self._one(send, contact, now) for send, contact in pairs]

    def _one(self, send: Send, contact: Contact, now: datetime) -> _Result:
        missing: list[LinkKey] = []

        def link_ids(name: str, url: str, honeypot: bool) -> int:
            key = (send.campaign_id, send.step_id, name, url, honeypot)
            found = self.links.get(key)
            if found is None:
                missing.append(key)
                return 0  # this rendering is thrown away: the sender stores the link first
            return found

        try:
            campaign, step = campaign_step(self.campaigns, send.campaign_id, send.step_id)
            msg = self.renderer.render(campaign=campaign, step=step, contact=contact, send_id=send.id,
                                       link_ids=link_ids, now=now, message_id=send.message_id)
            if missing:
                return _Missing(tuple(missing))
            return Made(message_id=msg.message_id, to=msg.to, data=msg.to_bytes(), return_path=msg.return_path)
        except (NurtureError, KeyError, ValueError) as e:
            return _Failed(str(e))


_WORKER: _Worker | None = None


def _init_worker(settings: Settings, campaigns: Mapping[str, Campaign], sender: ProcessId) -> None:
    global _WORKER
    _WORKER = _Worker(settings, campaigns)
    threading.Thread(target=_exit_with, args=(sender,), name="nurture-sender-watch", daemon=True).start()


def _exit_with(sender: ProcessId) -> None:
    """End this worker when the sender process has ended, however it ended.

    Nothing else would end it after a kill -9: a pool worker holds both ends of its own call
    queue, so it never reads end-of-file, and the forkserver stays while a worker does."""
    try:
        fd = os.pidfd_open(sender.pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3: look once a second
        while process_alive(sender):
            time.sleep(1.0)
    else:
        select.select([fd], [], [])  # a pidfd turns readable when its process ends
    os._exit(0)


def _ready() -> bool:
    return _WORKER is not None


def _build_in_worker(pairs: list[tuple[Send, Contact]], now: datetime, known: Mapping[LinkKey, int]) -> list[_Result]:
    assert _WORKER is not None, "the render process was not initialised"
    return _WORKER.build(pairs, now, known)
