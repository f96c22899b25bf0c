"""The PostgreSQL backend: a thin dialect layer under the same mixins.

The mixins are written against sqlite3's connection API and SQLite's SQL. :class:`PgConnection`
offers the part of that API they use (``execute`` → cursor with ``fetchone``/``fetchall``/
``description``/``lastrowid``/``rowcount``, ``executemany``, ``in_transaction``) over a psycopg 3
connection, and rewrites each statement once (cached): ``?``/``?N``/``:name`` placeholders,
``INSERT OR IGNORE`` → ``ON CONFLICT DO NOTHING``, ``LIKE`` → ``ILIKE`` (SQLite's LIKE ignores
ASCII case), SQLite's ``+column`` index hint dropped, ``RETURNING id`` for ``lastrowid``.
The few SQLite functions the mixins call (``json_patch``, ``json_extract``, ``group_concat``,
``sum(boolean)``) are created in the database as small SQL functions, so the statements stay
the same text on both backends.

Schema migrations are the same functions as on SQLite (``nurture.store.schema``): they get a
small stand-in for the sqlite-utils ``Database`` whose ``executescript`` translates the DDL
(``INTEGER PRIMARY KEY`` → identity column, ``INTEGER`` → ``BIGINT``, ``REAL`` → ``DOUBLE
PRECISION``). Applied migrations are recorded in ``_nurture_migrations``, under an advisory
lock so that several processes starting at once migrate once.

One connection per store (and per process): :class:`nurture.store.AsyncStore` runs every
call on one thread, and several processes share the database.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from nurture.errors import NurtureError
from nurture.store.base import StoreBase, in_transaction_now
from nurture.store.copy import ID_TABLES as COPY_ID_TABLES
from nurture.store.dialect import POSTGRES
from nurture.store.schema import migrations

#: Tables whose ``id`` is an identity column (an INSERT into them reports ``lastrowid``).
ID_TABLES = frozenset(COPY_ID_TABLES)

MIGRATIONS_TABLE = "_nurture_migrations"
_LOCK_KEY = 7_404_155_001  # pg_advisory_xact_lock key for migrations


# -- SQL translation ---------------------------------------------------------------------------

_LITERAL = re.compile(r"('(?:[^']|'')*')")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_NUMBERED = re.compile(r"\?(\d+)")
_INSERT = re.compile(r"^\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+(\w+)", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_SELECT = re.compile(r"\bSELECT\b", re.IGNORECASE)
_LIKE = re.compile(r"(?<!I)\bLIKE\b", re.IGNORECASE)
# SQLite's planner hint "+column" (do not use an index for this term): no-op, and no
# unary plus on text in PostgreSQL.
_UNARY_PLUS = re.compile(r"(\b(?:AND|OR|WHERE|NOT|ON|WHEN|THEN|ELSE)\s+|[(,]\s*)\+(?=[A-Za-z_])", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def translate(sql: str, named: bool) -> tuple[str, tuple[int, ...] | None, bool]:
    """SQLite-flavoured SQL → (psycopg SQL, order of ``?N`` parameters or None, added RETURNING id).

    Literals are left alone except for ``%`` (psycopg reads every ``%``).
    """
    text = sql.strip().rstrip(";")
    if re.match(r"^BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)$", text, re.IGNORECASE):
        return "BEGIN", None, False
    order: list[int] = []
    parts = _LITERAL.split(text)
    for i in range(0, len(parts), 2):  # outside string literals
        p = parts[i].replace("%", "%%")
        if named:
            p = _NAMED.sub(r"%(\1)s", p)
        else:
            def number(m: re.Match[str]) -> str:
                order.append(int(m.group(1)))
                return "%s"
            p = _NUMBERED.sub(number, p)
            p = p.replace("?", "%s")
        parts[i] = _UNARY_PLUS.sub(r"\1", _LIKE.sub("ILIKE", p))
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%")
    out = "".join(parts)
    added = False
    m = _INSERT.match(out)
    if m:
        returning = _RETURNING.search(out)
        if m.group(1):
            out = out[:m.start(1)] + out[m.end(1):]
            returning = _RETURNING.search(out)
            if returning:
                out = out[:returning.start()] + "ON CONFLICT DO NOTHING " + out[returning.start():]
            else:
                out += " ON CONFLICT DO NOTHING"
        # lastrowid matters after INSERT ... VALUES; an INSERT ... SELECT of a whole batch
        # would otherwise ship every new id back for nothing.
        if not returning and m.group(2).lower() in ID_TABLES and not _SELECT.search(out, _insert_end(out)):
            out += " RETURNING id"
            added = True
    return out, (tuple(order) if order else None), added


def _insert_end(sql: str) -> int:
    """Where the ``INSERT INTO table`` at the start of ``sql`` ends."""
    m = _INSERT.match(sql)
    if m is None:
        raise ValueError(f"not an INSERT: {sql[:60]!r}")
    return m.end()


_DDL = (
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.IGNORECASE),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
)


def translate_ddl(script: str) -> str:
    """A migration's SQLite DDL as PostgreSQL DDL (comments dropped)."""
    out = re.sub(r"--[^\n]*", "", script)
    for pattern, repl in _DDL:
        out = pattern.sub(repl, out)
    return out


