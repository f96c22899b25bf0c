"""Move every stored time by the same amount: the demo's workspace, played on a simulated
clock, is shifted onto the real clock when the play ends, so the reps' app and every
command on the workspace read the same, true times."""

from __future__ import annotations

import re

from nurture.store.base import StoreBase
from nurture.store.copy import tables

#: Columns that hold a moment (REAL seconds since the epoch); durations (``next_wait``) do not match.
TIME_COLUMN = re.compile(r"^(at|.+_at|.+_until)$")


def time_columns(store: StoreBase) -> dict[str, list[str]]:
    """Each data table's moment columns."""
    out: dict[str, list[str]] = {}
    for table in tables(store):
        if store.dialect.name == "postgres":
            rows = store.query("SELECT column_name AS name FROM information_schema.columns"
                               " WHERE table_schema = current_schema() AND table_name = ?", (table,))
        else:
            rows = store.query("SELECT name FROM pragma_table_info(?)", (table,))
        cols = sorted(r["name"] for r in rows if TIME_COLUMN.match(r["name"]))
        if cols:
            out[table] = cols
    return out


def shift_times(store: StoreBase, *, seconds: float) -> int:
    """Add ``seconds`` to every stored moment, in one transaction; returns the columns moved."""
    columns = time_columns(store)
    with store.transaction():
        for table, cols in columns.items():
            sets = ", ".join(f"{c} = {c} + {float(seconds)!r}" for c in cols)
            store.conn.execute(f"UPDATE {table} SET {sets}")
    return sum(len(c) for c in columns.values())
