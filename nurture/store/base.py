"""Connection, transactions, migrations, the event log and the async writer thread.

:class:`StoreBase` is the typed base every mixin of :class:`nurture.store.Store` builds on: it
declares what they use (``conn``, ``db``, ``dialect``, ``query``, ``query_one``, ``scalar``,
``transaction``, ``append_event``). ``conn`` is a :class:`Connection`: sqlite3's, or the
PostgreSQL adapter in :mod:`nurture.store.pg` that offers the same shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import sqlite_utils

from nurture.errors import NurtureError
from nurture.models import Event
from nurture.store.dialect import SQLITE, Dialect
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


def dt_required(value: float) -> datetime:
    """A NOT NULL time column as a datetime (:func:`dt` for the nullable ones)."""
    moment = dt(value)
    if moment is None:
        raise NurtureError("a required time is missing in the database")
    return moment


#: Statement parameters: positional (``?``, ``?N``) or named (``:name``).
Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the mixins use (sqlite3's, or ``pg.PgCursor``)."""

    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...
    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...
    def fetchmany(self, size: int, /) -> list[tuple[Any, ...]]: ...
    def __iter__(self) -> Iterator[tuple[Any, ...]]: ...


class Connection(Protocol):
    """The part of ``sqlite3.Connection`` the mixins use (``pg.PgConnection`` offers it too)."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...
    def executemany(self, sql: str, params: Iterable[Params], /) -> Cursor: ...
    def close(self) -> None: ...


class Table(Protocol):
    """``db.table(name)`` inside a transaction: fixtures and scripts insert rows directly."""

    @property
    def last_pk(self) -> Any: ...
    def insert(self, record: dict[str, Any], /) -> Table: ...


class Tables(Protocol):
    """What ``with store.transaction() as db`` gives on both backends (a sqlite-utils
    ``Database`` on SQLite, ``pg.PgDatabase`` on PostgreSQL)."""

    def table(self, name: str, /) -> Table: ...


def in_transaction_now(conn: Connection) -> bool:
    # A call rather than the attribute, so that mypy does not carry a narrowing of
    # ``conn.in_transaction`` across the statements that change it.
    return conn.in_transaction


class StoreBase:
    """Opens the database in WAL mode and applies migrations; the typed base of every mixin."""

    #: Which SQL flavour ``conn`` speaks, for the few statements that differ.
    dialect: ClassVar[Dialect] = SQLITE
    path: str
    conn: Connection
    #: Table-level writes for fixtures and scripts (see :class:`Tables`).
    db: Tables

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
        self._lite = sqlite_utils.Database(conn)
        self.db = self._lite
        self.conn = conn
        # NORMAL is durable in WAL mode against process crashes (kill -9); only a power loss
        # can take back the last transactions.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        with self.transaction():
            pass
        migrations.apply(self._lite)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tables]:
        """An IMMEDIATE transaction (takes the write lock up front, so two processes
        claiming the same rows serialise instead of deadlocking). Nested calls are savepoints."""
        if in_transaction_now(self.conn):
            with self._lite.atomic():
                yield self.db
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if in_transaction_now(self.conn):
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Rows as dicts (for the read side of the mixins)."""
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def query_one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        """The first row as a dict, or None."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row (an aggregate such as ``count(*)``), or None."""
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- events: an append-only log that feeds webhooks and stats ---------------------------

    def append_event(self, kind: str, payload: dict[str, Any], *, now: datetime) -> int:
        """Append one event; returns its id. Joins the caller's transaction if any."""
        cur = self.conn.execute(
            "INSERT INTO events (at, kind, payload) VALUES (?, ?, ?)",
            (ts(now), kind, json.dumps(payload, default=str, sort_keys=True)),
        )
        return inserted_id(cur)

    def events(self, *, kind: str | None = None, after_id: int = 0, limit: int = 1000) -> list[Event]:
        """Events after ``after_id`` (of one ``kind``, or all), oldest first."""
        sql = "SELECT id, at, kind, payload FROM events WHERE id > ?"
        params: list[Any] = [after_id]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        return [Event(id=i, at=dt_required(at), kind=k, payload=json.loads(payload))
                for i, at, k, payload in self.conn.execute(sql + " ORDER BY id LIMIT ?", [*params, limit])]


def inserted_id(cur: Cursor) -> int:
    """The id an INSERT of one row created."""
    if cur.lastrowid is None:
        raise NurtureError("the database reported no id for a new row")
    return cur.lastrowid


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