# -- the connection adapter ------------------------------------------------------------------


class _NumericLoader(Loader):
    """``sum()`` over BIGINT is NUMERIC in PostgreSQL: load it as int (or float), as SQLite does."""

    def load(self, data: Any) -> int | float:
        s = bytes(data).decode()
        return int(s) if s.lstrip("-").isdigit() else float(s)


class PgCursor:
    """The part of sqlite3.Cursor the mixins use."""

    def __init__(self, cur: psycopg.Cursor[Any], *, added_returning: bool) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid: int | None = None
        self._rows: list[tuple[Any, ...]] | None = None
        if added_returning:
            ids = cur.fetchall()
            self.lastrowid = ids[-1][0] if ids else None
            self._rows = []

    @property
    def description(self) -> Sequence[Sequence[Any]] | None:
        return None if self._rows is not None else self._cur.description

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._rows is not None or self._cur.description is None:
            return None
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._rows is not None or self._cur.description is None:
            return []
        return self._cur.fetchall()

    def fetchmany(self, size: int, /) -> list[tuple[Any, ...]]:
        if self._rows is not None or self._cur.description is None:
            return []
        return self._cur.fetchmany(size)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class PgConnection:
    """sqlite3.Connection's shape over an autocommit psycopg connection from a pool.

    The store runs every call on one thread per process, so the pool holds one connection;
    what it brings is the health check on checkout and reconnecting with backoff when the
    server restarts, fails over or drops an idle connection.
    """

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.pool = ConnectionPool(url, min_size=1, max_size=1, open=False, name="nurture",
                                   kwargs={"autocommit": True}, configure=_configure,
                                   check=ConnectionPool.check_connection)
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
            self.raw = self.pool.getconn(timeout=connect_timeout)
        except (PoolTimeout, psycopg.OperationalError) as e:
            self.pool.close(timeout=1)
            raise NurtureError(f"cannot connect to PostgreSQL at {_redact(url)}: "
                               f"{str(e).strip() or 'no answer'}") from e

    def ensure(self) -> None:
        """Swap in a fresh connection if the server went away between transactions (restart,
        failover, idle timeout). Inside a transaction a lost connection is an error: the work
        is gone."""
        if self.raw.closed or self.raw.info.transaction_status == TransactionStatus.UNKNOWN:
            self.pool.putconn(self.raw)  # the pool discards a broken connection
            try:
                self.raw = self.pool.getconn(timeout=30)
            except PoolTimeout as e:
                raise NurtureError(f"lost the PostgreSQL connection: {e}") from e

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (
            TransactionStatus.INTRANS, TransactionStatus.INERROR, TransactionStatus.ACTIVE)

    def _prepare(self, sql: str, params: Any) -> tuple[str, Any, bool]:
        named = isinstance(params, Mapping)
        text, order, added = translate(sql, named)
        if order is not None:
            params = [params[n - 1] for n in order]
        elif params is None:
            params = ()
        return text, params, added

    def execute(self, sql: str, params: Any = ()) -> PgCursor:
        text, params, added = self._prepare(sql, params)
        alone = not self.in_transaction
        if alone:
            self.ensure()
        cur = self.raw.cursor()
        try:
            cur.execute(text, params)
        except psycopg.errors.IntegrityError as e:
            # Callers written for sqlite3 catch its IntegrityError (a unique index said no).
            raise sqlite3.IntegrityError(str(e).strip()) from e
        except psycopg.OperationalError:
            if not alone or not self.raw.closed:
                raise
            self.ensure()  # the server closed an idle connection: one retry on a new one
            cur = self.raw.cursor()
            cur.execute(text, params)
        return PgCursor(cur, added_returning=added)

    def executemany(self, sql: str, params: Iterable[Any]) -> PgCursor:
        seq = list(params)
        cur = self.raw.cursor()
        if not seq:
            return PgCursor(cur, added_returning=False)
        text, order, added = translate(sql, isinstance(seq[0], Mapping))
        if added:
            text = text[: -len(" RETURNING id")]
        if order is not None:
            seq = [[p[n - 1] for n in order] for p in seq]
        try:
            cur.executemany(text, seq)
        except psycopg.errors.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e).strip()) from e
        return PgCursor(cur, added_returning=False)

    def executescript(self, script: str) -> None:
        self.raw.execute(translate_ddl(script))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pool.putconn(self.raw)
        self.pool.close()


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("numeric", _NumericLoader)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# -- SQLite functions the mixins use, as PostgreSQL functions -------------------------------

