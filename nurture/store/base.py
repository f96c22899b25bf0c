"""Connection, transactions, migrations, the event log and the async writer thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import sqlite_utils

from nurture.errors import NurtureError
from nurture.store.schema import migrations

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="StoreBase")


def ts(moment: datetime | None) -> float | None:
    """A datetime as stored: REAL seconds since the epoch."""
    return None if moment is None else moment.timestamp()


def dt(value: float | None) -> datetime | None:
    from nurture.timeutil import from_epoch

    return from_epoch(value)


class StoreBase:
    """Opens the database in WAL mode and applies migrations."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as e:
            where = os.path.dirname(os.path.abspath(path))
            hint = "" if os.path.isdir(where) else f" (the folder {where} does not exist)"
            raise NurtureError(f"cannot open the database {path}: {e}{hint}") from None
        self.db = sqlite_utils.Database(conn)
        self.conn = conn
        # NORMAL is durable in WAL mode against process crashes (kill -9); only a power loss
        # can take back the last transactions.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        with self.transaction():
            pass
        migrations.apply(self.db)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """An IMMEDIATE transaction (takes the write lock up front, so two processes
        claiming the same rows serialise instead of deadlocking). Nested calls join it."""
        if self.conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows as dicts (for the read side of the mixins)."""
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def query_one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # -- events: an append-only log that feeds webhooks and stats ---------------------------

    def append_event(self, kind: str, payload: dict[str, Any], *, now: datetime) -> int:
        """Append one event; returns its id. Joins the caller's transaction if any."""
        cur = self.conn.execute(
            "INSERT INTO events (at, kind, payload) VALUES (?, ?, ?)",
            (ts(now), kind, json.dumps(payload, default=str, sort_keys=True)),
        )
        return int(cur.lastrowid)

    def events(self, *, kind: str | None = None, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT id, at, kind, payload FROM events WHERE id > ?"
        params: list[Any] = [after_id]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        rows = self.query(sql + " ORDER BY id LIMIT ?", [*params, limit])
        for r in rows:
            r["payload"] = json.loads(r["payload"])
            r["at"] = dt(r["at"])
        return rows


class AsyncStore(Generic[S]):
    """Runs a synchronous store's methods on one dedicated thread.

    ``await astore.call(Store.mark_sent, send_id, now=now)`` calls ``Store.mark_sent`` on the
    writer thread, typed through: mypy checks the arguments and the result.
    ``await astore.run(fn)`` runs ``fn(store)`` there, for several calls in one hop.
    """

    def __init__(self, factory: Callable[[], S]) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurture-store")
        self._store: S = self._executor.submit(factory).result()
        self._closed = False

    @property
    def sync(self) -> S:
        """The underlying store; only for use on the writer thread (inside :meth:`run`)."""
        return self._store

    @property
    def path(self) -> str:
        """The database the store opened (a file or a ``postgresql://`` URL)."""
        return self._store.path

    async def run(self, fn: Callable[[S], T]) -> T:
        """``fn(store)`` on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._store)

    async def call(self, method: Callable[Concatenate[S, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``method(store, *args, **kwargs)`` on the writer thread; ``method`` is an unbound
        store method such as ``Store.outbox_counts``."""
        loop = asyncio.get_running_loop()
        store = self._store
        return await loop.run_in_executor(self._executor, lambda: method(store, *args, **kwargs))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._store.close)
        self._executor.shutdown(wait=True)

    def close(self) -> None:
        """Close from synchronous code (not from inside the event loop's thread pool)."""
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._store.close).result()
        self._executor.shutdown(wait=True)

    # Transitional: untyped forwarding of ``await astore.method(...)``. Every caller moves to
    # :meth:`call` / :meth:`run`; this goes when the last one has.
    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, lambda: attr(*args, **kwargs))

        call.__name__ = name
        return call
