"""Copy a whole database between backends: SQLite → PostgreSQL (scale-out) and back.

Both ends are opened as stores (so both are migrated to the same schema); the destination
must hold no rows yet. Tables go parents first (by their foreign keys), each in batches inside one
transaction, read as a stream (never the whole table in memory); ids are kept, so tokens in
mail already sent keep pointing at the right rows. Into PostgreSQL rows go by ``COPY`` and
the identity sequences are moved past the copied ids. Every table is verified by row count.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nurture.errors import NurtureError
from nurture.store.base import StoreBase

if TYPE_CHECKING:
    from nurture.store.pg import PgConnection

#: Tables whose ``id`` is generated (an identity column on PostgreSQL).
ID_TABLES = ("contacts", "enrollments", "sends", "links", "clicks", "tasks", "events", "inbound", "forwards")


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table copied: ``rows`` read from the source, ``dest_rows`` counted after."""

    table: str
    rows: int
    dest_rows: int

    @property
    def ok(self) -> bool:
        return self.rows == self.dest_rows


def _is_pg(store: StoreBase) -> bool:
    return store.dialect.name == "postgres"


def _pg(store: StoreBase) -> PgConnection:
    """The PostgreSQL connection of a store on that backend (for COPY and server-side cursors)."""
    from nurture.store.pg import PgConnection  # psycopg is only there for PostgreSQL

    if not isinstance(store.conn, PgConnection):
        raise TypeError(f"not a PostgreSQL store: {store.path}")
    return store.conn


def tables(store: StoreBase) -> list[str]:
    """The data tables of a store (not the migrations bookkeeping), each after the tables its
    foreign keys point at, otherwise by name."""
    if _is_pg(store):
        rows = store.query("SELECT table_name AS name FROM information_schema.tables"
                           " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
        refs = store.query(
            """SELECT DISTINCT tc.table_name AS name, ccu.table_name AS ref
               FROM information_schema.table_constraints tc
               JOIN information_schema.constraint_column_usage ccu
                 ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema
               WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()""")
    else:
        rows = store.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        refs = store.query("SELECT DISTINCT m.name, f.\"table\" AS ref FROM sqlite_master m,"
                           " pragma_foreign_key_list(m.name) f WHERE m.type = 'table'")
    names = sorted(r["name"] for r in rows if not r["name"].startswith("_"))
    graph: dict[str, set[str]] = {n: set() for n in names}
    for r in refs:
        if r["name"] in graph and r["ref"] in graph and r["ref"] != r["name"]:
            graph[r["name"]].add(r["ref"])
    order = graphlib.TopologicalSorter(graph)
    order.prepare()
    out: list[str] = []
    while order.is_active():
        ready = sorted(order.get_ready())
        out.extend(ready)
        order.done(*ready)
    return out


def columns(store: StoreBase, table: str) -> list[str]:
    cur = store.conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [c[0] for c in cur.description or ()]


def count(store: StoreBase, table: str) -> int:
    return int(store.scalar(f"SELECT count(*) FROM {table}"))


def _read(store: StoreBase, table: str, cols: list[str], batch: int) -> Iterator[list[tuple[Any, ...]]]:
    order = " ORDER BY id" if "id" in cols else ""
    sql = f"SELECT {', '.join(cols)} FROM {table}{order}"
    if _is_pg(store):
        raw = _pg(store).raw
        with raw.transaction(), raw.cursor(name=f"copy_{table}") as named:  # server-side: streamed
            named.itersize = batch
            named.execute(sql)
            while rows := named.fetchmany(batch):
                yield rows
    else:
        cur = store.conn.execute(sql)
        while rows := cur.fetchmany(batch):
            yield rows


def _write(store: StoreBase, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    if _is_pg(store):
        with _pg(store).raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        store.conn.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)


def _fix_sequence(store: StoreBase, table: str) -> None:
    """Move a PostgreSQL identity past the copied ids, so the next insert does not collide."""
    _pg(store).raw.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}")


def copy_database(*, source: StoreBase, dest: StoreBase, batch: int = 5000,
                  progress: Callable[[str, int], None] | None = None) -> list[TableCopy]:
    """Copy every table of the ``source`` store into the empty ``dest`` store.

    ``progress(table, rows so far)`` is called after each batch. Raises :class:`NurtureError`
    when the destination already holds rows, or when a table's counts differ afterwards.
    """
    names = tables(source)
    dest_names = set(tables(dest))
    missing = [t for t in names if t not in dest_names]
    if missing:
        raise NurtureError(f"the destination has no table {', '.join(missing)} (is it an older version?)")
    busy = [t for t in names if t != "rate_state" and count(dest, t) > 0]
    if busy:
        raise NurtureError(f"the destination is not empty ({', '.join(busy)} already hold rows); "
                           "copy into a new database")
    out: list[TableCopy] = []
    for table in names:
        cols = [c for c in columns(source, table) if c in set(columns(dest, table))]
        done = 0
        with dest.transaction():
            if table == "rate_state":
                dest.conn.execute("DELETE FROM rate_state")
            for rows in _read(source, table, cols, batch):
                _write(dest, table, cols, rows)
                done += len(rows)
                if progress is not None:
                    progress(table, done)
            if _is_pg(dest) and table in ID_TABLES:
                _fix_sequence(dest, table)
        out.append(TableCopy(table=table, rows=done, dest_rows=count(dest, table)))
    bad = [c for c in out if not c.ok or c.rows != count(source, c.table)]
    if bad:
        raise NurtureError("row counts differ after the copy: " + ", ".join(
            f"{c.table} {c.rows} → {c.dest_rows}" for c in bad))
    return out