COMPAT_SQL = r"""
CREATE OR REPLACE FUNCTION json_patch(target text, patch text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN patch IS NULL THEN target
              WHEN jsonb_typeof(patch::jsonb) <> 'object' OR target IS NULL
                   OR jsonb_typeof(target::jsonb) <> 'object' THEN patch
              ELSE ((target::jsonb || patch::jsonb)
                    - coalesce((SELECT array_agg(key) FROM jsonb_each(patch::jsonb)
                                WHERE value = 'null'::jsonb), '{}'::text[]))::text END
$$;
CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT (doc::jsonb) ->> (CASE WHEN path LIKE '$."%"' THEN substr(path, 4, length(path) - 4)
                                ELSE substr(path, 3) END)
$$;
CREATE OR REPLACE FUNCTION _nurture_concat(state text, value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN value IS NULL THEN state WHEN state IS NULL THEN value
              ELSE state || ',' || value END
$$;
CREATE OR REPLACE FUNCTION _nurture_count_true(state bigint, value boolean) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(state, 0) + CASE WHEN value THEN 1 ELSE 0 END
$$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'group_concat') THEN
    CREATE AGGREGATE group_concat(text) (SFUNC = _nurture_concat, STYPE = text);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
                 WHERE p.proname = 'sum' AND p.proargtypes[0] = 'boolean'::regtype) THEN
    CREATE AGGREGATE sum(boolean) (SFUNC = _nurture_count_true, STYPE = bigint);
  END IF;
END $$;
"""


class _Table:
    """``db[name].insert(...)``/``insert_all(...)`` as in sqlite-utils, for fixtures and scripts."""

    def __init__(self, conn: PgConnection, name: str) -> None:
        self._conn, self.name = conn, name
        self.last_pk: Any = None

    def insert(self, record: Mapping[str, Any], **_: Any) -> _Table:
        cols = list(record)
        sql = (f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
        cur = self._conn.execute(sql, [record[c] for c in cols])
        self.last_pk = cur.lastrowid
        return self

    def insert_all(self, records: Sequence[Mapping[str, Any]], **_: Any) -> _Table:
        for r in records:
            self.insert(r)
        return self


class PgDatabase:
    """The little of sqlite-utils' ``Database`` that callers of ``transaction()`` use."""

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    def __getitem__(self, name: str) -> _Table:
        return _Table(self.conn, name)

    table = __getitem__

    def execute(self, sql: str, params: Any = ()) -> PgCursor:
        return self.conn.execute(sql, params)

    def executescript(self, script: str) -> None:
        self.conn.executescript(script)


class _MigrationDb:
    """What a migration function may use of sqlite-utils' ``Database`` on PostgreSQL.

    Migration functions are typed for sqlite-utils (``db: Database``); they get this stand-in
    through :func:`_as_database`, and anything beyond ``execute``/``executescript`` fails loudly.
    """

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn

    def executescript(self, script: str) -> None:
        self._conn.executescript(script)

    def execute(self, sql: str, params: Any = ()) -> PgCursor:
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(
            f"migrations must use db.execute/db.executescript to run on PostgreSQL too (not db.{name})")


def _as_database(conn: PgConnection) -> Database:
    # The one place a stand-in passes for sqlite-utils' Database (see _MigrationDb).
    return cast(Database, _MigrationDb(conn))


#: Recorded like a migration, so the functions are (re)created once per version of them.
COMPAT_NAME = "_compat_functions_v1"


def _applied(raw: psycopg.Connection[Any], name: str) -> set[str]:
    found = raw.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone()
    if found is None or found[0] is None:
        return set()
    rows = raw.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = %s",
                       (name,)).fetchall()
    return {r[0] for r in rows}


def apply_migrations(conn: PgConnection, *, source: Migrations = migrations) -> list[str]:
    """Apply pending migrations (and the compat functions); returns the names applied.

    One query when nothing is pending. Otherwise each migration runs in its own transaction
    with its record, under an advisory lock, so processes starting together migrate once;
    a migration registered with ``transactional=False`` runs outside a transaction.
    """
    raw = conn.raw
    if _applied(raw, source.name) >= {COMPAT_NAME, *(m.name for m in source._migrations)}:
        return []
    applied_now: list[str] = []

    def record(name: str) -> None:
        raw.execute(f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) VALUES (%s, %s, %s)",
                    (source.name, name, str(datetime.now(UTC))))
        applied_now.append(name)

    with raw.transaction():
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        raw.execute(f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            migration_set TEXT NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
            PRIMARY KEY (migration_set, name))""")
        if COMPAT_NAME not in _applied(raw, source.name):
            raw.execute(COMPAT_SQL)
            record(COMPAT_NAME)
    for m in source._migrations:
        if m.transactional:
            with raw.transaction():
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if m.name not in _applied(raw, source.name):
                    m.fn(_as_database(conn))
                    record(m.name)
            continue
        raw.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            if m.name not in _applied(raw, source.name):
                m.fn(_as_database(conn))
                record(m.name)
        finally:
            raw.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


# -- the store base --------------------------------------------------------------------------


class PgStoreBase(StoreBase):
    """:class:`StoreBase` on PostgreSQL: same ``transaction``/``query``/events surface."""

    dialect = POSTGRES
    conn: PgConnection
    db: PgDatabase

    def __init__(self, path: str) -> None:  # noqa: D107 - same signature as StoreBase
        self.path = path
        self.conn = PgConnection(path)
        self.db = PgDatabase(self.conn)
        self._savepoints = 0
        apply_migrations(self.conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PgDatabase]:
        """A transaction (READ COMMITTED; claims lock their rows). Nested calls are savepoints."""
        conn = self.conn
        if conn.in_transaction:
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            conn.raw.execute(f"SAVEPOINT {name}")
            try:
                yield self.db
            except BaseException:
                if conn.raw.info.transaction_status == TransactionStatus.INERROR or in_transaction_now(conn):
                    conn.raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    conn.raw.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                conn.raw.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._savepoints -= 1
            return
        conn.ensure()
        conn.raw.execute("BEGIN")
        try:
            yield self.db
        except BaseException:
            if in_transaction_now(conn):
                conn.raw.execute("ROLLBACK")
            raise
        else:
            conn.raw.execute("COMMIT")
